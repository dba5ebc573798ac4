"""What a feature extractor gives a metric: ``Features`` (public as ``gankit.evaluation.Features``).
Its own module so that the reference file format and the scoring engine both use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Features"]


@dataclass(frozen=True)
class Features:
    """An extractor's output for N images, and what a metric's ``compute`` gets."""

    features: np.ndarray
    """float32 (N, D): the embedding FID and KID compare."""
    logits: np.ndarray
    """float32 (N, K): the class scores the Inception Score reads."""
    labels: np.ndarray | None = None
    """int64 (N,): each image's class (the real ones' from the dataset, -1 where unlabelled;
    the generated ones' the class they were drawn for), or None when the images have none
    (an unconditional run)."""
    class_names: tuple[str, ...] = ()
    """The name of label i."""
    moments: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """The features' float64 mean and covariance where they were stored with them (a
    reference file); ``mean_and_covariance()`` gives them either way."""

    def __len__(self) -> int:
        return len(self.features)

    def mean_and_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        """The features' mean (D,) and covariance (D, D), in float64: FID's statistics."""
        import numpy as np

        if self.moments is not None:
            return self.moments
        features = np.asarray(self.features, np.float64)
        return features.mean(0), np.cov(features, rowvar=False)
