"""Metric parameters reach the metric: ``[eval] metrics = ["fid", { use = "precision", k = 5 }]``
in a recipe and ``--metric precision:k=5`` on the command line, validated by the metric's
declared parameters with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import recipe_dict
from gankit import hookimpl
from gankit.cli import main
from gankit.eval_config import EvalConfig, parse_metric_option
from gankit.evaluation import EvalError, Features
from gankit.scoring import Evaluator, resolve_plan
from gankit.plugins import load_registry
from gankit.recipe import RecipeError, apply_overrides, build_recipe


class Pixels:
    """A stand-in feature extractor: the images' pixels, so scoring needs no network."""

    def __init__(self, params, context):
        pass

    def describe(self):
        return {"name": "pixels"}

    def extract(self, images):
        flat = images.reshape(len(images), -1).astype(np.float32) / 255
        return Features(flat, np.zeros((len(images), 2), np.float32))


class PixelsPlugin:
    @hookimpl
    def register_feature_extractors(self, register):
        register("pixels", Pixels, description="the images' pixels (a test extractor)")


@pytest.fixture(scope="module")
def registry():
    return load_registry([("pixels-plugin", PixelsPlugin(), "test")])


def build(tiny_mnist, tmp_path, registry, **eval_table):
    return build_recipe(recipe_dict(tiny_mnist, eval={"features": "pixels", "n": 200, **eval_table}),
                        tmp_path / "r.toml", registry)


def test_the_metric_option_reads_names_and_parameters():
    assert parse_metric_option(["fid,kid,is"]) == ["fid", "kid", "is"]
    assert parse_metric_option(["fid,precision:k=5", "kid:subsets=50,subset_size=500,is"]) == [
        "fid", {"use": "precision", "k": 5}, {"use": "kid", "subsets": 50, "subset_size": 500}, "is"]
    assert parse_metric_option(["readable:threshold=0.5"]) == [{"use": "readable", "threshold": 0.5}]


@pytest.mark.parametrize("texts, message", [
    ([" , "], "name at least one metric, e.g. --metric fid,kid,is"),
    (["k=5,precision"], "'k=5' names no metric; write the metric first, e.g. precision:k=5"),
    (["precision:k"], "precision: expected KEY=VALUE, e.g. precision:k=5 (got 'k')"),
    (["precision:k=1,k=2"], "precision: k is given twice"),
])
def test_a_malformed_metric_option_is_one_line(texts, message):
    with pytest.raises(ValueError) as error:
        parse_metric_option(texts)
    assert str(error.value) == message


def test_a_recipe_sets_a_metrics_parameters_and_keeps_them(tiny_mnist, tmp_path, registry):
    recipe = build(tiny_mnist, tmp_path, registry, metrics=["fid", {"use": "precision", "k": 5}, {"use": "is", "splits": 2}])
    assert list(recipe.eval.metrics) == ["fid", "precision", "is"]
    params = recipe.eval.metric_params
    assert params["fid"] is None and params["precision"].k == 5 and params["is"].splits == 2
    written = recipe.as_dict()["eval"]["metrics"]
    assert written == ["fid", {"use": "precision", "k": 5}, {"use": "is", "splits": 2}]
    again = build_recipe({**recipe.as_dict(), "eval": recipe.as_dict()["eval"]}, tmp_path / "again.toml", registry)
    assert again.eval.metric_params == params


def test_set_reaches_a_metric_named_bare_in_the_recipe(tiny_mnist, tmp_path, registry):
    data = recipe_dict(tiny_mnist, eval={"features": "pixels", "metrics": ["fid", "kid"]})
    data = apply_overrides(data, ["eval.metrics.kid.subsets=7"], tmp_path / "r.toml")
    recipe = build_recipe(data, tmp_path / "r.toml", registry)
    assert recipe.eval.config.metrics == ["fid", {"use": "kid", "subsets": 7}]
    assert recipe.eval.metric_params["kid"].subsets == 7


