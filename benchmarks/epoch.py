"""Time one DCGAN MNIST epoch (60,000 images at batch 256: 234 steps) on whatever device is
here, for each combination of the fast-path options, and say how much of the device it uses.

The model is the TensorFlow tutorial's DCGAN (recipes/tutorials/tf_dcgan_mnist.toml) with
alternating updates, trained by gankit exactly as ``gankit run`` trains it (the bundled
test split stands in when the 60,000 training images are not in the cache: the time of a
step does not depend on the pictures). One step costs 451.7 MFLOP per image (forward and
backward of both networks). For each combination it prints images/s, seconds per epoch
and that work as a fraction of the device's peak: the peak measured here with a large
matrix product in the same precision, and the maker's figure when ``--peak-tflops``
gives it.

    python benchmarks/epoch.py                       # torch: fp32/bf16 x eager/compiled
    python benchmarks/epoch.py --backend tensorflow  # TensorFlow: with and without XLA
    python benchmarks/epoch.py --steps 20            # time 20 steps, scaled to an epoch
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import build_trainer, load_data
from gankit.training import Schedule

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tutorials" / "tf_dcgan_mnist.toml"
IMAGES, BATCH = 60_000, 256
FLOP_PER_IMAGE = 451.7e6
OPTIONS = {
    "torch": [{"precision": precision, "compile": compiled}
              for precision, compiled in itertools.product(("fp32", "bf16"), (False, True))],
    "tensorflow": [{"jit_compile": False}, {"jit_compile": True}],
}


def toml_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f'"{value}"'


def measured_peak(backend: str, device: str, bf16: bool) -> float:
    """FLOP/s of a large matrix product on this device, in this precision."""
    if backend == "tensorflow":
        from gankit_plugins.tensorflow_backend import import_tensorflow

        tf = import_tensorflow()
        size = 4096 if device != "cpu" else 1024
        with tf.device("/CPU:0" if device == "cpu" else "/GPU:0"):
            a = tf.random.normal([size, size], dtype=tf.bfloat16 if bf16 else tf.float32)
            tf.linalg.matmul(a, a).numpy()
            started = time.perf_counter()
            for _ in range(5):
                result = tf.linalg.matmul(a, a)
            result.numpy()
        return 5 * 2 * size**3 / (time.perf_counter() - started)
    import torch

    size = 4096 if device != "cpu" else 1024
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16 if bf16 else torch.float32)
    (a @ a).sum().item()
    started = time.perf_counter()
    for _ in range(5):
        result = a @ a
    result.sum().item()
    return 5 * 2 * size**3 / (time.perf_counter() - started)


def time_epoch(backend: str, options: dict, steps: int) -> tuple[float, str]:
    """Seconds for ``steps`` steps after two of warm-up (tracing, compiling), and the device."""
    overrides = [f'backend.use="{backend}"', f"train.batch_size={BATCH}", 'train.update="alternating"',
                 *(f"backend.{key}={toml_value(value)}" for key, value in options.items())]
    recipe = load_recipe(RECIPE, overrides, load_registry())
    data = load_data(recipe, DataContext(warn=lambda message: None, info=lambda message: None))
    trainer = build_trainer(recipe, data.spec)
    trainer.set_data(data.images)
    schedule = Schedule(len(data.images), BATCH, 1, recipe.seed)
    for step in range(2):
        metrics = trainer.train_step(schedule.batches(step), step)
    float(metrics["g_loss"])
    started = time.perf_counter()
    for step in range(2, 2 + steps):
        metrics = trainer.train_step(schedule.batches(step), step)
        if step % recipe.train.log_every == 0:
            {name: float(value) for name, value in metrics.items()}
    float(metrics["g_loss"])
    return time.perf_counter() - started, str(trainer.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[*OPTIONS, "both"], default="torch")
    parser.add_argument("--steps", type=int, default=IMAGES // BATCH, help="steps timed (default: one epoch)")
    parser.add_argument("--peak-tflops", type=float, nargs=2, metavar=("FP32", "BF16"),
                        help="the device maker's dense peak, to compare against as well")
    args = parser.parse_args()
    epoch_steps = IMAGES // BATCH
    print(f"one epoch: {IMAGES:,} images at batch {BATCH} = {epoch_steps} steps; timed {args.steps} steps; "
          f"{FLOP_PER_IMAGE / 1e6:.1f} MFLOP per image")
    for backend in OPTIONS if args.backend == "both" else [args.backend]:
        for options in OPTIONS[backend]:
            seconds, device = time_epoch(backend, options, args.steps)
            bf16 = options.get("precision") == "bf16"
            per_second = args.steps * BATCH / seconds
            achieved = per_second * FLOP_PER_IMAGE
            peak = measured_peak(backend, "cpu" if "cpu" in device.lower() else "cuda", bf16)
            shown = ", ".join(f"{key} {value}" for key, value in options.items())
            line = (f"{backend:10s} {shown:32s} {device:8s} {per_second:9.1f} images/s  "
                    f"{seconds * epoch_steps / args.steps:8.1f} s/epoch  {achieved / 1e12:7.3f} TFLOP/s = "
                    f"{achieved / peak:6.1%} of the measured {'bf16' if bf16 else 'fp32'} matmul peak "
                    f"({peak / 1e12:.3f} TFLOP/s)")
            if args.peak_tflops:
                line += f", {achieved / (args.peak_tflops[bf16] * 1e12):6.1%} of the maker's peak"
            print(line, flush=True)


if __name__ == "__main__":
    main()
