"""``gankit project``: the latent (and, for a conditional run, the class) whose generated
image best matches a given image, found by gradient descent on the latent through the
frozen generator (StyleGAN's projector, in the generator's input space).

Written once against a backend's primitives (``gankit.backend.Primitives``: the
sampling-mode generator, ``input_gradient`` and tensor conversions), as the objectives are;
the optimiser (Adam) runs in numpy on the latents. The loss is the mean squared pixel
error plus, weighted, the mean squared difference of a feature extractor's features, when
the extractor offers them as a differentiable function on the run's backend
(``differentiable(backend)``; the ``domain`` classifier does on torch and TensorFlow).
Several starting latents per class are optimised at once; the best one is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gankit.backend import trainer_classes
from gankit.files import write_bytes
from gankit.images import enlarged, gif_bytes, grid, write_npz, write_png
from gankit.noise import sample_noise
from gankit.rundir import RunDir, RunError
from gankit.runner import load_generator

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ProjectPlan", "Projected", "ProjectionError", "read_target", "project_run"]

FEATURE_WEIGHT = 0.1
"""The feature loss's weight where the extractor gives differentiable features."""
PRIMITIVES = ("forward_sampler", "tensor", "to_numpy", "image_batch", "input_gradient")
BETAS = (0.9, 0.999)
RAMP, WARM_UP = 0.25, 0.05
"""The fractions of the steps over which the learning rate ramps down (cosine) and up."""
GIF_WIDTH = 256


class ProjectionError(RunError):
    """The image cannot be projected (unreadable, the wrong size, a backend without the primitives)."""


@dataclass(frozen=True)
class ProjectPlan:
    """How to project: ``steps`` of Adam at ``learning_rate`` from ``starts`` latents of
    ``seed``'s noise per class (``class_name`` alone when given), with the feature loss at
    ``feature_weight`` (None: ``FEATURE_WEIGHT`` where the features are differentiable, else 0)."""

    steps: int = 300
    class_name: str | None = None
    resize: bool = False
    raw: bool = False
    feature_weight: float | None = None
    features: Any = None
    """The feature extractor (``[eval] features``' form); None: the one the plugins mark as default."""
    starts: int = 4
    learning_rate: float = 0.1
    seed: int = 0
    frames: int = 40


@dataclass
class Projected:
    """The best latent (D,), its class (None: unconditional), its image and the target
    (uint8 (H, W, C)), their mean absolute difference in 0-255 levels (``error``; at the
    best starting latent: ``start_error``), and the feature weight used."""

    latent: np.ndarray
    label: int | None
    image: np.ndarray
    target: np.ndarray
    error: float
    start_error: float
    feature_weight: float
    checkpoint: Path | None = None
    frames: list = field(default_factory=list)