@pytest.mark.parametrize("entry, message", [
    ({"use": "precision", "kk": 5}, "eval.metrics: metric 'precision' has no parameter 'kk'; did you mean 'k'?"),
    ({"use": "precision", "k": 0}, "eval.metrics: metric 'precision': k: Input should be greater than or equal to 1 (got 0)"),
    ({"use": "kid", "subsets": 0}, "metric 'kid': subsets: Input should be greater than or equal to 1 (got 0)"),
    ({"use": "fid", "k": 5}, "eval.metrics: metric 'fid' has no parameter 'k'; it takes none"),
    ({"use": "presicion"}, "eval: unknown metric 'presicion'; did you mean 'precision'?"),
    ({"k": 5}, 'eval.metrics.1: a metric table needs use = "..." naming the metric, e.g. { use = "precision", k = 5 }'),
    (3, "eval.metrics.1: expected a metric name or a table of its parameters"),
])
def test_bad_metric_parameters_in_a_recipe_are_one_line(entry, message, tiny_mnist, tmp_path, registry):
    with pytest.raises(RecipeError) as error:
        build(tiny_mnist, tmp_path, registry, metrics=["fid", entry])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_metric_named_twice_with_different_parameters_is_refused(tiny_mnist, tmp_path, registry):
    assert build(tiny_mnist, tmp_path, registry, metrics=["recall", {"use": "recall", "k": 3}]).eval.metric_params
    with pytest.raises(RecipeError, match="metric 'recall' is named twice with different parameters; keep one"):
        build(tiny_mnist, tmp_path, registry, metrics=["recall", {"use": "recall", "k": 4}])
    with pytest.raises(EvalError, match="metric 'recall' is named twice"):
        resolve_plan(EvalConfig(metrics=parse_metric_option(["recall:k=2,recall"])), registry)


def test_a_parameter_set_in_a_recipe_changes_the_score(tiny_mnist, tmp_path, registry):
    pytest.importorskip("torch_fidelity")
    scores = {}
    for k, subsets in ((1, 3), (10, 100)):
        recipe = build(tiny_mnist, tmp_path, registry, metrics=[
            {"use": "precision", "k": k}, {"use": "kid", "subsets": subsets, "subset_size": 50}])
        evaluator = Evaluator(recipe.eval, recipe, cache_dir=tmp_path / "cache")
        images = evaluator.load("test").images[:200]
        noisy = np.clip(images + np.random.default_rng(0).normal(0, 60, images.shape), 0, 255).astype(np.uint8)
        scores[k] = evaluator.score(noisy)
        assert evaluator.describe()["metrics"]["precision"]["k"] == k
        assert evaluator.describe()["metrics"]["kid"]["subsets"] == subsets
    assert scores[1]["precision"] < scores[10]["precision"], scores
    assert scores[1]["kid"] != scores[10]["kid"], scores


class Echo:
    """A metric reporting the scores it is told to, as an outside plugin's might."""

    uses_real = False
    higher_is_better = True

    def __init__(self, scores):
        self.scores = scores

    def describe(self):
        return {}

    def compute(self, fake, real, seed):
        return {name.rstrip("*") + ("x" if name.endswith("*") else ""): 1.0 for name in self.scores}


@pytest.mark.parametrize("first, second, said", [
    (("fid",), ("fid", "fid_std"), "metrics 'a' and 'b' both report a score named 'fid'"),
    (("intra_fid", "intra_fid_*"), ("intra_fid_3",), "metrics 'a' and 'b' both report a score named 'intra_fid_3'"),
    (("x",), ("class_accuracy",), "metric 'b' reports a score named 'class_accuracy', which the evaluation itself"),
])
def test_two_metrics_declaring_one_score_name_are_refused_before_anything_is_scored(first, second, said):
    from gankit.scoring import check_score_names

    with pytest.raises(EvalError, match=said):
        check_score_names({"a": Echo(first), "b": Echo(second)})


def test_declared_score_names_that_differ_pass_and_the_bundled_metrics_declare_what_they_report():
    from gankit.scoring import check_score_names

    check_score_names({"a": Echo(("intra_fid", "intra_fid_*")), "b": Echo(("fid", "kid", "kid_std"))})
    registry = load_registry()
    for (kind, name), component in registry.components.items():
        if kind != "metric" or component.provider != "builtin":
            continue
        params = component.params() if component.params is not None else None
        declared = component.factory(params).scores
        assert name in declared, f"metric {name!r}: its headline score is named like it"


class OutsideDefault:
    @hookimpl
    def register_metrics(self, register):
        register("echo", lambda params: Echo(("echo",)), description="an outside default", default=True)


def test_what_a_config_leaves_out_comes_from_the_plugins_defaults():
    bundled = load_registry()
    assert [c.name for c in bundled.defaults("metric")] == ["fid", "kid", "is"]
    training = EvalConfig().with_defaults(bundled)
    assert (training.metrics, training.features) == (["fid"], "domain")
    assert EvalConfig(metrics=["kid"]).with_defaults(bundled, all_metrics=True).metrics == ["kid"]
    assert EvalConfig().with_defaults(bundled, all_metrics=True).metrics == ["fid", "kid", "is"]
    outside = load_registry([("outside", OutsideDefault(), "outside 1.0")])
    assert EvalConfig().with_defaults(outside).metrics == ["echo"], "an outside plugin's default comes first"
    listed = [row for row in json.loads(CliRunner().invoke(main, ["list-plugins", "--json"]).output)["plugins"]
              if row["kind"] == "metric"]
    assert {row["name"] for row in listed if row["default"]} == {"fid", "kid", "is"}
