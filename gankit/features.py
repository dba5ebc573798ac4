"""What a feature extractor gives a metric: ``Features`` (public as ``gankit.evaluation.Features``).
Its own module so that the reference file format and the scoring engine both use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Features"]


@dataclass(frozen=True)
class Features:
    """An extractor's output for N images, float32: ``features`` (N, D), the embedding FID
    and KID compare, and ``logits`` (N, K), the class scores the Inception Score reads.
    A metric also gets ``labels`` (N,), int64: each image's class (the real ones' from the
    dataset, -1 where unlabelled; the generated ones' the class they were drawn for), or
    None when the images have none (an unconditional run); ``class_names`` names label i."""

    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.features)
