"""What to score and how: the settings of ``gankit evaluate`` and of a recipe's ``[eval]``
table (evaluation during training), and the components they name."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from gankit.params import Every, Interval, Params, validate_params
from gankit.registry import Component, Registry

METRIC_TABLE = '{ use = "precision", k = 5 }'


def _metric_entry(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("use"), str)):
        return value
    if isinstance(value, dict):
        raise ValueError(f'a metric table needs use = "..." naming the metric, e.g. {METRIC_TABLE}')
    raise ValueError(f"expected a metric name or a table of its parameters, e.g. {METRIC_TABLE}")


MetricEntry = Annotated[Union[str, dict[str, Any]], BeforeValidator(_metric_entry)]
"""A metric in ``[eval] metrics``: its name, or a table naming it with ``use`` beside its parameters."""


class EvalConfig(Params):
    every: Every = Field(Interval(0, "steps"),
                         description="during training: steps (500) or epochs ('1 epoch'); 0: at the end only")
    metrics: list[MetricEntry] = Field(default_factory=lambda: ["fid"], min_length=1,
                                       description=f"metric names, or tables with parameters ({METRIC_TABLE}); "
                                                   "the first picks the best checkpoint")
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
    metric_params: dict[str, BaseModel | None]
    """Each metric's parameters, validated by the metric's declared ``Params``."""

    @classmethod
    def resolve(cls, config: EvalConfig, registry: Registry) -> EvalPlan:
        """LookupError (suggesting the closest name) when a metric or extractor is not
        installed; ValueError, one line, for a metric's parameters it does not take."""
        metrics: dict[str, Component] = {}
        params: dict[str, BaseModel | None] = {}
        for entry in config.metrics:
            values = dict(entry) if isinstance(entry, dict) else {"use": entry}
            name = values.pop("use")
            component = registry.get("metric", name)
            validated = component_params(component, values)
            if name in params and params[name] != validated:
                raise ValueError(f"metric {name!r} is named twice with different parameters; keep one")
            metrics[name], params[name] = component, validated
        return cls(config, metrics, registry.get("feature_extractor", config.features), params)


def component_params(component: Component, values: dict[str, Any]) -> BaseModel | None:
    """``values`` validated by the component's declared parameters; ValueError, one line
    naming the component, for an unknown one (with the closest name) or a bad value."""
    kind = component.kind.replace("_", " ")
    known = list(component.params.model_fields) if component.params is not None else []
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes {', '.join(known) or 'none'}"
            raise ValueError(f"{kind} {component.name!r} has no parameter {key!r}; {hint}")
    if component.params is None:
        return None
    try:
        return validate_params(component.params, values)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "parameters"
        message = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{kind} {component.name!r}: {key}: {message} (got {first['input']!r})") from None


def _set_parameter(entry: dict[str, Any], setting: str, parse_value) -> None:
    key, equals, value = (part.strip() for part in setting.partition("="))
    if not equals or not key:
        raise ValueError(f"{entry['use']}: expected KEY=VALUE, e.g. precision:k=5 (got {setting!r})")
    if key in entry:
        raise ValueError(f"{entry['use']}: {key} is given twice")
    entry[key] = parse_value(value)


def parse_metric_option(texts: Iterable[str]) -> list[MetricEntry]:
    """``--metric`` values as ``[eval] metrics`` entries. Each text is comma-separated
    metrics, a name with optional ``:key=value`` parameters; a ``key=value`` after a comma
    is one more parameter of the metric before it: ``fid,kid:subsets=50,subset_size=500``.
    Values read as in ``--set`` (``5``, ``0.5``, ``true``, else a string). ValueError, one line."""
    from gankit.recipe import parse_value

    entries: list[dict[str, Any]] = []
    for text in texts:
        for piece in filter(None, (part.strip() for part in text.split(","))):
            name, colon, setting = piece.partition(":")
            continues = not colon and "=" in piece
            if not continues:
                if not name.strip() or "=" in name:
                    raise ValueError(f"{piece!r} names no metric; write e.g. precision:k=5")
                entries.append({"use": name.strip()})
            elif not entries:
                raise ValueError(f"{piece!r} names no metric; write the metric first, e.g. precision:k=5")
            if colon or continues:
                _set_parameter(entries[-1], piece if continues else setting, parse_value)
    if not entries:
        raise ValueError("name at least one metric, e.g. --metric fid,kid,is")
    return [entry["use"] if len(entry) == 1 else entry for entry in entries]
