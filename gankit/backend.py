"""The interface a backend plugin implements.

A backend's factory returns an object with ``trainer(...)``; the trainer owns the
networks, optimizers, device, random state and checkpoint format, and trains one step at
a time. What a step computes (losses, targets, penalties, update order, spectral-norm
iterations, EMA) is written once in ``gankit.objectives`` and ``gankit.updates`` against
the backend's ``Primitives``; the schedule around the steps (data order, logging,
sampling, checkpoints, stopping) lives in ``gankit.training``. Both are the same on every
backend.

What is not framework-specific is here too, for every backend to use: its parameters
(``BackendParams``: the device and threads), choosing the device, turning generator
output into uint8 images a chunk at a time, parameter counts, and the lazy wrapper that
keeps the framework unimported until a run uses it (``lazy_backend``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

from pydantic import Field, field_validator

from gankit.data import DataSpec
from gankit.errors import GankitError, PluginFault
from gankit.nn import Architecture
from gankit.params import Params
from gankit.train_config import TrainConfig

if TYPE_CHECKING:
    import numpy as np


class BackendError(GankitError):
    """The backend cannot run this recipe (unsupported device, architecture, ...)."""


class Trainer(Protocol):
    """What a backend's ``trainer(...)`` returns: one run's networks, optimizers, device,
    random state and checkpoints, trained one step at a time."""

    latent_dim: int
    """The size of the generator's noise vector."""

    def parameter_counts(self) -> dict[str, int]:
        """{"generator": n, "discriminator": m}"""

    def set_data(self, images: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Take the training images, uint8 (N, H, W, C), and (a conditional run) their int64
        labels (N,); the trainer may move them to its device."""

    def train_step(self, batches: list[np.ndarray], step: int, augment_p: float | None = None) -> dict[str, Any]:
        """Step ``step`` (0-based): ``gankit.updates.Updates.step`` run with this backend's
        primitives on ``d_steps`` real batches (``batches``: arrays of indices into the
        images), with their labels for a conditional run, and the step's augmentations
        (``Updates.augment_inputs(step, augment_p)`` as tensors). Returns its scalars as
        framework values, read only when logged (and, with an adaptive augmentation p,
        ``d_real_sign`` at every step)."""

    def fixed_samples(self) -> np.ndarray:
        """The generator's output for the fixed noise (and, conditional, the fixed labels:
        ``gankit.data.fixed_labels``), uint8 (N, H, W, C): the EMA generator's when
        ``train.ema`` is set."""

    def generate(self, count: int, seed: int, *, raw: bool = False, labels: np.ndarray | None = None) -> np.ndarray:
        """``count`` new samples from noise drawn with ``seed``, uint8 (N, H, W, C), from the
        EMA generator when there is one, unless ``raw``. A conditional generator draws the
        classes ``labels`` (int, (count,)); without them, every class in turn
        (``gankit.data.even_labels``)."""

    def generate_from_noise(self, noise: np.ndarray, *, raw: bool = False,
                            labels: np.ndarray | None = None) -> np.ndarray:
        """Optional (``gankit sample --seeds``, ``--truncation``, ``gankit interpolate``): the
        images of the given noise, float32 (N, ``latent_dim``), as ``generate`` draws them
        (``generate(count, seed)`` is this of ``gankit.noise.sample_noise(seed, count, ...)``).
        Where ``mixes_classes`` (a property) is true, ``labels`` may instead be float class
        weights (N, classes), which mix the classes' embeddings (``gankit interpolate --classes``)."""

    def save(self, directory: Path) -> None:
        """Write everything needed to continue training into the (empty) directory."""

    def load(self, directory: Path, *, generator_only: bool = False) -> None:
        """Restore what ``save`` wrote; never executes code from the files."""

    def load_weights(self, directory: Path) -> None:
        """Start from the networks in a checkpoint ``save`` wrote (``train.init_from``): the
        generator, the discriminator and the EMA generator, from the checkpoint's EMA
        generator or, where it has none, its generator; BatchNorm statistics and
        spectral-norm vectors with them. Optimizers, random state and the step stay fresh.
        A tensor that does not fit is a BackendError naming it (``check_same_shapes``); a
        missing or unreadable file a CheckpointError. Never executes code from the files."""

    def export_formats(self) -> dict[str, tuple[str, ...]]:
        """Optional (``gankit export`` refuses a run without it): the formats
        ``export_generator`` writes (``"onnx"``, ``"torchscript"``, ...), each with the modules it
        needs, which gankit finds without importing them. Offering ``"onnx"`` also gives ``web``."""

    def export_generator(self, format: str, folder: Path, *, raw: bool = False) -> dict[str, Any]:
        """Optional: write the generator (the EMA one unless ``raw``) into the empty ``folder``
        as one standalone model that needs neither gankit nor the backend's plugin: it takes
        ``noise`` float32 (N, latent size) and, when conditional, ``labels`` int64 (N,), and
        returns ``images`` float32 (N, H, W, C) in [-1, 1], ``generate``'s numbers before their
        uint8 conversion (within 1e-4). Returns ``{"file": name in folder, ...}`` with whatever
        else export.json should record of how (converter, version, opset)."""


