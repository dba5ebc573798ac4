"""Latent vectors a user asks for by name: one per seed, truncated, and walks between them.
numpy only, so every backend draws the same images from them (``gankit sample --seeds``,
``gankit interpolate``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["parse_seeds", "check_truncation", "truncate", "slerp", "walk"]

MAX_SEEDS = 100_000
SEED_LIMIT = 2**32


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """``"0-35,100"`` as ``[0, 1, ..., 35, 100]``, in the order written; ValueError with a
    one-line message for anything else."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"{option} {text}: {part.strip() or 'an empty item'!r} is not a seed or a range; "
                             "write whole numbers and ranges, e.g. 0-35,100")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise ValueError(f"{option} {text}: the range {low}-{high} runs backwards; write {high}-{low}")
        if high >= SEED_LIMIT:
            raise ValueError(f"{option} {text}: {high} is too large; seeds run from 0 to {SEED_LIMIT - 1}")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ValueError(f"{option} {text}: more than {MAX_SEEDS:,} seeds; ask for fewer")
        seeds.extend(range(low, high + 1))
    return seeds


def check_truncation(psi: float) -> None:
    """A one-line ValueError unless 0 < psi <= 1."""
    if not 0 < psi <= 1:
        raise ValueError(f"--truncation {psi}: psi is a number above 0 and at most 1 (1: no truncation)")


def truncate(noise: np.ndarray, psi: float) -> np.ndarray:
    """The truncation trick as scaling toward the mean latent: ``psi * z``, the noise's mean
    being 0 (StyleGAN's form, in the generator's input space, as these generators have no
    mapping network). psi = 1 leaves the noise as it is; smaller psi trades variety for
    typical, cleaner images."""
    check_truncation(psi)
    return noise if psi == 1 else (noise * psi).astype(noise.dtype)


def slerp(start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between two latents at fractions ``t`` (F,): (F, D). The norm
    of Gaussian noise concentrates near sqrt(D), and a straight line between two such
    vectors passes through shorter ones the generator rarely saw; the great circle
    keeps the norm (interpolated linearly where the two norms differ)."""
    import numpy as np

    t = np.asarray(t, np.float64)[:, None]
    start64, end64 = start.astype(np.float64), end.astype(np.float64)
    norms = np.linalg.norm(start64), np.linalg.norm(end64)
    if min(norms) == 0:
        return ((1 - t) * start64 + t * end64).astype(start.dtype)
    cosine = np.clip(start64 @ end64 / (norms[0] * norms[1]), -1.0, 1.0)
    angle = np.arccos(cosine)
    if angle < 1e-6:
        return ((1 - t) * start64 + t * end64).astype(start.dtype)
    directions = (np.sin((1 - t) * angle) * start64 / norms[0] + np.sin(t * angle) * end64 / norms[1]) / np.sin(angle)
    return (directions * ((1 - t) * norms[0] + t * norms[1])).astype(start.dtype)


def walk(keyframes: np.ndarray, frames: int, *, spherical: bool = True) -> np.ndarray:
    """``frames`` latents (F, D) moving through ``keyframes`` (K, D) in order at an even pace
    per segment: the first is keyframes[0], the last keyframes[-1]."""
    import numpy as np

    segments = len(keyframes) - 1
    if segments < 1 or frames < len(keyframes):
        raise ValueError(f"a walk needs at least two keyframes and as many frames ({len(keyframes)} keyframes, "
                         f"{frames} frames)")
    position = np.linspace(0.0, segments, frames)
    segment = np.minimum(position.astype(int), segments - 1)
    t = position - segment
    out = np.empty((frames, keyframes.shape[1]), keyframes.dtype)
    for index in range(segments):
        chosen = segment == index
        start, end = keyframes[index], keyframes[index + 1]
        out[chosen] = (slerp(start, end, t[chosen]) if spherical
                       else ((1 - t[chosen, None]) * start + t[chosen, None] * end).astype(keyframes.dtype))
    return out
