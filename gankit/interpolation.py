"""``gankit interpolate``: a walk through the latents of chosen seeds, or (a conditional run
whose generator mixes classes) from class to class with a seed's latent held, as a GIF (or
an MP4), one walk or a grid of them, drawn by any backend that can draw given noise."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from gankit.backend import trainer_classes
from gankit.files import write_bytes
from gankit.images import enlarged, gif_bytes, grid
from gankit.latents import truncate, walk
from gankit.noise import seed_noise
from gankit.registry import Registry
from gankit.rundir import RunDir
from gankit.runner import RunError, load_generator
from gankit.sampling import draw

KEYFRAMES_PER_WALK = 3
"""Seeds each walk of a grid visits when ``--seeds`` is not given."""
SMALLEST_WIDTH = 256
"""Frames narrower than this are enlarged (nearest neighbour) by a whole factor."""
MACRO_BLOCK = 16
"""H.264 players want frame sides in multiples of this: MP4 frames get a black margin."""


@dataclass(frozen=True)
class Walk:
    """What to draw: ``seeds`` shared out in order among ``columns x rows`` walks (each at
    least two), ``frames`` frames at ``fps``, along great circles unless not ``spherical``."""

    seeds: list[int] | None = None
    frames: int = 60
    fps: int = 20
    spherical: bool = True
    columns: int = 1
    rows: int = 1
    truncation: float = 1.0
    scale: int = 0
    """Enlarge each frame by this factor; 0: enough to be at least ``SMALLEST_WIDTH`` wide."""
    classes: tuple[str, ...] = ()
    """Walk through these classes (names or indices) in order instead of through seeds:
    each walk holds one seed's latent (``seeds``: one per walk, default 0, 1, ...)."""

    @property
    def walks(self) -> int:
        return self.columns * self.rows

    def keyframe_seeds(self) -> list[list[int]]:
        """Each walk's seeds (a one-line ValueError when they do not share out)."""
        if self.classes:
            return self._class_walk_seeds()
        seeds = self.seeds if self.seeds is not None else list(range(KEYFRAMES_PER_WALK * self.walks))
        if len(seeds) % self.walks or len(seeds) // self.walks < 2:
            shape = f"--grid {self.columns}x{self.rows}: " if self.walks > 1 else ""
            raise ValueError(f"--seeds: {shape}{self.walks} walk{'s' * (self.walks > 1)} of at least two seeds each "
                             f"need a multiple of {self.walks} seeds, at least {2 * self.walks}; got {len(seeds)}")
        if self.frames < len(seeds) // self.walks:
            raise ValueError(f"--frames {self.frames}: a walk through {len(seeds) // self.walks} seeds needs at least "
                             "as many frames")
        share = len(seeds) // self.walks
        return [seeds[start:start + share] for start in range(0, len(seeds), share)]

    def _class_walk_seeds(self) -> list[list[int]]:
        seeds = self.seeds if self.seeds is not None else list(range(self.walks))
        if len(self.classes) < 2:
            raise ValueError(f"--classes {','.join(self.classes)}: a walk between classes needs at least two")
        if len(seeds) != self.walks:
            raise ValueError(f"--seeds: a walk between classes holds one seed's latent, so {self.walks} walk"
                             f"{'s' * (self.walks > 1)} take{'s' * (self.walks == 1)} {self.walks} seed"
                             f"{'s' * (self.walks > 1)}; got {len(seeds)}")
        if self.frames < len(self.classes):
            raise ValueError(f"--frames {self.frames}: a walk through {len(self.classes)} classes needs at least "
                             "as many frames")
        return [[seed] for seed in seeds]