class Primitives(Protocol):
    """What ``gankit.updates`` and ``gankit.objectives`` compute with: a backend's tensors
    (which support ``+ - * /`` with each other and with Python numbers) and these methods.
    Networks are named ``"generator"`` and ``"discriminator"``."""

    def latent(self, like: Any) -> Any:
        """Noise vectors from the run's noise generator, one per row of ``like``."""

    def fake_labels(self, like: Any) -> Any:
        """Conditional runs: the classes of the next fake batch, one per row of ``like``
        (integers; ``gankit.noise.training_labels`` of the step, as the latents are)."""

    def forward_generator(self, z: Any, labels: Any = None) -> Any:
        """The generator in training mode (given the labels when conditional)."""

    def forward_discriminator(self, images: Any, labels: Any = None) -> Any:
        """The discriminator in training mode: one logit (N, 1) per image (and label)."""

    def tape(self) -> Any:
        """A context manager that records computations for differentiation (re-enterable),
        with ``gradient(loss, network_name)``: d loss / d that network's trainable weights."""

    def apply(self, network: str, gradients: Any) -> None:
        """An optimizer step of that network (after ``train.clip_value`` clipping)."""

    def set_learning_rate(self, network: str, rate: Any) -> None:
        """Make ``rate`` that network's learning rate from its next optimizer step on (a
        float, or inside a compiled step a scalar tensor); the optimizer's state is kept."""

    def input_gradient(self, function: Any, inputs: Any) -> tuple[Any, Any]:
        """``(function(inputs), d sum(function(inputs)) / d inputs)``, differentiable again
        (for gradient penalties inside a recorded D loss)."""

    def batch_uniform(self, like: Any) -> Any:
        """U(0, 1) noise shaped (N, 1, ...) to broadcast over ``like``, from the noise generator."""

    def stop_gradient(self, x: Any) -> Any:
        """``x``, through which no gradient flows."""

    def mean(self, x: Any) -> Any:
        """The mean of every element: a scalar."""

    def sum(self, x: Any) -> Any:
        """The sum of every element: a scalar."""

    def sum_per_sample(self, x: Any) -> Any:
        """The sum over every axis but the first: shape (N,)."""

    def sqrt(self, x: Any) -> Any:
        """Elementwise square root."""

    def softplus(self, x: Any) -> Any:
        """Elementwise ``log(1 + exp(x))``, computed stably."""

    def relu(self, x: Any) -> Any:
        """Elementwise ``max(x, 0)``."""

    def sigmoid(self, x: Any) -> Any:
        """Elementwise ``1 / (1 + exp(-x))``."""

    def sign(self, x: Any) -> Any:
        """Elementwise -1, 0 or 1."""

    def matvec(self, matrix: Any, vector: Any, *, transpose: bool = False) -> Any:
        """``matrix @ vector`` (``matrix.T @ vector`` with ``transpose``), for spectral norm's power iteration."""

    def per_sample(self, values: Any) -> Any:
        """Per-image values (N,) shaped to broadcast over a batch of images."""

    def per_pixel(self, values: Any) -> Any:
        """Per-pixel values (N, H, W) shaped to broadcast over the channels of a batch of images."""

    def channel_mean(self, images: Any) -> Any:
        """Each pixel's mean over the channels, shaped to broadcast over the images."""

    def gather_pixels(self, images: Any, indices: Any) -> Any:
        """Images whose pixel (h, w) is pixel ``indices[n, h, w]`` (an integer index over the
        input's H x W pixels, row by row) of image n, in every channel; the index H*W reads 0.
        Differentiable in ``images`` (``gankit.augment`` builds every transform from it)."""

    def assign(self, variable: Any, value: Any) -> None:
        """Overwrite a weight or state tensor in place."""

    def ema_weights(self) -> list[tuple[Any, Any]]:
        """(average, live) pairs of the generator's trainable weights."""

    def ema_state(self) -> list[tuple[Any, Any]]:
        """(average, live) pairs of the generator's other state (BatchNorm statistics, ...)."""

    def advance_spectral_norm(self, network: str) -> None:
        """``u <- gankit.spectral.advance(self, matrix, u)`` for every spectral-normalised
        layer of that network (its weight as a (rows = outputs) x columns matrix)."""

    # Optional: what ``gankit.projection`` computes with (``gankit project``).

    def forward_sampler(self, z: Any, labels: Any = None, *, raw: bool = False) -> Any:
        """The generator as it samples (the EMA one unless ``raw``; BatchNorm on its running
        statistics), differentiable in ``z``: images in [-1, 1] in the backend's layout."""

    def tensor(self, array: np.ndarray) -> Any:
        """A numpy array as a tensor of the same dtype on the backend's device."""

    def to_numpy(self, x: Any) -> np.ndarray:
        """A tensor's values as a numpy array of the same dtype, on the host."""

    def image_batch(self, images: np.ndarray) -> Any:
        """uint8 (N, H, W, C) images as the generator's output looks: floats in [-1, 1], the backend's layout."""