def read_target(path: Path, shape: tuple[int, int, int], resize: bool = False) -> np.ndarray:
    """The image at ``path`` as uint8 (H, W, C) of the run's ``shape``; resized (Lanczos) and
    converted (grey or RGB) only when ``resize``, else a ProjectionError that says how it differs."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
    except FileNotFoundError:
        raise ProjectionError(f"{path}: no such image") from None
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ProjectionError(f"{path}: not a readable image ({error})") from None
    if image.mode not in ("L", "RGB", "LA", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info else "RGB" if image.mode == "P" else "L")
    bands = len(image.getbands())
    if (image.height, image.width) != (height, width) or bands != channels:
        if not resize:
            raise ProjectionError(f"{path} is a {image.width}x{image.height} {_colours(bands)} image and this run's "
                                  f"generator makes {width}x{height} {_colours(channels)} ones; pass --resize to "
                                  "resize and convert it")
        image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.LANCZOS)
    array = np.array(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _colours(channels: int) -> str:
    return {1: "greyscale", 2: "greyscale + alpha", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")


def project_run(registry, run_dir: Path, image_path: Path, output: Path, plan: ProjectPlan,
                checkpoint: str | None = None, *, info: Callable[[str], None] = print) -> Projected:
    """Project the image onto the run's generator and write ``output`` (.npz: ``latents``
    and ``labels`` that ``gankit sample --latent`` draws again, the reconstruction and the
    target), the reconstruction beside it (.png) and the optimisation (.gif)."""
    import numpy as np

    spec = RunDir(run_dir).spec()
    if plan.class_name is not None and not spec.classes:
        raise ProjectionError(f"--class: {run_dir} is not a conditional run (its data has no classes)")
    target = read_target(image_path, tuple(spec.shape), plan.resize)
    recipe, trainer, used = load_generator(registry, run_dir, checkpoint)
    if missing := [name for name in PRIMITIVES if not callable(getattr(trainer, name, None))]:
        raise ProjectionError(f"{type(trainer).__name__} cannot project an image: its backend lacks the primitive(s) "
                              f"{', '.join(missing)}")
    classes = trainer_classes(trainer)
    if plan.class_name is not None and not classes:
        raise ProjectionError(f"--class: {run_dir} is not a conditional run (its architecture has no classes)")
    try:
        candidates = ([spec.class_index(plan.class_name)] if plan.class_name is not None else list(range(classes)))
    except ValueError as error:
        raise ProjectionError(f"--class: {error}") from None
    features, weight = _feature_loss(registry, recipe, plan, info)
    projected = optimise(trainer, target, candidates or [None], replace(plan, feature_weight=weight), features)
    projected.checkpoint = used
    labels = {"labels": np.array([projected.label], np.int64)} if projected.label is not None else {}
    write_npz(output, projected.image[None], latents=projected.latent[None], target=target[None],
              mean_abs_error=np.float64(projected.error), **labels)
    write_png(output.with_suffix(".png"), projected.image)
    write_bytes(output.with_suffix(".gif"), _gif(projected.frames))
    return projected


def _feature_loss(registry, recipe, plan: ProjectPlan, info):
    """The extractor's differentiable features on the run's backend and the weight to use:
    (None, 0.0) when the weight is 0, or left unset and the features are not differentiable there."""
    if plan.feature_weight == 0:
        return None, 0.0
    from gankit.eval_config import EvalConfig
    from gankit.scoring import Evaluator, resolve_plan

    evaluation = replace(resolve_plan(EvalConfig(features=plan.features), registry), metrics={}, metric_params={})
    config = evaluation.config
    extractor = Evaluator(evaluation, recipe, info=info, warn=info).extractor
    offer = getattr(extractor, "differentiable", None)
    function = offer(recipe.backend.name) if callable(offer) else None
    if function is None:
        if plan.feature_weight is not None:
            raise ProjectionError(f"--feature-weight {plan.feature_weight}: the {config.extractor_name!r} features are "
                                  f"not differentiable on the {recipe.backend.name} backend; use --feature-weight 0")
        info(f"the {config.extractor_name!r} features are not differentiable on the {recipe.backend.name} backend: "
             "projecting with the pixel loss alone")
        return None, 0.0
    return function, FEATURE_WEIGHT if plan.feature_weight is None else plan.feature_weight


def optimise(ops, target: np.ndarray, classes: list, plan: ProjectPlan, features=None) -> Projected:
    """Adam on ``plan.starts`` latents per class of ``classes`` (``[None]``: unconditional)
    at once, through ``ops.forward_sampler``; the latent with the lowest loss seen wins."""
    import numpy as np

    starts = plan.starts
    latent_dim = ops.latent_dim
    z = sample_noise(plan.seed, starts * len(classes), latent_dim).astype(np.float64)
    labels = None if classes[0] is None else ops.tensor(np.repeat(np.array(classes, np.int64), starts))
    goal = ops.image_batch(target[None])
    pixels = float(target.size)
    goal_features, feature_size = None, 1.0
    if features is not None and plan.feature_weight:
        goal_features = ops.stop_gradient(features(goal))
        feature_size = float(ops.to_numpy(goal_features).shape[1])

    def loss(latents):
        images = ops.forward_sampler(latents, labels, raw=plan.raw)
        difference = images - goal
        total = ops.sum_per_sample(difference * difference) * (1.0 / pixels)
        if goal_features is not None:
            gap = features(images) - goal_features
            total = total + ops.sum_per_sample(gap * gap) * (plan.feature_weight / feature_size)
        return total

    first, second = np.zeros_like(z), np.zeros_like(z)
    best_loss, best_z = np.full(len(z), np.inf), z.copy()
    frames, every = [], max(1, plan.steps // plan.frames)
    for step in range(plan.steps):
        values, gradient = ops.input_gradient(loss, ops.tensor(z.astype(np.float32)))
        values, gradient = ops.to_numpy(values).astype(np.float64), ops.to_numpy(gradient).astype(np.float64)
        better = values < best_loss
        best_loss[better], best_z[better] = values[better], z[better]
        if step % every == 0:
            frames.append(np.concatenate([target, _best(ops, best_z, best_loss, classes, starts, plan.raw)[0]], axis=1))
        first = BETAS[0] * first + (1 - BETAS[0]) * gradient
        second = BETAS[1] * second + (1 - BETAS[1]) * gradient * gradient
        unbiased = first / (1 - BETAS[0] ** (step + 1)), second / (1 - BETAS[1] ** (step + 1))
        z = z - _rate(plan, step) * unbiased[0] / (np.sqrt(unbiased[1]) + 1e-8)
    values = ops.to_numpy(loss(ops.tensor(z.astype(np.float32)))).astype(np.float64)
    better = values < best_loss
    best_loss[better], best_z[better] = values[better], z[better]
    image, latent, label = _best(ops, best_z, best_loss, classes, starts, plan.raw)
    frames.append(np.concatenate([target, image], axis=1))
    return Projected(latent, label, image, target, _error(image, target), _error(frames[0][:, target.shape[1]:], target),
                     plan.feature_weight or 0.0, frames=frames)


def _error(image, target) -> float:
    import numpy as np

    return float(np.abs(image.astype(np.int64) - target).mean())


def _rate(plan: ProjectPlan, step: int) -> float:
    """StyleGAN's projector schedule: a warm-up over the first 5% of the steps, a cosine ramp
    down over the last quarter."""
    t = step / plan.steps
    down = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / RAMP) * math.pi)
    return plan.learning_rate * down * min(1.0, (step + 1) / (WARM_UP * plan.steps))


def _best(ops, latents, losses, classes, starts, raw):
    """The image, latent (float32) and class of the candidate with the lowest loss."""
    import numpy as np

    index = int(np.argmin(losses))
    latent = latents[index].astype(np.float32)
    label = classes[index // starts]
    labels = None if label is None else np.array([label], np.int64)
    return ops.generate_from_noise(latent[None], raw=raw, labels=labels)[0], latent, label


def _gif(frames) -> bytes:
    """The optimisation's frames, enlarged to ``GIF_WIDTH`` and framed, the last held."""
    framed = [grid(frame[None], 1) for frame in enlarged(frames, GIF_WIDTH)]
    return gif_bytes(framed + [framed[-1]] * 10, 80)
