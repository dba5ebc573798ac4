"""Time gankit's PyTorch backend against plain PyTorch training the same model.

Two models, each in one process: the TensorFlow tutorial's DCGAN
(recipes/tutorials/tf_dcgan_mnist.toml, alternating updates) at batch 256, and the seed
MLP (recipes/tutorials/pytorch_mlp_mnist.toml) at batch 64. gankit trains through its
trainer and schedule, exactly as ``gankit run`` drives it (metrics read every
``log_every`` steps); the baseline is what a PyTorch user writes: the same networks in
plain ``torch.nn`` (TensorFlow's "same" padding as torch's symmetric padding and
``output_padding``), float images already on the device, ``backward()`` and the
optimizers' steps. Rounds alternate so that both see the same machine load; both use
torch's default threads (``backend.threads = 0``). Prints images/s and the ratio
gankit / plain (above 1.0: gankit is faster) from the best round of each, and the medians
over rounds of the pair timed back to back in wall-clock and in CPU time (steadier on a
shared machine).

    python benchmarks/torch_step.py [--steps N] [--rounds 5] [--model dcgan|mlp|both]
    python benchmarks/torch_step.py --set 'backend.precision="bf16"' --against-gankit   # bf16 against fp32
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import load_data
from tf_step import GankitLoop, timed  # gankit driven as for TensorFlow (benchmarks/ is on sys.path)

TUTORIALS = Path(__file__).resolve().parent.parent / "recipes" / "tutorials"
MODELS = {
    "dcgan": (TUTORIALS / "tf_dcgan_mnist.toml", ["train.batch_size=256", "train.update=\"alternating\""]),
    "mlp": (TUTORIALS / "pytorch_mlp_mnist.toml", ["train.batch_size=64"]),
}
STEPS = {"dcgan": 10, "mlp": 300}
"""Steps per round unless --steps says otherwise: an MLP step is ~1 ms, so ten would time noise."""


def plain_models(name: str):
    """The model in plain ``torch.nn``, as its tutorial writes it."""
    nn = torch.nn
    if name == "mlp":
        generator = nn.Sequential(nn.Linear(100, 128), nn.ReLU(), nn.Linear(128, 784), nn.Tanh(),
                                  nn.Unflatten(1, (1, 28, 28)))
        discriminator = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
        return generator, discriminator
    leaky = lambda: nn.LeakyReLU(0.3)  # noqa: E731
    generator = nn.Sequential(
        nn.Linear(100, 7 * 7 * 256, bias=False), nn.BatchNorm1d(7 * 7 * 256, momentum=0.01, eps=1e-3), leaky(),
        nn.Unflatten(1, (256, 7, 7)),
        nn.ConvTranspose2d(256, 128, 5, 1, padding=2, bias=False), nn.BatchNorm2d(128, momentum=0.01, eps=1e-3), leaky(),
        nn.ConvTranspose2d(128, 64, 5, 2, padding=2, output_padding=1, bias=False),
        nn.BatchNorm2d(64, momentum=0.01, eps=1e-3), leaky(),
        nn.ConvTranspose2d(64, 1, 5, 2, padding=2, output_padding=1, bias=False), nn.Tanh())
    discriminator = nn.Sequential(
        nn.Conv2d(1, 64, 5, 2, padding=2), leaky(), nn.Dropout(0.3),
        nn.Conv2d(64, 128, 5, 2, padding=2), leaky(), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1))
    return generator, discriminator


class PlainLoop:
    """The DCGAN loop of pytorch/examples: D on real and fake, then G, with BCE on logits."""

    def __init__(self, name: str, device, images: np.ndarray, batch_size: int, train):
        torch.manual_seed(0)
        self.device, self.batch_size = device, batch_size
        generator, discriminator = plain_models(name)
        self.generator, self.discriminator = generator.to(device), discriminator.to(device)
        betas = tuple(train.betas)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=train.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=train.lr_d, betas=betas)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous().to(device)
        self.loss = torch.nn.BCEWithLogitsLoss()
        self.generated = torch.Generator().manual_seed(0)

    def step(self) -> None:
        batch = self.images[torch.randint(len(self.images), (self.batch_size,), generator=self.generated)]
        z = torch.randn(self.batch_size, 100, generator=self.generated).to(self.device)
        fake = self.generator(z)
        real_out, fake_out = self.discriminator(batch), self.discriminator(fake.detach())
        d_loss = self.loss(real_out, torch.ones_like(real_out)) + self.loss(fake_out, torch.zeros_like(fake_out))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        out = self.discriminator(fake)
        g_loss = self.loss(out, torch.ones_like(out))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.last = g_loss

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
        float(self.last.detach())  # wait for the last step


def compare(name: str, args) -> None:
    path, overrides = MODELS[name]
    overrides = [*overrides, "backend.use=\"torch\"", f"backend.device=\"{args.device}\"", "backend.threads=0"]
    recipe = load_recipe(path, [*overrides, *args.set], load_registry())
    data = load_data(recipe, DataContext(warn=lambda message: None))
    gankit = GankitLoop(recipe, data)
    if args.against_gankit:  # the same backend without the --set options: what they change
        plain = GankitLoop(load_recipe(path, overrides, load_registry()), data)
    else:
        plain = PlainLoop(name, gankit.trainer.device, data.images, recipe.train.batch_size, recipe.train)
    baseline = "gankit without --set" if args.against_gankit else "plain PyTorch loop"
    for loop in (gankit, plain):
        loop.run(2)  # warm up
    steps = args.steps or STEPS[name]
    rounds = [(timed(plain, steps), timed(gankit, steps)) for _ in range(args.rounds)]
    images = steps * recipe.train.batch_size
    plain_rounds, gankit_rounds = zip(*rounds)
    best = {key: images / min(wall for wall, _ in timings) for key, timings in (("plain", plain_rounds),
                                                                               ("gankit", gankit_rounds))}
    wall = statistics.median(baseline[0] / ours[0] for baseline, ours in rounds)
    cpu = statistics.median(baseline[1] / ours[1] for baseline, ours in rounds)
    options = ", ".join(args.set) or "fp32"
    print(f"{name}, batch {recipe.train.batch_size}, {options}, {steps} steps x {args.rounds} rounds")
    print(f"  {baseline + ':':22s} {best['plain']:8.1f} images/s (best round)")
    print(f"  gankit torch backend:   {best['gankit']:8.1f} images/s (best round)")
    print(f"  ratio gankit / baseline:{best['gankit'] / best['plain']:8.2f}x best rounds, "
          f"{wall:.2f}x median wall time, {cpu:.2f}x median CPU time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="training steps per round (default: DCGAN 10, MLP 300)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override for gankit")
    parser.add_argument("--against-gankit", action="store_true",
                        help="compare with gankit's own backend without the --set options (bf16 against fp32)")
    args = parser.parse_args()
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for name in MODELS if args.model == "both" else [args.model]:
        compare(name, args)


if __name__ == "__main__":
    main()