class World(Protocol):
    """The processes that train one run together, as a backend's ``world()`` joined them:
    this one is ``rank`` (rank 0 alone writes the run directory and shows progress) of
    ``size``. Every rank calls ``share`` and ``any`` at the same points."""

    rank: int
    """This process's place, 0 to ``size - 1``."""
    size: int
    """How many processes train the run (more than one)."""

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (so that every rank stops at the same step)."""


class Backend(Protocol):
    """What a backend plugin's factory returns."""

    def trainer(self, architecture: Architecture, spec: DataSpec, train: TrainConfig, seed: int) -> Trainer:
        """The trainer of one run: the architecture's networks for data of ``spec``, trained
        as the recipe's ``[train]`` table says, from ``seed``."""

    def launch_command(self, processes: int, arguments: list[str]) -> list[str]:
        """Optional (``gankit run --gpus K`` is refused in one line without it): the command
        line that runs ``python -m gankit ARGUMENTS`` as one run on ``processes`` processes of
        this machine, one accelerator each, whose ``world()`` then joins them. A BackendError
        saying what to do instead when this machine cannot (too few accelerators)."""

    def world(self) -> World | None:
        """Optional: the processes this one trains with, when the backend's launcher started
        it among several (joined on the first call); None when it runs alone. Each rank trains
        its share of every batch, and the trainer averages the gradients over the ranks."""


class CheckpointError(GankitError):
    """A checkpoint file is missing, corrupt or does not fit the networks."""

    def __init__(self, path: Path, cause: BaseException | str):
        self.path = Path(path)
        kind = "error" if isinstance(cause, str) else type(cause).__name__
        super().__init__(f"checkpoint file {self.path} cannot be loaded ({kind}: {cause})")


