"""Differentiable augmentation of every image the discriminator sees, written once for every
backend: DiffAugment (Zhao et al. 2020) and ADA (Karras et al. 2020).

A step's random transforms are drawn here, in numpy, from ``gankit.noise.augment_rng`` of the
run's seed and the step, and turned into arrays (``Augmentation.draws``): for each output
pixel, the input pixels it reads and their bilinear weights; a cutout mask; per-image colour
factors. A backend applies them with four primitives that are differentiable in the images
(``gather_pixels``, ``per_pixel``, ``per_sample``, ``channel_mean``), so the generator is
trained through the augmentation, both backends apply the very same transforms, and a resumed
run draws what an uninterrupted one would have.

Each transform is applied to each image with probability ``p``: fixed, or adapted during the
run from the overfitting heuristic r_t = E[sign(D(x_real))] (``AdaptiveP``). With p = 0 every
array is the identity and the images come out exactly as they went in.
"""

from __future__ import annotations

import math

import numpy as np

from gankit.noise import augment_rng
from gankit.train_config import ADA_GEOMETRY, AugmentConfig

__all__ = ["Augmentation", "AdaptiveP", "augment"]

CALLS_PER_UPDATE = 2
"""Draws per discriminator update: one for the real batch, one for the fake batch. The
generator's update reuses the last update's (the same fake images), and a penalty's inputs
(gp's interpolates) are seen through the real batch's transform."""


class Augmentation:
    """Draws a step's transforms for batches of ``batch_size`` images of ``shape`` (H, W, C)."""

    def __init__(self, config: AugmentConfig, seed: int, shape: tuple[int, int, int], batch_size: int, d_steps: int):
        self.config, self.seed, self.shape = config, seed, tuple(shape)
        self.batch_size, self.calls = batch_size, CALLS_PER_UPDATE * d_steps
        self.ops = config.operations

    def draws(self, step: int, p: float) -> dict[str, np.ndarray]:
        """The arrays of step ``step``'s ``calls`` transforms, each stacked (calls, N, ...)."""
        rng = augment_rng(self.seed, step)
        drawn = [self._draw(rng, p) for _ in range(self.calls)]
        return {name: np.stack([draw[name] for draw in drawn]) for name in drawn[0]}

    def shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """{name: (shape, dtype)} of what ``draws`` returns, known before any step."""
        return {name: (array.shape, array.dtype.name) for name, array in self.draws(0, 0.0).items()}

    def _draw(self, rng: np.random.Generator, p: float) -> dict[str, np.ndarray]:
        n, (h, w, c) = self.batch_size, self.shape
        if self.config.policy == "diffaugment":
            return _diffaugment(rng, self.ops, n, h, w, c, p)
        return _ada(rng, self.ops, n, h, w, c, p)


def _chance(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """Which of ``n`` images an operation applies to, each with probability ``p``."""
    return rng.random(n) < p


def _diffaugment(rng, ops, n, h, w, c, p) -> dict[str, np.ndarray]:
    """DiffAugment's three policies with its parameters: color (brightness U(-0.5, 0.5),
    saturation U(0, 2), contrast U(0.5, 1.5) about each image's mean), translation by up to
    1/8 of the size with zero padding, cutout of a square half the size."""
    draw = {}
    if "color" in ops:
        draw["brightness"] = np.where(_chance(rng, n, p), rng.random(n) - 0.5, 0.0).astype(np.float32)
        if c > 1:  # the channels' mean of a grey image is the image
            draw["saturation"] = np.where(_chance(rng, n, p), rng.random(n) * 2, 1.0).astype(np.float32)
        draw["contrast_about_mean"] = np.where(_chance(rng, n, p), rng.random(n) + 0.5, 1.0).astype(np.float32)
    if "translation" in ops:
        shift_h, shift_w = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
        applies = _chance(rng, n, p)
        rows = np.arange(h)[None, :] + np.where(applies, rng.integers(-shift_h, shift_h + 1, n), 0)[:, None]
        cols = np.arange(w)[None, :] + np.where(applies, rng.integers(-shift_w, shift_w + 1, n), 0)[:, None]
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        index = np.where(inside, rows[:, :, None] * w + cols[:, None, :], h * w)
        draw["index"] = index[:, None].astype(np.int32)
    if "cutout" in ops:
        size_h, size_w = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
        applies = _chance(rng, n, p)
        top = rng.integers(0, h + (1 - size_h % 2), n) - size_h // 2
        left = rng.integers(0, w + (1 - size_w % 2), n) - size_w // 2
        rows, cols = np.arange(h)[None, :], np.arange(w)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size_h)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size_w)
        cut = in_rows[:, :, None] & in_cols[:, None, :] & applies[:, None, None]
        draw["mask"] = np.where(cut, 0.0, 1.0).astype(np.float32)
    return draw


