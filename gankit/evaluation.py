"""The metric and feature-extractor contract: what a metric or extractor plugin implements
(``Metric``, ``FeatureExtractor``), what it is given (``Features``, ``ExtractorContext``)
and the error it raises (``EvalError``). The machinery that scores a run with them is in
``gankit.scoring``; nothing here runs an evaluation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from gankit.data import ImageData
from gankit.errors import GankitError
from gankit.features import Features

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Metric", "FeatureExtractor", "ExtractorContext", "Features", "EvalError", "data_sha256"]


class EvalError(GankitError):
    """An evaluation that cannot run. The message is one line that says what to fix."""


class Metric(Protocol):
    """What a metric plugin's factory returns. Its headline score is named like the metric
    (``fid``), and a recipe's first metric's headline picks ``checkpoints/best``. Two
    metrics of one evaluation may not report a score of the same name, nor
    ``class_accuracy`` (the evaluation's own): declare ``scores`` and such a pair is
    refused before any image is generated, else when their scores are first computed."""

    uses_real: bool
    """Whether ``compute`` needs the real images' features."""
    higher_is_better: bool
    """Which way the headline score (the one named like the metric) is better."""
    scores: tuple[str, ...]
    """Optional: the names ``compute`` returns; one ending in ``*`` stands for every name
    it begins (``intra_fid_*``: a score per class)."""

    def describe(self) -> dict[str, Any]:
        """How the score is computed (library and version, settings); recorded with it."""

    def compute(self, fake: Features, real: Features | None, seed: int) -> dict[str, float]:
        """Named scores, e.g. ``{"kid": 0.01, "kid_std": 0.002}``; ``seed`` drives any sampling."""


class FeatureExtractor(Protocol):
    """May also have ``class_labels``: the data's label of each logit, when its logits
    classify the run's own classes (then conditional runs get a class accuracy)."""

    def describe(self) -> dict[str, Any]:
        """Exactly what it computes: ``name``, weights and their ``weights_sha256``, input
        handling, and ``resize``: how images are resized, if at all (FID depends on the
        filter). Recorded with every score, and part of the key of the cached real features."""

    def extract(self, images: np.ndarray) -> Features:
        """The features of uint8 (N, H, W, C) images."""

    def differentiable(self, backend: str) -> Callable[[Any], Any] | None:
        """Optional (``gankit project``'s feature loss): ``extract``'s features as a
        differentiable function of the named backend's image tensors (floats in [-1, 1], the
        layout its generator gives), or None where the extractor has none for that backend."""


@dataclass
class ExtractorContext:
    """What a feature extractor's factory gets besides its parameters."""

    cache_dir: Path
    """Where to keep downloaded weights and anything trained (the same cache as datasets')."""
    training_data: Callable[[], ImageData]
    """The run's labelled training split, as the run's recipe configures the dataset."""
    info: Callable[[str], None] = print
    """Show progress (a download, training a classifier), one line."""
    warn: Callable[[str], None] = print
    """Show a warning: one line the user should read."""


def data_sha256(data: ImageData) -> str:
    """A checksum of the images and labels themselves, wherever they were loaded from."""
    import numpy as np

    digest = hashlib.sha256(json.dumps([list(data.images.shape), list(data.labels.shape)]).encode())
    digest.update(memoryview(np.ascontiguousarray(data.images)))
    digest.update(memoryview(np.ascontiguousarray(data.labels, dtype=np.int64)))
    return digest.hexdigest()
