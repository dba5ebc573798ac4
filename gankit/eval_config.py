"""What to score and how: the settings of ``gankit evaluate`` and of a recipe's ``[eval]``
table (evaluation during training), and the components they name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Iterable, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, Field

from gankit.errors import GankitError
from gankit.params import BadParams, Every, Interval, Params, checked_params
from gankit.registry import Component, Registry
from gankit.values import parse_value

METRIC_TABLE = '{ use = "precision", k = 5 }'
FEATURES_TABLE = '{ use = "domain", steps = 300 }'


def _entry(what: str, example: str):
    """The validator of a component named bare or as a table with ``use`` beside its parameters."""

    def check(value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("use"), str)):
            return value
        if isinstance(value, dict):
            raise ValueError(f'a {what} table needs use = "..." naming the {what}, e.g. {example}')
        raise ValueError(f"expected a {what} name or a table of its parameters, e.g. {example}")

    return BeforeValidator(check)


MetricEntry = Annotated[Union[str, dict[str, Any]], _entry("metric", METRIC_TABLE)]
"""A metric in ``[eval] metrics``: its name, or a table naming it with ``use`` beside its parameters."""
FeaturesEntry = Annotated[Union[str, dict[str, Any]], _entry("feature extractor", FEATURES_TABLE)]
"""``[eval] features``: the extractor's name, or a table naming it with ``use`` beside its parameters."""


def entry_name(entry: str | dict[str, Any]) -> str:
    return entry if isinstance(entry, str) else entry["use"]


