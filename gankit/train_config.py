"""The ``[train]`` table: how the two networks are trained, the same on every backend."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, Field, model_validator

from gankit.objectives import LOSSES, PENALTIES
from gankit.params import Every, Interval, Params
from gankit.schedules import SCHEDULES, check_length

__all__ = ["TrainConfig", "Penalty", "AugmentConfig", "POLICIES"]


def one_of(known, what: str) -> AfterValidator:
    """A validator for a ``what`` named in ``known``, whose error lists them."""

    def check(value: str) -> str:
        if value not in known:
            raise ValueError(f"unknown {what} {value!r}; known: {', '.join(known)}")
        return value

    return AfterValidator(check)


DIFFAUGMENT_OPS = ("color", "translation", "cutout")
ADA_GEOMETRY = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
ADA_COLOR = ("brightness", "contrast", "saturation")
POLICIES = {"diffaugment": DIFFAUGMENT_OPS, "ada": ADA_GEOMETRY + ADA_COLOR}
"""The operations each policy knows, in the order they are applied."""

class AugmentConfig(Params):
    """The ``[train.augment]`` table (drawn and applied by ``gankit.augment``)."""

    policy: Literal["diffaugment", "ada"] = Field(description="diffaugment: color, translation, cutout (Zhao et al. "
                                                  "2020); ada: the differentiable part of ADA's pipeline (Karras et al. 2020)")
    ops: Optional[list[str]] = Field(None, description="a subset of the policy's operations (default: all of them)")
    p: Union[float, Literal["adaptive"], None] = Field(
        None, description="the probability of each operation, or \"adaptive\" (default: 1 for diffaugment, "
                          "adaptive for ada)")
    target: float = Field(0.6, gt=0, lt=1, description="adaptive p: the target of r_t = E[sign(D(real))]")
    ada_kimg: float = Field(500, gt=0, le=1e6, description="adaptive p: thousands of real images over which p "
                            "can move by 1 (the paper's speed)")
    interval: int = Field(4, ge=1, le=10000, description="adaptive p: adjust p every this many steps")

    @model_validator(mode="after")
    def _consistent(self):
        known = POLICIES[self.policy]
        for op in self.ops or ():
            if op not in known:
                raise ValueError(f"ops: {self.policy} has no operation {op!r}; known: {', '.join(known)}")
        if self.ops is not None and (not self.ops or len(set(self.ops)) != len(self.ops)):
            raise ValueError("ops: name each operation once, at least one (or leave ops out for all of them)")
        if isinstance(self.p, float) and not 0 <= self.p <= 1:
            raise ValueError(f"p = {self.p} is not a probability; give a number in [0, 1] or \"adaptive\"")
        defaults = {name: AugmentConfig.model_fields[name].default for name in ("target", "ada_kimg", "interval")}
        tuning = [name for name, default in defaults.items() if getattr(self, name) != default]
        if tuning and not self.adaptive:
            raise ValueError(f"{', '.join(tuning)} tune an adaptive p; set p = \"adaptive\" or remove them")
        return self

    @property
    def adaptive(self) -> bool:
        return self.probability == "adaptive"

    @property
    def probability(self) -> float | str:
        if self.p is not None:
            return self.p
        return 1.0 if self.policy == "diffaugment" else "adaptive"

    @property
    def operations(self) -> tuple[str, ...]:
        """The operations in use, in the policy's order."""
        chosen = set(self.ops or POLICIES[self.policy])
        return tuple(op for op in POLICIES[self.policy] if op in chosen)


class Penalty(Params):
    """One ``[[train.penalties]]`` entry: a regulariser added to the discriminator's loss."""

    use: Annotated[str, one_of(PENALTIES, "penalty")] = Field(description=", ".join(PENALTIES))
    weight: float = Field(gt=0, le=1e6, description="its factor in D's loss (gamma for r1, lambda for gp)")
    every: int = Field(1, ge=1, le=10000, description="apply every k steps with weight x k (lazy regularisation)")


