"""The generator's latent noise and a conditional run's fake labels, drawn here with numpy
so that they are the same numbers on every backend: the noise and labels of training step
``s`` are a pure function of the recipe's seed and ``s`` (like the data order), the fixed
noise of the sample grids a function of the seed, and the noise of ``generate`` a function
of the seed it is given. Two backends holding the same weights therefore train on the same
noise and draw the same samples, and a resumed run needs no random state to continue it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["training_noise", "fixed_noise", "sample_noise", "seed_noise", "training_labels", "augment_rng"]

TRAINING, FIXED, LABELS, AUGMENT, SEEDED = 1, 2, 3, 4, 5
"""Streams of a recipe's seed, so that no two draws share random numbers."""


def _normal(key: list[int], shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(key).standard_normal(shape, dtype=np.float32)


def training_noise(seed: int, step: int, d_steps: int, batch_size: int, latent_dim: int) -> np.ndarray:
    """The noise of training step ``step`` (0-based): one batch per discriminator update,
    shape (d_steps, batch_size, latent_dim)."""
    return _normal([seed, TRAINING, step], (d_steps, batch_size, latent_dim))


def fixed_noise(seed: int, count: int, latent_dim: int) -> np.ndarray:
    """The noise of the sample grids, the same for the whole run."""
    return _normal([seed, FIXED], (count, latent_dim))


def sample_noise(seed: int, count: int, latent_dim: int) -> np.ndarray:
    """The noise of ``Trainer.generate(count, seed)``."""
    return _normal([seed], (count, latent_dim))


def seed_noise(seeds: list[int], latent_dim: int) -> np.ndarray:
    """One noise vector per seed, (len(seeds), latent_dim): seed s's is the same whatever
    the other seeds asked for (``gankit sample --seeds``, ``gankit interpolate``)."""
    rows = [_normal([seed, SEEDED], (latent_dim,)) for seed in seeds]
    return np.stack(rows) if rows else np.zeros((0, latent_dim), np.float32)


def training_labels(seed: int, step: int, d_steps: int, batch_size: int, classes: int) -> np.ndarray:
    """A conditional run's classes for the fake batches of training step ``step``, uniform
    over ``0..classes-1``: shape (d_steps, batch_size), one batch per discriminator update."""
    return np.random.default_rng([seed, LABELS, step]).integers(classes, size=(d_steps, batch_size), dtype=np.int64)


def augment_rng(seed: int, step: int) -> np.random.Generator:
    """The random numbers of training step ``step``'s augmentations (``gankit.augment``)."""
    return np.random.default_rng([seed, AUGMENT, step])