# What every backend shares.


@dataclass(frozen=True)
class Device:
    """A device a recipe asked for and this machine has: ``cpu``, or an accelerator and its index."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"{self.kind}:{self.index}"


class BackendParams(Params):
    """The parameters every backend takes. A backend's subclass names its accelerators in
    ``ACCELERATORS`` (each with the other names a recipe may use for it); ``device`` is then
    ``auto``, ``cpu``, an accelerator, or ``NAME:N`` for the N-th of them."""

    ACCELERATORS: ClassVar[dict[str, tuple[str, ...]]] = {}
    device: str = Field("auto", description="auto, cpu, or an accelerator of the backend (NAME or NAME:N)")
    threads: int = Field(0, ge=0, le=512, description="CPU threads (0: the framework's default)")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        cls._parse_device(value)
        return value

    @classmethod
    def _parse_device(cls, value: str) -> tuple[str, int | None]:
        """``(kind, index)`` with the accelerator's own name; index None when not given."""
        match = re.fullmatch(r"([a-z]+)(?::(\d+))?", value)
        names = {alias: name for name, aliases in cls.ACCELERATORS.items() for alias in (name, *aliases)}
        kind = match and (match.group(1) if match.group(1) in ("auto", "cpu") else names.get(match.group(1)))
        if not kind or (kind in ("auto", "cpu") and match.group(2) is not None):
            choices = ["auto", "cpu", *(choice for name in cls.ACCELERATORS for choice in (name, f"{name}:N"))]
            raise ValueError(f"use {', '.join(choices[:-1])} or {choices[-1]}")
        return kind, None if match.group(2) is None else int(match.group(2))

    def choose_device(self, visible: dict[str, int]) -> Device:
        """The device to run on, given how many of each accelerator this machine has
        (``visible``, in order of preference): ``auto`` takes the first accelerator there is,
        else the CPU; an accelerator that is not there is a BackendError."""
        kind, index = self._parse_device(self.device)
        if kind == "auto":
            return next((Device(name) for name, count in visible.items() if count), Device("cpu"))
        if kind == "cpu":
            return Device("cpu")
        count = visible.get(kind, 0)
        if (index or 0) >= count:
            raise BackendError(f"device {self.device!r} is not available here ({count} {kind} device(s) visible); "
                               'use device = "auto" or "cpu"')
        return Device(kind, index or 0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] (N, H, W, C) -> uint8 images, rounded half to even."""
    import numpy as np

    images = np.asarray(images, dtype=np.float32)
    return np.round((np.clip(images, -1.0, 1.0) + 1.0) * np.float32(127.5)).astype(np.uint8)


SAMPLE_CHUNK = 512
"""Noise vectors per forward pass when sampling: 50,000 images for FID fit in memory."""


def generate_images(forward: Callable[..., Any], noise: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W, C) images from the latent ``noise`` (N, latent size), ``SAMPLE_CHUNK``
    vectors at a time; ``forward`` gives the generator's output for a chunk, (n, H, W, C)
    in [-1, 1], as anything ``np.asarray`` takes. A conditional generator's ``labels`` (N,)
    come as its second argument."""
    import numpy as np

    def chunk(array, start):
        return () if array is None else (array[start:start + SAMPLE_CHUNK],)

    return np.concatenate([to_uint8(forward(*chunk(noise, start), *chunk(labels, start)))
                           for start in range(0, len(noise), SAMPLE_CHUNK)])


def trainer_classes(trainer: Trainer) -> int:
    """How many classes a trainer's generator draws (0: unconditional, or a backend that
    knows nothing of classes)."""
    return getattr(trainer, "classes", 0)


NETWORKS = ("generator", "discriminator")


