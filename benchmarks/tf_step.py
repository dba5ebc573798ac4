"""Time gankit's TensorFlow backend against the TensorFlow DCGAN tutorial's own loop.

Both train the tutorial's DCGAN (recipes/tutorials/tf_dcgan_mnist.toml) on the same
MNIST images with the same batch size, in one process: gankit through its trainer and
schedule, exactly as ``gankit run`` drives it (metrics read every ``log_every`` steps);
the baseline as the tutorial writes it: Keras models, a ``tf.data`` pipeline of float
images and a two-tape ``tf.function`` step. Rounds alternate so that both see the same
machine load. Prints images/s and the ratio gankit / tutorial (above 1.0: gankit is
faster): from the best round of each, and as the median over rounds of the pair timed
back to back, in wall-clock time and in CPU time (steadier on a shared machine).

    python benchmarks/tf_step.py [--steps 10] [--rounds 3] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from gankit.data import DataContext, ImageData
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import build_trainer, load_data
from gankit.training import Schedule
from gankit_plugins.tensorflow_backend import import_tensorflow

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tutorials" / "tf_dcgan_mnist.toml"


def tutorial_models(tf):
    """The tutorial's generator and discriminator, in plain Keras with its defaults."""
    layers = tf.keras.layers
    generator = tf.keras.Sequential([
        tf.keras.Input((100,)),
        layers.Dense(7 * 7 * 256, use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Reshape((7, 7, 256)),
        layers.Conv2DTranspose(128, 5, 1, "same", use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(64, 5, 2, "same", use_bias=False), layers.BatchNormalization(), layers.LeakyReLU(),
        layers.Conv2DTranspose(1, 5, 2, "same", use_bias=False, activation="tanh"),
    ])
    discriminator = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        layers.Conv2D(64, 5, 2, "same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Conv2D(128, 5, 2, "same"), layers.LeakyReLU(), layers.Dropout(0.3),
        layers.Flatten(), layers.Dense(1),
    ])
    return generator, discriminator


class TutorialLoop:
    """The tutorial's training loop: a float ``tf.data`` pipeline and a two-tape step."""

    def __init__(self, tf, images: np.ndarray, batch_size: int):
        tf.random.set_seed(0)
        self.tf, self.batch_size = tf, batch_size
        self.generator, self.discriminator = tutorial_models(tf)
        self.opt_g, self.opt_d = tf.keras.optimizers.Adam(1e-4), tf.keras.optimizers.Adam(1e-4)
        floats = (images.astype("float32") - 127.5) / 127.5
        self.dataset = tf.data.Dataset.from_tensor_slices(floats).shuffle(len(floats)).batch(batch_size).repeat()
        self.batches = iter(self.dataset)
        self.bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
        self.step = tf.function(self._step)

    def _step(self, real):
        tf, bce = self.tf, self.bce
        z = tf.random.normal([self.batch_size, 100])
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(z, training=True)
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            g_loss = bce(tf.ones_like(fake_logits), fake_logits)
            d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
        g_variables, d_variables = self.generator.trainable_variables, self.discriminator.trainable_variables
        self.opt_g.apply_gradients(zip(g_tape.gradient(g_loss, g_variables), g_variables))
        self.opt_d.apply_gradients(zip(d_tape.gradient(d_loss, d_variables), d_variables))

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step(next(self.batches))
        self.generator.trainable_variables[0].numpy()  # wait for the last step


class GankitLoop:
    """gankit's trainer driven the way ``gankit.training.Loop`` drives it."""

    def __init__(self, recipe, data: ImageData):
        self.trainer = build_trainer(recipe, data.spec)
        self.trainer.set_data(data.images)
        self.schedule = Schedule(len(data.images), recipe.train.batch_size, recipe.train.d_steps, recipe.seed)
        self.log_every, self.done = recipe.train.log_every, 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            metrics = self.trainer.train_step(self.schedule.batches(self.done), self.done)
            self.done += 1
            if self.done % self.log_every == 0:
                self.logged = {name: float(value) for name, value in metrics.items()}
        float(metrics["g_loss"])  # wait for the last step


def timed(loop, steps: int) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) for ``steps`` steps."""
    wall, cpu = time.perf_counter(), time.process_time()
    loop.run(steps)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    tf = import_tensorflow()
    overrides = [f"train.batch_size={args.batch_size}", f"backend.device=\"{args.device}\""]
    recipe = load_recipe(RECIPE, overrides, load_registry())
    data = load_data(recipe, DataContext(warn=lambda message: None))
    gankit = GankitLoop(recipe, data)
    with tf.device(gankit.trainer.device):
        tutorial = TutorialLoop(tf, data.images, args.batch_size)
        for loop in (gankit, tutorial):
            loop.run(2)  # trace and warm up
        rounds = [(timed(tutorial, args.steps), timed(gankit, args.steps)) for _ in range(args.rounds)]
    images = args.steps * args.batch_size
    tutorial_rounds, gankit_rounds = zip(*rounds)
    best = {name: images / min(wall for wall, _ in timings)
            for name, timings in (("tutorial", tutorial_rounds), ("gankit", gankit_rounds))}
    wall = statistics.median(baseline[0] / ours[0] for baseline, ours in rounds)
    cpu = statistics.median(baseline[1] / ours[1] for baseline, ours in rounds)
    print(f"TensorFlow {tf.__version__}, device {gankit.trainer.device}, batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds")
    print(f"  tutorial tf.function step: {best['tutorial']:8.1f} images/s (best round)")
    print(f"  gankit tensorflow backend: {best['gankit']:8.1f} images/s (best round)")
    print(f"  ratio gankit / tutorial:   {best['gankit'] / best['tutorial']:8.2f}x best rounds, "
          f"{wall:.2f}x median wall time, {cpu:.2f}x median CPU time")


if __name__ == "__main__":
    main()
