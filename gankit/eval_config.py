"""What to score and how: the settings of ``gankit evaluate`` and of a recipe's ``[eval]``
table (evaluation during training), and the components they name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from gankit.params import Every, Interval, Params
from gankit.registry import Component, Registry


class EvalConfig(Params):
    every: Every = Field(Interval(0, "steps"),
                         description="during training: steps (500) or epochs ('1 epoch'); 0: at the end only")
    metrics: list[str] = Field(default_factory=lambda: ["fid"], min_length=1,
                               description="metric names; the first picks the best checkpoint")
    features: str = Field("domain", description="feature extractor: domain (no download) or inception (the standard one)")
    n: int = Field(2000, ge=2, le=1_000_000, description="generated images scored; real ones: as many, at most the split")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the generator's noise and of the real subset")
    split: Literal["train", "test"] = Field("train", description="the real images compared against")


@dataclass(frozen=True)
class EvalPlan:
    """An ``EvalConfig`` with the metric and feature extractor components it names."""

    config: EvalConfig
    metrics: dict[str, Component]
    extractor: Component

    @classmethod
    def resolve(cls, config: EvalConfig, registry: Registry) -> EvalPlan:
        """LookupError (suggesting the closest name) when a metric or extractor is not installed."""
        metrics = {name: registry.get("metric", name) for name in dict.fromkeys(config.metrics)}
        return cls(config, metrics, registry.get("feature_extractor", config.features))
