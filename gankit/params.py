"""How plugins declare their parameters: subclass ``Params`` (a strict pydantic model).

Unknown keys and wrong types are errors, so a misspelled recipe key fails before any
work starts. ``Every`` is the type for "how often": a number of steps (``500``) or of
epochs (``"1 epoch"``, ``"15 epochs"``).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, NamedTuple, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError
from pydantic_core import to_json

__all__ = ["Params", "Every", "Interval", "parse_interval", "validate_params", "checked_params", "BadParams"]


class Params(BaseModel):
    """Base class for a plugin's parameters."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


M = TypeVar("M", bound=BaseModel)


def validate_params(model: type[M], values: dict[str, Any]) -> M:
    """``values`` read from TOML, validated as pydantic validates JSON: strict (``"3"`` is
    no int), yet a list is a tuple, a string a path or an enum's value and a table a
    nested model, so every field a run writes to its recipe.toml reads back."""
    return model.model_validate_json(to_json(values, inf_nan_mode="constants"))


class BadParams(ValueError):
    """Parameters that do not validate, in one line: ``key`` (dotted; "" for the whole
    table) and ``reason``; ``unknown`` when the key is one the model does not declare, and
    then ``hint`` names the closest declared key or all of them."""

    def __init__(self, key: str, reason: str, *, unknown: bool = False, hint: str = ""):
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key, self.reason, self.unknown, self.hint = key, reason, unknown, hint


def checked_params(model: type[M] | None, values: dict[str, Any]) -> M | None:
    """``values`` validated by ``model`` as ``validate_params`` does (None for a component
    that declares no parameters and is given none), or BadParams naming the first problem:
    an unknown key with the closest known one, or a bad value with what was given. The one
    validation behind recipes, ``[eval]``, the command line and ``gankit.testing``; each
    frames the line with where the values came from."""
    known = list(model.model_fields) if model is not None else []

    def unknown(key: str) -> BadParams:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"it takes {', '.join(known) or 'none'}"
        return BadParams(key, f"unknown key; {hint}", unknown=True, hint=hint)

    if model is None:
        if values:
            raise unknown(str(next(iter(values))))
        return None
    try:
        return validate_params(model, values)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise unknown(key) from None
        shown = repr(first["input"])
        shown = shown if len(shown) <= 80 else f"{shown[:60]}... ({len(shown):,} characters)"
        got = f" (got {shown})" if first["type"] != "missing" and key else ""
        raise BadParams(key, first["msg"].removeprefix("Value error, ") + got) from None


class Interval(NamedTuple):
    count: int
    unit: str  # "steps" or "epochs"

    def in_steps(self, steps_per_epoch: int) -> int:
        return self.count * steps_per_epoch if self.unit == "epochs" else self.count

    def __str__(self) -> str:
        return f"{self.count} {self.unit}"


_INTERVAL = re.compile(r"^\s*(\d+)?\s*(steps?|epochs?)\s*$")


def parse_interval(value) -> Interval:
    if isinstance(value, Interval):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a number of steps or a string like '2 epochs'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be 0 (never) or a positive number of steps")
        return Interval(value, "steps")
    if isinstance(value, str) and (match := _INTERVAL.match(value)):
        count = int(match.group(1) or 1)
        return Interval(count, "epochs" if match.group(2).startswith("epoch") else "steps")
    raise ValueError("expected a number of steps (500) or a string like '1 epoch' or '15 epochs'")


def _serialize_interval(interval: Interval):
    return interval.count if interval.unit == "steps" else f"{interval.count} epochs"


Every = Annotated[Interval, BeforeValidator(parse_interval), PlainSerializer(_serialize_interval),
                  Field(validate_default=True)]
"""A default is validated too, so ``Field(500)`` or ``"1 epoch"`` is an Interval like a recipe's value."""