def check_same_shapes(network: str, there: dict[str, tuple[int, ...]], here: dict[str, tuple[int, ...]]) -> None:
    """A BackendError naming the first of ``network``'s tensors whose shape in a checkpoint
    (``there``: name -> shape) is not its shape in this trainer (``here``), in this trainer's
    order, then the checkpoint's tensors that this trainer lacks."""
    shown = lambda shape: str(tuple(int(n) for n in shape))  # noqa: E731
    for name, shape in here.items():
        if name not in there:
            raise BackendError(f"{network} tensor {name!r} is missing there and {shown(shape)} here")
        if tuple(there[name]) != tuple(shape):
            raise BackendError(f"{network} tensor {name!r} is {shown(there[name])} there and {shown(shape)} here")
    for name, shape in there.items():
        if name not in here:
            raise BackendError(f"{network} tensor {name!r} is {shown(shape)} there and missing here")


def parameter_counts(description: Architecture | None, count_native: Callable[[str], int]) -> dict[str, int]:
    """``{"generator": n, "discriminator": m}``, the trainable parameters: from the
    ``gankit.nn`` description the backend compiled, or (None: it built native networks)
    ``count_native(network)``."""
    if description is not None:
        return {name: getattr(description, name).parameter_count() for name in NETWORKS}
    return {name: count_native(name) for name in NETWORKS}


class LazyBackend:
    """A backend whose trainer class is imported only when a run uses it, so that listing
    plugins or ``--help`` never imports the framework."""

    def __init__(self, params: BackendParams, load_trainer: Callable[[], type]):
        self.params, self.load_trainer = params, load_trainer

    def trainer(self, architecture: Architecture, spec: DataSpec, train: TrainConfig, seed: int) -> Trainer:
        return self.load_trainer()(self.params, architecture, spec, train, seed)


def lazy_backend(load_trainer: Callable[[], type]) -> Callable[[BackendParams], LazyBackend]:
    """A backend factory for ``register``: ``load_trainer()`` imports and returns the trainer
    class, called with ``(params, architecture, spec, train, seed)``."""
    return lambda params: LazyBackend(params, load_trainer)


def native_networks(architecture: Architecture, backend: str) -> tuple[Any, Any] | None:
    """The generator and discriminator from the architecture's native builder for
    ``backend`` (the backend seeds its framework first); None when it has none and is
    described with ``gankit.nn``; a BackendError when it has neither. Native networks are
    unconditional: a conditional architecture with a native builder, or a builder that
    raises, is a PluginFault of the architecture's."""
    build = architecture.native.get(backend)
    if build is not None:
        if architecture.classes:
            raise PluginFault("architecture", f"its native {backend} networks would train without the classes its "
                                              "gankit.nn description draws (native networks are given no labels); "
                                              "make it unconditional (conditional = false), or give no native "
                                              "builder when it is conditional")
        try:
            return build()
        except Exception as error:
            text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            raise PluginFault("architecture", f"its native {backend} builder failed: "
                                              f"{type(error).__name__}{': ' + text if text else ''}") from error
    if architecture.generator is None or architecture.discriminator is None:
        raise BackendError(f"this architecture gives neither a gankit.nn description nor a native builder "
                           f"for the {backend} backend")
    return None


def check_native_shapes(images: tuple[int, ...], logits: tuple[int, ...], spec: DataSpec) -> None:
    """A native generator's output shape, as (N, H, W, C), must be the data's, and the
    native discriminator's (N, 1): a BackendError otherwise, before anything trains."""
    if tuple(images[1:]) != tuple(spec.shape):
        raise BackendError(f"the native generator makes {tuple(images[1:])} images (H, W, C) but the data is "
                           f"{tuple(spec.shape)}")
    if tuple(logits[1:]) != (1,):
        raise BackendError(f"the native discriminator must give one logit per image, (N, 1), not {tuple(logits)}")


# What a plugin may import from here (docs/plugins.md); the rest is gankit's own.
__all__ = ["Backend", "Trainer", "Primitives", "World", "BackendError", "CheckpointError", "BackendParams", "Device",
           "to_uint8", "SAMPLE_CHUNK", "generate_images", "parameter_counts", "lazy_backend", "native_networks",
           "check_native_shapes", "check_same_shapes"]
