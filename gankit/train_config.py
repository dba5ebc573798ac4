"""The ``[train]`` table: how the two networks are trained, the same on every backend."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from gankit.params import Every, Interval, Params


class TrainConfig(Params):
    epochs: Optional[int] = Field(None, ge=1, description="passes over the data (or give steps)")
    steps: Optional[int] = Field(None, ge=1, description="generator updates in all; wins over epochs")
    batch_size: int = Field(64, ge=1, le=65536)
    loss: Literal["bce", "minimax"] = "bce"
    optimizer: Literal["adam", "rmsprop"] = "adam"
    lr_g: float = Field(2e-4, gt=0, le=1)
    lr_d: float = Field(2e-4, gt=0, le=1)
    betas: list[float] = Field(default_factory=lambda: [0.5, 0.999], min_length=2, max_length=2)
    clip_value: Optional[float] = Field(None, gt=0, description="clip each gradient element (Keras clipvalue)")
    d_steps: int = Field(1, ge=1, le=100, description="discriminator updates per generator update")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="real labels become 1 - this")
    label_noise: float = Field(0.0, ge=0, lt=0.5, description="uniform noise of this size added to D's labels")
    update: Literal["alternating", "simultaneous"] = Field(
        "alternating",
        description="alternating: D then G sees the updated D; simultaneous: both from one forward pass (TF tutorial)",
    )
    samples: int = Field(64, ge=1, le=1024, description="size of the fixed noise batch for sample grids")
    log_every: int = Field(10, ge=1, description="a metrics.jsonl line this many steps")
    checkpoint_every: Every = Field(Interval(1000, "steps"), description="checkpoint this often (and at the end); 0: end only")
    keep_checkpoints: int = Field(3, ge=1, description="keep this many most recent checkpoints (the final one among them)")
    max_loss: Optional[float] = Field(None, gt=0, description="stop as diverged when a loss exceeds this in size")
    on_exporter_error: Literal["disable", "stop"] = Field(
        "disable", description="an exporter that raises: disable it and go on, or stop the run with a checkpoint")

    @model_validator(mode="after")
    def _length_given(self):
        if self.epochs is None and self.steps is None:
            raise ValueError("give train.epochs or train.steps")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError("betas must each be in [0, 1)")
        return self

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch
