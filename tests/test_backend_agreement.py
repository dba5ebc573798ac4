"""The same recipe learns alike on PyTorch and TensorFlow.

Both trainers are built from one recipe, the torch weights are copied into the Keras
networks, and both train on the same real batches (the shared schedule) with the same
latent noise (gankit.noise). With dropout off the only difference left is floating-point
rounding, which a GAN amplifies slowly: the tolerances below are about 10 times what this
setup measures, and about 10 times tighter than what Keras's own Adam epsilon or torch's
unbiased BatchNorm running variance (both since made to agree) put between the backends.
With dropout on, the masks come from each framework's own random numbers, so the loss
curves are compared with the spread that dropout alone gives two torch runs.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest

from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.runner import build_architecture, build_trainer, load_data
from gankit.training import Schedule
from same_weights import copy_torch_to_keras, keras_weights_in_torch_order, torch_weights

pytestmark = pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None,
                                reason="needs both torch and tensorflow")

STEPS = 30
TINY_DCGAN = {"use": "dcgan", "g_start_channels": 16,
              "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
              "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}
"""The DCGAN family at toy size: Dense, BatchNorm (1-D and 2-D), LeakyReLU, transposed
convolutions, tanh in G; strided convolutions, dropout, Flatten, Dense in D."""


class Pair:
    """A torch and a TensorFlow trainer of one recipe, starting from the same weights."""

    def __init__(self, recipe_path):
        registry = load_registry()
        self.recipe = recipe = load_recipe(recipe_path, [], registry)
        self.data = data = load_data(recipe, DataContext(warn=lambda message: None))
        self.architecture = build_architecture(recipe, data.spec)
        self.torch = self.another_torch()
        self.tensorflow = build_trainer(load_recipe(recipe_path, ["backend.use=tensorflow"], registry), data.spec)
        for name in ("generator", "discriminator"):
            description = getattr(self.architecture, name)
            copy_torch_to_keras(description, getattr(self.torch, name), getattr(self.tensorflow, name))
        self.tensorflow.set_data(data.images, data.labels)
        self.schedule = Schedule(len(data.images), recipe.train.batch_size, recipe.train.d_steps, recipe.seed)
        self.start = self.weights("torch")

    def another_torch(self):
        """A torch trainer of the recipe: the same initial weights as ``self.torch``."""
        trainer = build_trainer(self.recipe, self.data.spec)
        trainer.set_data(self.data.images, self.data.labels)
        return trainer

    def losses(self, trainer, start: int, stop: int) -> np.ndarray:
        """(steps, 2): d_loss and g_loss of each step."""
        rows = []
        for step in range(start, stop):
            metrics = trainer.train_step(self.schedule.batches(step), step)
            rows.append([float(metrics["d_loss"]), float(metrics["g_loss"])])
        return np.array(rows)

    def weights(self, backend: str) -> dict[str, list[np.ndarray]]:
        """Each network's weights and BatchNorm statistics, in torch's layout."""
        if backend == "torch":
            return {name: torch_weights(getattr(self.torch, name)) for name in ("generator", "discriminator")}
        return {name: keras_weights_in_torch_order(getattr(self.architecture, name), getattr(self.tensorflow, name))
                for name in ("generator", "discriminator")}

    def weight_gap(self) -> dict[str, float]:
        """How far apart the backends' weights are, relative to how far torch's have moved."""
        here, there = self.weights("torch"), self.weights("tensorflow")
        gap = {}
        for name in here:
            apart = sum(float(np.sum((a - b) ** 2)) for a, b in zip(here[name], there[name]))
            moved = sum(float(np.sum((a - b) ** 2)) for a, b in zip(here[name], self.start[name]))
            gap[name] = (apart / moved) ** 0.5
        return gap


def test_a_conditional_run_follows_the_same_trajectory_on_both_backends(write_recipe):
    """Conditional BatchNorm in G, a projection D: both backends draw the same fake classes
    (gankit.noise) and so take the same steps."""
    recipe = write_recipe(architecture={**TINY_DCGAN, "d_dropout": 0.0, "conditional": True,
                                        "g_condition": "batchnorm", "d_condition": "projection"},
                          train={"steps": 10, "batch_size": 32})
    both = Pair(recipe)
    torch_losses, tensorflow_losses = both.losses(both.torch, 0, 10), both.losses(both.tensorflow, 0, 10)
    np.testing.assert_allclose(tensorflow_losses, torch_losses, atol=1e-4)
    sevens = np.full(20, 7)
    assert np.abs(both.torch.generate(20, 3, labels=sevens).astype(int)
                  - both.tensorflow.generate(20, 3, labels=sevens)).max() <= 2
    assert np.abs(both.torch.fixed_samples().astype(int) - both.tensorflow.fixed_samples()).max() <= 2


@pytest.fixture
def pair(write_recipe):
    def build(dropout: float) -> Pair:
        recipe = write_recipe(architecture={**TINY_DCGAN, "d_dropout": dropout},
                              train={"steps": STEPS, "batch_size": 32})
        return Pair(recipe)

    return build


def test_without_dropout_both_backends_follow_the_same_trajectory(pair):
    both = pair(dropout=0.0)
    for here, there in zip(both.weights("torch").values(), both.weights("tensorflow").values()):
        assert all(np.array_equal(a, b) for a, b in zip(here, there))
    early = 5
    torch_losses = both.losses(both.torch, 0, early)
    tensorflow_losses = both.losses(both.tensorflow, 0, early)
    assert max(both.weight_gap().values()) < 1e-4, both.weight_gap()  # measured: 2e-7 G, 8e-6 D
    torch_losses = np.concatenate([torch_losses, both.losses(both.torch, early, STEPS)])
    tensorflow_losses = np.concatenate([tensorflow_losses, both.losses(both.tensorflow, early, STEPS)])
    np.testing.assert_allclose(tensorflow_losses, torch_losses, atol=1e-4)  # measured: 2e-5
    assert max(both.weight_gap().values()) < 2e-2, both.weight_gap()  # measured: 8e-4 G, 2e-3 D
    # The same noise through the same weights, with sampling-mode BatchNorm statistics.
    assert np.abs(both.torch.generate(64, 7).astype(int) - both.tensorflow.generate(64, 7)).max() <= 2
    assert np.abs(both.torch.fixed_samples().astype(int) - both.tensorflow.fixed_samples()).max() <= 2


def test_with_dropout_the_loss_curves_agree_within_dropouts_own_spread(pair):
    import torch

    both = pair(dropout=0.3)
    torch_losses = both.losses(both.torch, 0, STEPS)
    tensorflow_losses = both.losses(both.tensorflow, 0, STEPS)
    # A second torch run from the same weights, noise and batches, but other dropout masks.
    other = both.another_torch()
    torch.manual_seed(12345)
    other_losses = both.losses(other, 0, STEPS)
    between_backends = np.abs(tensorflow_losses - torch_losses).mean()
    within_torch = np.abs(other_losses - torch_losses).mean()
    assert between_backends < 3 * within_torch, (between_backends, within_torch)
    assert abs(tensorflow_losses.mean(axis=0) - torch_losses.mean(axis=0)).max() < 0.01