def interpolate_run(registry: Registry, run_dir: Path, plan: Walk, output: Path, checkpoint: str | None = None,
                    *, raw: bool = False, class_name: str | None = None) -> tuple[Path, int]:
    """Write the walk to ``output`` (.gif, or .mp4 with imageio's ffmpeg plugin). A
    conditional run draws ``class_name`` in every walk, or walk k the class k (modulo the
    classes). Returns the checkpoint used and the number of frames."""
    import numpy as np

    keyframes = plan.keyframe_seeds()
    spec = RunDir(run_dir).spec()
    if plan.classes and class_name is not None:
        raise RunError("--class and --classes: give one (--classes walks between classes, --class fixes one)")
    _, trainer, checkpoint = load_generator(registry, run_dir, checkpoint)
    classes = trainer_classes(trainer)
    if (class_name is not None or plan.classes) and not classes:
        raise RunError(f"--class{'es' * bool(plan.classes)}: {run_dir} is not a conditional run")
    if plan.classes:  # one seed's latent in every frame of a walk; the class weights move
        noise = np.stack([np.repeat(seed_noise(seeds, trainer.latent_dim), plan.frames, axis=0)
                          for seeds in keyframes], axis=1)
    else:
        noise = np.stack([walk(seed_noise(seeds, trainer.latent_dim), plan.frames, spherical=plan.spherical)
                          for seeds in keyframes], axis=1)  # (frames, walks, latent)
    labels = None
    if plan.classes:
        labels = np.repeat(_class_weights(trainer, spec, plan, run_dir), plan.walks, axis=0)
    elif classes:
        try:
            chosen = [spec.class_index(class_name)] * plan.walks if class_name is not None else \
                [walk_index % classes for walk_index in range(plan.walks)]
        except ValueError as error:
            raise RunError(f"--class: {error}") from None
        labels = np.tile(np.array(chosen, np.int64), plan.frames)
    flat = truncate(noise.reshape(-1, noise.shape[-1]), plan.truncation)
    images = draw(trainer, flat, raw=raw, labels=labels)
    frames = [grid(images[start:start + plan.walks], plan.columns) if plan.walks > 1 else images[start]
              for start in range(0, len(images), plan.walks)]
    write_bytes(output, _encode(enlarged(frames, SMALLEST_WIDTH, plan.scale), output, plan.fps))
    return checkpoint, len(frames)


def _class_weights(trainer, spec, plan: Walk, run_dir: Path):
    """The class weights (frames, classes) of a straight walk through ``plan.classes``."""
    import numpy as np

    if not getattr(trainer, "mixes_classes", False):
        raise RunError(f"--classes: the generator of {run_dir} cannot mix classes (only a gankit.nn description's "
                       "conditional layers take class weights); use --class to walk between seeds within one class")
    try:
        chosen = [spec.class_index(name) for name in plan.classes]
    except ValueError as error:
        raise RunError(f"--classes: {error}") from None
    return walk(np.eye(trainer_classes(trainer), dtype=np.float32)[chosen], plan.frames, spherical=False)


def _encode(frames, output: Path, fps: int) -> bytes:
    """The frames as a looping GIF or an MP4 (H.264 through imageio-ffmpeg)."""
    if output.suffix.lower() != ".mp4":
        return gif_bytes(frames, 1000 / fps)
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise RunError(f"-o {output}: writing MP4 needs imageio's ffmpeg plugin: pip install 'gankit[video]' "
                       "(or write a .gif)") from None
    import imageio.v3 as iio

    if frames[0].shape[-1] == 1:
        frames = [frame[..., 0] for frame in frames]
    buffer = io.BytesIO()
    iio.imwrite(buffer, [_padded(frame, MACRO_BLOCK) for frame in frames], extension=".mp4", plugin="FFMPEG", fps=fps)
    return buffer.getvalue()


def _padded(frame, block: int):
    """``frame`` with black rows and columns added below and right to multiples of ``block``."""
    import numpy as np

    height, width = frame.shape[:2]
    pad = ((0, -height % block), (0, -width % block)) + ((0, 0),) * (frame.ndim - 2)
    return np.pad(frame, pad)