def _matrices(n: int, a, b, c, d, e, f) -> np.ndarray:
    """(n, 3, 3) affine matrices [[a, b, c], [d, e, f], [0, 0, 1]] from per-image values."""
    out = np.zeros((n, 3, 3))
    for (row, col), value in zip([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)], (a, b, c, d, e, f)):
        out[:, row, col] = value
    out[:, 2, 2] = 1.0
    return out


def _scale(n, sx, sy):
    return _matrices(n, sx, 0.0, 0.0, 0.0, sy, 0.0)


def _rotate(n, cos, sin):
    return _matrices(n, cos, -sin, 0.0, sin, cos, 0.0)


def _translate(n, tx, ty):
    return _matrices(n, 1.0, 0.0, tx, 0.0, 1.0, ty)


def _ada(rng, ops, n, h, w, c, p) -> dict[str, np.ndarray]:
    """ADA's pipeline (its default strengths) as far as it is differentiable and cheap here.
    The geometric operations compose into one matrix per image, which maps each output pixel
    to the input point it reads (as ADA's ``G_inv``); that point is read bilinearly, with
    reflection beyond the border. Integer moves (flips, 90-degree rotations, integer
    translation) therefore copy pixels exactly."""
    draw: dict[str, np.ndarray] = {}
    geometry = [op for op in ops if op in ADA_GEOMETRY]
    if geometry:
        inverse = np.tile(np.eye(3), (n, 1, 1))
        rotate_chance = 1 - math.sqrt(max(1 - p, 0.0))  # two rotations together apply with about p

        for op in ADA_GEOMETRY:
            if op == "xflip" and op in geometry:
                flip = np.where(_chance(rng, n, p), rng.integers(0, 2, n), 0)
                inverse = inverse @ _scale(n, 1 - 2 * flip, 1.0)
            elif op == "rotate90" and op in geometry:
                quarter = np.where(_chance(rng, n, p), rng.integers(0, 4, n), 0)
                inverse = inverse @ _rotate(n, np.array([1, 0, -1, 0])[quarter], np.array([0, 1, 0, -1])[quarter])
            elif op == "xint" and op in geometry:
                shift = np.where(_chance(rng, n, p)[:, None], rng.uniform(-0.125, 0.125, (n, 2)), 0.0)
                inverse = inverse @ _translate(n, -np.round(shift[:, 0] * w), -np.round(shift[:, 1] * h))
            elif op == "scale" and op in geometry:
                factor = np.where(_chance(rng, n, p), np.exp2(rng.standard_normal(n) * 0.2), 1.0)
                inverse = inverse @ _scale(n, 1 / factor, 1 / factor)
            elif op == "aniso" and op in geometry:
                factor = np.where(_chance(rng, n, p), np.exp2(rng.standard_normal(n) * 0.2), 1.0)
                inverse = inverse @ _scale(n, 1 / factor, factor)
            elif op == "xfrac" and op in geometry:
                shift = np.where(_chance(rng, n, p)[:, None], rng.standard_normal((n, 2)) * 0.125, 0.0)
                inverse = inverse @ _translate(n, -shift[:, 0] * w, -shift[:, 1] * h)
            if op in ("scale", "aniso") and "rotate" in geometry:  # ADA rotates before and after aniso
                angle = np.where(_chance(rng, n, rotate_chance), rng.uniform(-math.pi, math.pi, n), 0.0)
                inverse = inverse @ _rotate(n, np.cos(angle), np.sin(angle))
        draw["index"], draw["weight"] = _bilinear(inverse, h, w)
    if "brightness" in ops:
        draw["brightness"] = np.where(_chance(rng, n, p), rng.standard_normal(n) * 0.2, 0.0).astype(np.float32)
    if "contrast" in ops:
        draw["contrast"] = np.where(_chance(rng, n, p), np.exp2(rng.standard_normal(n) * 0.5), 1.0).astype(np.float32)
    if "saturation" in ops and c > 1:
        draw["saturation"] = np.where(_chance(rng, n, p), np.exp2(rng.standard_normal(n)), 1.0).astype(np.float32)
    return draw


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Indices beyond [0, size) mirrored back inside, the border pixel not repeated. Only the
    indices outside are computed again: most of a mildly transformed image is inside."""
    outside = (index < 0) | (index >= size)
    if not outside.any():
        return index
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index[outside], period)
    index = index.copy()
    index[outside] = np.where(folded >= size, period - folded, folded)
    return index


def _bilinear(inverse: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Each output pixel's four input pixels (flat indices, (n, 4, h, w)) and bilinear
    weights, for matrices that map centred output coordinates to centred input ones."""
    ys, xs = np.meshgrid(np.arange(h) + 0.5 - h / 2, np.arange(w) + 0.5 - w / 2, indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    source = inverse @ points  # (n, 3, h*w)
    x, y = source[:, 0] + w / 2 - 0.5, source[:, 1] + h / 2 - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    left, top = x0.astype(np.int32), y0.astype(np.int32)
    cols, rows = (_reflect(left, w), _reflect(left + 1, w)), (_reflect(top, h) * w, _reflect(top + 1, h) * w)
    n = len(inverse)
    index = np.empty((n, 4, h * w), np.int32)
    weight = np.empty((n, 4, h * w), np.float32)
    for corner, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        index[:, corner] = rows[dy] + cols[dx]
        weight[:, corner] = (fx if dx else 1 - fx) * (fy if dy else 1 - fy)
    return index.reshape(n, 4, h, w), weight.reshape(n, 4, h, w)


def augment(ops, images, draw: dict, pixels: int):
    """``images`` as the discriminator sees them through one transform (``draw``: one call's
    arrays, as backend tensors), in the order each policy applies its operations (DiffAugment:
    colour, translation, cutout; ADA: geometry, colour). ``pixels``: values per image."""
    if "contrast_about_mean" in draw:
        images = _color(ops, images, draw, pixels)
    if "index" in draw:
        images = _resample(ops, images, draw["index"], draw.get("weight"))
    if "mask" in draw:
        images = images * ops.per_pixel(draw["mask"])
    if "contrast_about_mean" not in draw:
        images = _color(ops, images, draw, pixels)
    return images


def _resample(ops, images, index, weight):
    """Each output pixel the weighted sum of the input pixels it reads (an index of H*W reads 0)."""
    total = None
    for corner in range(index.shape[1]):
        term = ops.gather_pixels(images, index[:, corner])
        if weight is not None:
            term = term * ops.per_pixel(weight[:, corner])
        total = term if total is None else total + term
    return total


def _color(ops, images, draw: dict, pixels: int):
    """Brightness, then saturation and contrast (DiffAugment) or contrast and saturation
    (ADA). Each factor f mixes as ``x f + m (1 - f)``, which is exactly x when f = 1."""
    if "brightness" in draw:
        images = images + ops.per_sample(draw["brightness"])
    if "contrast_about_mean" in draw:
        if "saturation" in draw:
            images = _mix(images, ops.channel_mean(images), ops.per_sample(draw["saturation"]))
        mean = ops.per_sample(ops.sum_per_sample(images) / float(pixels))
        return _mix(images, mean, ops.per_sample(draw["contrast_about_mean"]))
    if "contrast" in draw:
        images = images * ops.per_sample(draw["contrast"])
    if "saturation" in draw:
        images = _mix(images, ops.channel_mean(images), ops.per_sample(draw["saturation"]))
    return images


def _mix(images, centre, factor):
    return images * factor + centre * (1.0 - factor)


class AdaptiveP:
    """ADA's controller: every ``interval`` steps, p moves by ``sign(r_t - target)`` times
    ``batch_size * interval / (ada_kimg * 1000)``, where r_t is the mean of E[sign(D(x_real))]
    over those steps; p stays in [0, 1]. Its state goes into every checkpoint, so that a
    resumed run continues with the same p."""

    def __init__(self, config: AugmentConfig, batch_size: int, state: dict | None = None):
        self.config = config
        self.adjustment = batch_size * config.interval / (config.ada_kimg * 1000)
        self.p, self.sign_sum, self.observed = 0.0, 0.0, 0
        if state:
            self.p, self.sign_sum, self.observed = float(state["p"]), float(state["sign_sum"]), int(state["observed"])

    def observe(self, sign_mean: float) -> None:
        """Take one step's E[sign(D(x_real))]; adjust p when ``interval`` steps are in."""
        self.sign_sum += sign_mean
        self.observed += 1
        if self.observed == self.config.interval:
            r_t = self.sign_sum / self.observed
            self.p = min(max(self.p + float(np.sign(r_t - self.config.target)) * self.adjustment, 0.0), 1.0)
            self.sign_sum, self.observed = 0.0, 0

    def state(self) -> dict:
        return {"p": self.p, "sign_sum": self.sign_sum, "observed": self.observed}


NEEDED_PRIMITIVES = ("gather_pixels", "per_pixel", "per_sample", "channel_mean", "sign")
