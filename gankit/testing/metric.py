"""``check_metric``: a metric scores hand-made features as the evaluation calls it, with
finite scores of stable names, the same scores for the same seed, and its headline
better for identical feature sets than for disjoint ones, in the direction it declares."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from gankit.evaluation import EvalError, Features
from gankit.plugins import load_registry
from gankit.registry import Registry
from gankit.testing.common import component, validated
from gankit.testing.fixtures import hand_made_features

SEED = 7
"""The evaluation seed the metric is given."""


def _copy(features: Features) -> Features:
    return replace(features, features=features.features.copy(), logits=features.logits.copy(),
                   labels=None if features.labels is None else features.labels.copy())


def _same(a: Features, b: Features) -> bool:
    labels = (a.labels is None and b.labels is None) or (
        a.labels is not None and b.labels is not None and np.array_equal(a.labels, b.labels))
    return np.array_equal(a.features, b.features) and np.array_equal(a.logits, b.logits) and labels


class _Scorer:
    """Calls one metric as the evaluation does and checks what each call returns."""

    def __init__(self, name: str, metric, scores: Iterable[str] | None):
        self.name, self.metric = name, metric
        self.expected = None if scores is None else set(scores)
        self.names: set[str] | None = None

    def __call__(self, what: str, fake: Features, real: Features, same_names: bool = True) -> dict[str, float]:
        real = real if self.metric.uses_real else None
        given = [_copy(fake), None if real is None else _copy(real)]
        try:
            scores = self.metric.compute(given[0], given[1], SEED)
        except EvalError:
            raise
        except Exception as error:
            raise AssertionError(f"metric {self.name!r} on {what}: compute raised {type(error).__name__}: {error}") \
                from None
        assert _same(given[0], fake) and (real is None or _same(given[1], real)), \
            f"metric {self.name!r} changed the features it was given ({what}); the evaluation shares them between metrics"
        return self._checked(what, scores, same_names)

    def _checked(self, what: str, scores: Any, same_names: bool) -> dict[str, float]:
        assert isinstance(scores, dict) and scores, f"metric {self.name!r} on {what}: compute returned {scores!r}, " \
                                                    "not a dict of named scores"
        for key, value in scores.items():
            assert isinstance(key, str), f"metric {self.name!r} on {what}: a score named {key!r}, not by a string"
            number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            assert number and math.isfinite(float(value)), \
                f"metric {self.name!r} on {what}: score {key!r} is {value!r}, not a finite number"
        names = set(scores)
        if self.expected is not None:
            assert names == self.expected, f"metric {self.name!r} on {what}: scores {sorted(names)}, " \
                                           f"expected {sorted(self.expected)}"
        assert self.name in names, f"metric {self.name!r} on {what}: no score named {self.name!r} (its headline, " \
                                   f"which picks a run's best checkpoint) among {sorted(names)}"
        if same_names:
            assert self.names is None or names == self.names, \
                f"metric {self.name!r}: scores {sorted(names)} on {what}, but {sorted(self.names)} before"
            self.names = names
        return {key: float(value) for key, value in scores.items()}


def check_metric(name: str, params: dict[str, Any] | None = None, *, scores: Iterable[str] | None = None,
                 count: int = 64, dims: int = 16, classes: int = 4, registry: Registry | None = None
                 ) -> dict[str, dict[str, float]]:
    """Make metric ``name`` from ``params`` (validated as a recipe's are) and score the
    kit's hand-made ``Features`` (``count`` of ``dims`` features, logits and labels over
    ``classes``; ``hand_made_features``) as the evaluation calls it: ``compute(fake, real,
    seed)``, ``real`` None unless ``uses_real``. Checks that ``uses_real`` and
    ``higher_is_better`` are bools and ``describe()`` a JSON dict; that the scores are a
    dict of finite numbers, the same names every time (exactly ``scores`` when given), one
    of them named ``name`` (the headline); that the same features and seed give the same
    scores; that it leaves the features as they were; that, when ``uses_real``, identical
    feature sets score at least as well as disjoint ones in the direction of
    ``higher_is_better``; and that generated features without labels (an unconditional
    run's) are scored or refused with ``EvalError``. Returns the scores of the
    ``"identical"`` and the ``"disjoint"`` sets. Needs no data and no download."""
    registry = registry or load_registry()
    found = component(registry, "metric", name)
    problem = found.requirement_problem()
    assert problem is None, problem
    try:
        metric = found.factory(validated(found, params))
    except Exception as error:
        raise AssertionError(f"metric {name!r}: factory(params) raised {type(error).__name__}: {error}") from None
    for attribute in ("uses_real", "higher_is_better"):
        value = getattr(metric, attribute, None)
        assert isinstance(value, bool), f"metric {name!r}: {attribute} is {value!r}, not True or False"
    description = metric.describe()
    assert isinstance(description, dict), f"metric {name!r}: describe() returned {type(description).__name__}, not a dict"
    try:
        json.dumps(description)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"metric {name!r}: describe() is recorded in eval.json, and is not JSON: {error}") from None

    score = _Scorer(name, metric, scores)
    real = hand_made_features(count, dims, classes, seed=0)
    far = hand_made_features(count, dims, classes, seed=0, offset=10.0)
    try:
        identical = score("identical feature sets", real, real)
        disjoint = score("disjoint feature sets", far, real)
        again = score("identical feature sets, again", real, real)
    except EvalError as error:
        raise AssertionError(f"metric {name!r} refused labelled features: {error}") from None
    for key, value in identical.items():
        assert math.isclose(again[key], value, rel_tol=1e-9, abs_tol=1e-12), \
            f"metric {name!r}: the same features and seed gave {key} = {value!r}, then {again[key]!r}; " \
            "draw any randomness from compute's seed"
    if metric.uses_real:
        better = identical[name] >= disjoint[name] if metric.higher_is_better else identical[name] <= disjoint[name]
        assert better, f"metric {name!r}: identical feature sets score {name} = {identical[name]:.6g}, disjoint ones " \
                       f"{disjoint[name]:.6g}, so higher_is_better = {metric.higher_is_better} looks wrong"
    try:
        score("generated features without labels", replace(far, labels=None, class_names=()), real, same_names=False)
    except EvalError:
        pass  # a one-line refusal, as intra_fid's: the evaluation reports it
    return {"identical": identical, "disjoint": disjoint}