def _split_entry(entry: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    values = dict(entry) if isinstance(entry, dict) else {"use": entry}
    return values.pop("use"), values


class PlanError(GankitError, ValueError):
    """Parameters a component does not take; ``key`` is the ``[eval]`` key that set them."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class EvalConfig(Params):
    every: Every = Field(Interval(0, "steps"),
                         description="during training: steps (500) or epochs ('1 epoch'); 0: at the end only")
    metrics: Optional[list[MetricEntry]] = Field(
        None, min_length=1, description=f"metric names, or tables with parameters ({METRIC_TABLE}); the first picks "
                                        "the best checkpoint; default: the first metric a plugin marks as default")
    features: Optional[FeaturesEntry] = Field(
        None, description=f"feature extractor, or a table with parameters ({FEATURES_TABLE}); default: the one a "
                          "plugin marks as default")
    n: int = Field(2000, ge=2, le=1_000_000, description="generated images scored; real ones: as many, at most the split")
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the generator's noise and of the real subset")
    split: Literal["train", "test"] = Field("train", description="the real images compared against")
    reference: Optional[str] = Field(None, description="a reference statistics file (gankit stats) to compare against "
                                                       "instead of the split; a relative path is read from the working directory")

    @property
    def extractor_name(self) -> str:
        """The extractor's name; only once ``EvalPlan.resolve`` has filled in the default."""
        if self.features is None:
            raise LookupError("no feature extractor chosen yet: resolve the plan first")
        return entry_name(self.features)

    def with_defaults(self, registry: Registry, *, all_metrics: bool = False) -> EvalConfig:
        """This config with the metrics and extractor it leaves out filled in from the
        plugins' defaults (``register(..., default=True)``): the first default metric, or
        with ``all_metrics`` every one (``gankit evaluate``), and the first default
        extractor. PlanError, one line, when none is installed."""
        update: dict[str, Any] = {}
        if self.metrics is None:
            metrics = [c.name for c in registry.defaults("metric")]
            if not metrics:
                raise PlanError("metrics", "no installed metric plugin is marked as a default; name the metrics, "
                                           f"e.g. metrics = [{METRIC_TABLE}]")
            update["metrics"] = metrics if all_metrics else metrics[:1]
        if self.features is None:
            extractors = registry.defaults("feature_extractor")
            if not extractors:
                raise PlanError("features", "no installed feature extractor plugin is marked as a default; name "
                                            f"one, e.g. features = {FEATURES_TABLE}")
            update["features"] = extractors[0].name
        return self.model_copy(update=update) if update else self


@dataclass(frozen=True)
class EvalPlan:
    """An ``EvalConfig`` with the metric and feature extractor components it names."""

    config: EvalConfig
    metrics: dict[str, Component]
    extractor: Component
    metric_params: dict[str, BaseModel | None]
    """Each metric's parameters, validated by the metric's declared ``Params``."""
    extractor_params: BaseModel | None = None
    """The feature extractor's, validated by its declared ``Params``."""

    @classmethod
    def resolve(cls, config: EvalConfig, registry: Registry) -> EvalPlan:
        """LookupError (suggesting the closest name) when a metric or extractor is not
        installed; PlanError, one line, for parameters a metric or the extractor does not take.
        What ``config`` leaves out comes from the plugins' defaults (``with_defaults``)."""
        config = config.with_defaults(registry)
        metrics: dict[str, Component] = {}
        params: dict[str, BaseModel | None] = {}
        for entry in config.metrics:
            name, values = _split_entry(entry)
            component = registry.get("metric", name)
            validated = _validated("metrics", component, values)
            if name in params and params[name] != validated:
                raise PlanError("metrics", f"metric {name!r} is named twice with different parameters; keep one")
            metrics[name], params[name] = component, validated
        extractor, values = _split_entry(config.features)
        component = registry.get("feature_extractor", extractor)
        return cls(config, metrics, component, params, _validated("features", component, values))


def _validated(key: str, component: Component, values: dict[str, Any]) -> BaseModel | None:
    try:
        return component_params(component, values)
    except ValueError as error:
        raise PlanError(key, str(error)) from None


def component_params(component: Component, values: dict[str, Any]) -> BaseModel | None:
    """``values`` validated by the component's declared parameters (``checked_params``);
    ValueError, one line naming the component, for an unknown one (with the closest name)
    or a bad value."""
    kind = component.kind.replace("_", " ")
    try:
        return checked_params(component.params, values)
    except BadParams as error:
        if error.unknown:
            raise ValueError(f"{kind} {component.name!r} has no parameter {error.key!r}; {error.hint}") from None
        raise ValueError(f"{kind} {component.name!r}: {error}") from None


def _set_parameter(entry: dict[str, Any], setting: str, parse_value, example: str) -> None:
    key, equals, value = (part.strip() for part in setting.partition("="))
    if not equals or not key:
        raise ValueError(f"{entry['use']}: expected KEY=VALUE, e.g. {example} (got {setting!r})")
    if key in entry:
        raise ValueError(f"{entry['use']}: {key} is given twice")
    entry[key] = parse_value(value)


def _parse_entries(texts: Iterable[str], what: str, example: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for text in texts:
        for piece in filter(None, (part.strip() for part in text.split(","))):
            name, colon, setting = piece.partition(":")
            continues = not colon and "=" in piece
            if not continues:
                if not name.strip() or "=" in name:
                    raise ValueError(f"{piece!r} names no {what}; write e.g. {example}")
                entries.append({"use": name.strip()})
            elif not entries:
                raise ValueError(f"{piece!r} names no {what}; write the {what} first, e.g. {example}")
            if colon or continues:
                _set_parameter(entries[-1], piece if continues else setting, parse_value, example)
    return entries


def _bare(entry: dict[str, Any]) -> str | dict[str, Any]:
    return entry["use"] if len(entry) == 1 else entry


def parse_metric_option(texts: Iterable[str]) -> list[MetricEntry]:
    """``--metric`` values as ``[eval] metrics`` entries. Each text is comma-separated
    metrics, a name with optional ``:key=value`` parameters; a ``key=value`` after a comma
    is one more parameter of the metric before it: ``fid,kid:subsets=50,subset_size=500``.
    Values read as in ``--set`` (``5``, ``0.5``, ``true``, else a string). ValueError, one line."""
    entries = _parse_entries(texts, "metric", "precision:k=5")
    if not entries:
        raise ValueError("name at least one metric, e.g. --metric fid,kid,is")
    return [_bare(entry) for entry in entries]


def parse_features_option(text: str) -> FeaturesEntry:
    """A ``--features`` value (``domain``, ``domain:steps=300,batch_size=64``) as ``[eval] features``,
    read as ``--metric`` reads one metric. ValueError, one line."""
    entries = _parse_entries([text], "feature extractor", "domain:steps=300")
    if len(entries) != 1:
        raise ValueError(f"name one feature extractor, e.g. domain or inception:weights=PATH (got {text!r})")
    return _bare(entries[0])
