"""The kit's own tiny fixtures, so that no check needs a dataset, a download or a plugin
of gankit's own: labelled images made from a seed, a small ``gankit.nn`` architecture,
hand-made features, and a registry holding a dataset and an architecture made of them."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from gankit import nn
from gankit.data import DataSpec, ImageData
from gankit.evaluation import Features
from gankit.plugins import load_registry
from gankit.registry import Component, Registry

if TYPE_CHECKING:
    from gankit.data import DataContext

FIXTURE_DATASET = "gankit-testing-squares"
"""The dataset ``check_exporter``'s runs train on: ``labelled_images`` of FIXTURE_SPEC."""
FIXTURE_ARCHITECTURE = "gankit-testing-dense"
"""The architecture ``check_exporter``'s runs train: ``tiny_architecture``."""
FIXTURE_SPEC = DataSpec(16, 16, 1, 4, ("dim", "grey", "light", "white"))


def installed_backends(registry: Registry | None = None) -> list[str]:
    """The backends whose required modules are all installed."""
    registry = registry or load_registry()
    return [c.name for c in registry.of_kind("backend") if not c.missing_requirements()]


def noise_images(spec: DataSpec, count: int = 32, seed: int = 0) -> np.ndarray:
    """``count`` uint8 images of ``spec``'s shape, uniform noise: enough to train a few steps."""
    return np.random.default_rng(seed).integers(0, 256, (count, *spec.shape), dtype=np.uint8)


def labelled_images(spec: DataSpec, count: int = 32, seed: int = 0) -> ImageData:
    """``count`` images of ``spec``'s shape made from ``seed``: a square on a dark
    background, placed at random, whose brightness is its class (the classes of ``spec``
    in turn). Without classes in ``spec`` every square is white and the labels are -1."""
    rng = np.random.default_rng(seed)
    classes = spec.classes
    labels = np.arange(count, dtype=np.int64) % classes if classes else np.full(count, -1, np.int64)
    side = max(1, min(spec.height, spec.width) // 2)
    rows = rng.integers(0, spec.height - side + 1, count)
    columns = rng.integers(0, spec.width - side + 1, count)
    images = np.zeros((count, *spec.shape), np.uint8)
    for image, label, row, column in zip(images, labels, rows, columns):
        image[row:row + side, column:column + side] = 255 if label < 0 else 64 + (191 * (label + 1)) // classes
    return ImageData(images, labels, source=f"{count} squares made from seed {seed}", class_names=spec.names())


def tiny_architecture(spec: DataSpec, width: int = 16, latent_dim: int = 8) -> nn.Architecture:
    """A small dense network with BatchNorm in G and Dropout in D: running statistics and random
    masks are state a lossless resume must carry."""
    generator = nn.Network((latent_dim,), (nn.Dense(width), nn.BatchNorm(), nn.ReLU(), nn.Dense(math.prod(spec.shape)),
                                           nn.Tanh(), nn.Reshape(spec.shape)))
    discriminator = nn.Network(spec.shape, (nn.Flatten(), nn.Dense(width), nn.LeakyReLU(0.2), nn.Dropout(0.3),
                                            nn.Dense(1)))
    return nn.Architecture(latent_dim, generator, discriminator)


class _Squares:
    """The fixture dataset: 64 training images and 16 test images."""

    def __init__(self, params: None, context: DataContext):
        pass

    def load(self, split: str) -> ImageData:
        return labelled_images(FIXTURE_SPEC, 64 if split == "train" else 16, seed=0 if split == "train" else 1)


def with_fixtures(registry: Registry) -> Registry:
    """A copy of ``registry`` that also holds the fixture dataset and architecture."""
    copy = replace(registry, components=dict(registry.components), broken=list(registry.broken),
                   conflicts=dict(registry.conflicts))
    for kind, name, factory, description in (
        ("dataset", FIXTURE_DATASET, _Squares, "gankit.testing's squares, labelled by brightness"),
        ("architecture", FIXTURE_ARCHITECTURE, lambda params, spec: tiny_architecture(spec), "gankit.testing's dense network"),
    ):
        copy.add(Component(kind, name, factory, description, provider="builtin", plugin="gankit.testing"))
    return copy


def hand_made_features(count: int = 64, dims: int = 16, classes: int = 4, seed: int = 0,
                       offset: float = 0.0) -> Features:
    """``count`` features drawn from a standard normal in ``dims`` dimensions, with logits
    over ``classes`` drawn likewise and the labels 0, 1, ... in turn, named ``class 0``,
    ``class 1``, ... ``offset`` is added to every feature and logit: 10 makes a set
    disjoint from the same seed's unmoved one, with the same class probabilities (a
    softmax does not see it)."""
    rng = np.random.default_rng(seed)
    features = (rng.standard_normal((count, dims)) + offset).astype(np.float32)
    logits = (rng.standard_normal((count, classes)) + offset).astype(np.float32)
    labels = np.arange(count, dtype=np.int64) % classes
    return Features(features, logits, labels, tuple(f"class {i}" for i in range(classes)))