class TrainConfig(Params):
    epochs: Optional[int] = Field(None, ge=1, description="passes over the data (or give steps)")
    steps: Optional[int] = Field(None, ge=1, description="generator updates in all; wins over epochs")
    batch_size: int = Field(64, ge=1, le=65536)
    loss: Annotated[str, one_of(LOSSES, "loss")] = Field("bce", description=", ".join(LOSSES))
    penalties: list[Penalty] = Field(default_factory=list, description="regularisers of D, each with its weight")
    augment: Optional[AugmentConfig] = Field(None, description="augment every image D sees, differentiably "
                                             "([train.augment]: policy, ops, p)")
    ema: Optional[float] = Field(None, gt=0, lt=1, description="decay of an exponential moving average of G's "
                                 "weights; samples and evaluation then use the average")
    ema_warmup: int = Field(0, ge=0, description="steps during which the average simply copies G")
    optimizer: Literal["adam", "rmsprop"] = "adam"
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    lr_schedule: Annotated[str, one_of(SCHEDULES, "learning-rate schedule")] = Field(
        "constant", description="how lr_g and lr_d change over the run: " + ", ".join(SCHEDULES))
    lr_warmup: int = Field(0, ge=0, description="steps of a linear warm-up from 0 to the rates, before the schedule")
    betas: list[float] = Field(default_factory=lambda: [0.5, 0.999], min_length=2, max_length=2)
    clip_value: Optional[float] = Field(None, gt=0, description="clip each gradient element (Keras clipvalue)")
    d_steps: int = Field(1, ge=1, le=100, description="discriminator updates per generator update")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="real labels become 1 - this")
    label_noise: float = Field(0.0, ge=0, lt=0.5, description="uniform noise of this size added to D's labels")
    update: Literal["alternating", "simultaneous"] = Field(
        "alternating",
        description="alternating: D then G sees the updated D; simultaneous: both from one forward pass (TF tutorial)",
    )
    max_seconds: Optional[float] = Field(
        None, gt=0, le=1e9, description="a time budget: the run ends, completed, once its training steps have taken "
        "this many seconds on train.clock (or at its last step, if that comes first); a resume counts what was spent")
    clock: Literal["cpu", "wall"] = Field(
        "cpu", description="what max_seconds measures: cpu, the training process's CPU time (all its threads; the "
        "same on a busy machine), or wall, elapsed time")
    samples: int = Field(64, ge=1, le=1024, description="size of the fixed noise batch for sample grids")
    log_every: int = Field(10, ge=1, description="a metrics.jsonl line this many steps")
    checkpoint_every: Every = Field(Interval(1000, "steps"), description="checkpoint this often (and at the end); 0: end only")
    keep_checkpoints: int = Field(3, ge=1, description="keep this many most recent checkpoints (the final one among them)")
    max_loss: Optional[float] = Field(None, gt=0, description="stop as diverged when a loss exceeds this in size")
    on_exporter_error: Literal["disable", "stop"] = Field(
        "disable", description="an exporter that raises: disable it and go on, or stop the run with a checkpoint")
    init_from: Optional[str] = Field(
        None, min_length=1, description="start G, D and the EMA generator from another run's weights: its run "
        "directory (its last checkpoint) or one of its checkpoints (.../checkpoints/step_N or best); the optimizers "
        "start fresh and the steps at 0. A source without an EMA generator gives the EMA its G")
    freeze_d: int = Field(
        0, ge=0, le=10000, description="FreezeD: keep the weights and biases of D's first k weight layers (Dense, "
        "Conv, ConvTranspose, Projection in gankit.nn order) fixed; BatchNorm scales and shifts and label embeddings "
        "still train, and BatchNorm statistics and spectral-norm vectors still update")

    @model_validator(mode="after")
    def _consistent(self):
        if self.epochs is None and self.steps is None:
            raise ValueError("give train.epochs or train.steps")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError("betas must each be in [0, 1)")
        if not LOSSES[self.loss].uses_targets:
            for key in ("label_smoothing", "label_noise"):
                if getattr(self, key):
                    raise ValueError(f"{key} needs a loss with label targets (bce, minimax, lsgan), "
                                     f"not {self.loss!r}; remove train.{key}")
        names = [penalty.use for penalty in self.penalties]
        if len(set(names)) != len(names):
            raise ValueError("penalties: each penalty may appear once; merge the entries into one weight")
        if self.ema_warmup and self.ema is None:
            raise ValueError("ema_warmup needs train.ema (the decay of the average), e.g. ema = 0.999")
        if self.clock != "cpu" and self.max_seconds is None:
            raise ValueError("clock says what train.max_seconds measures; set max_seconds too, or remove clock")
        if self.steps is not None:
            check_length(self, self.steps)
        return self

    def length(self) -> str:
        """What decides how long the run trains, in words (``--dry-run`` shows it)."""
        if self.steps is not None:
            ignored = f"; train.epochs = {self.epochs} is ignored" if self.epochs is not None else ""
            decided = f"length: {self.steps:,} steps (train.steps{ignored})"
        else:
            decided = f"length: {self.epochs:,} epoch{'s' * (self.epochs != 1)} (train.epochs)"
        if self.max_seconds is not None:
            decided += f", or less: it ends once its steps have taken {self.max_seconds:g} {self.clock} seconds"
        return decided

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch
