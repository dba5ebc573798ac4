"""Reference statistics (``gankit stats``, ``--reference``, ``[eval] reference``), the
real-vs-real floor beside every score, intra-class FID and feature extractor parameters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("torch_fidelity")

from conftest import recipe_dict  # noqa: E402
from gankit.cli import main  # noqa: E402
from gankit.data import DataContext  # noqa: E402
from gankit.eval_config import EvalConfig  # noqa: E402
from gankit.scoring import Evaluator, resolve_plan  # noqa: E402
from gankit.plugins import load_registry  # noqa: E402
from gankit.recipe import RecipeError, build_recipe  # noqa: E402
from gankit.reference import read_reference, write_reference  # noqa: E402
from gankit.runner import run  # noqa: E402

QUICK = "domain:steps=20"
CONDITIONAL_MLP = {"use": "mlp", "conditional": True, "g_condition": "embedding", "d_condition": "onehot",
                   "g_hidden": [32], "d_hidden": [32], "d_dropout": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reference-cache")


@pytest.fixture(autouse=True)
def gankit_cache(cache, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(cache))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_mnist, cache) -> dict[str, Path]:
    """A tiny unconditional run and a tiny conditional one (6 steps: poor generators), and the recipe file."""
    import tomli_w

    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, architecture in (("plain", {}), ("conditional", CONDITIONAL_MLP)):
        data = recipe_dict(tiny_mnist, name=name, **({"architecture": architecture} if architecture else {}))
        path = root / f"{name}.toml"
        path.write_text(tomli_w.dumps(data))
        made[name] = run(build_recipe(data, path, load_registry()), runs_root=root, context=DataContext(cache)).run_dir
        made[f"{name}_recipe"] = path
    return made


@pytest.fixture(scope="module")
def reference(runs, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("reference") / "mnist-train.npz"
    code, text = cli("stats", runs["plain_recipe"], "-o", output, "--features", QUICK, "-n", 100, "--seed", 0)
    assert code == 0, text
    assert "wrote 100 train images' domain features" in text and "100 other images of the train split" in text
    return output


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def evaluation(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())["evaluations"]["domain"]


def test_a_reference_file_gives_the_scores_of_the_images_it_was_made_from(runs, reference):
    stored = read_reference(reference)
    assert (len(stored.real), len(stored.floor), stored.shape) == (100, 100, (28, 28, 1))
    assert stored.meta["extractor"]["training"]["steps"] == 20 and stored.meta["split"] == "train"
    assert stored.real.labels.shape == (100,) and stored.meta["seed"] == 0 and len(stored.meta["sha256"]) == 64
    metrics = ("--metric", "fid,kid:subsets=5,subset_size=50,precision")
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, *metrics)
    assert code == 0, text
    direct = evaluation(runs["plain"])
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--reference", reference, *metrics)
    assert code == 0, text
    referenced = evaluation(runs["plain"])
    assert referenced["scores"].keys() == direct["scores"].keys()
    for key, value in direct["scores"].items():
        assert referenced["scores"][key] == pytest.approx(value, abs=1e-9), key
    assert referenced["floor"] == pytest.approx(direct["floor"], abs=1e-9)
    digest = hashlib.sha256(reference.read_bytes()).hexdigest()
    assert referenced["protocol"]["reference"] == {"path": str(reference), "sha256": digest}
    assert referenced["real"]["reference"]["sha256"] == digest and "reference" not in direct["protocol"]


def test_a_reference_made_otherwise_or_damaged_is_refused_in_one_line(runs, reference, tmp_path):
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", "domain:steps=21", "--reference", reference)
    assert code == 2 and f"reference {reference}: it was made with extractor weights (sha256) '" in text, text
    stored = read_reference(reference)
    bigger = tmp_path / "cifar.npz"
    write_reference(bigger, type(stored)(stored.real, stored.floor, {**stored.meta, "image": [32, 32, 3]}))
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--reference", bigger)
    assert code == 2 and "it was made from 32x32x3 (height x width x channels) images, and these are 28x28x1" in text
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(reference.read_bytes()[:500])
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--reference", damaged)
    assert code == 2 and f"reference {damaged}: damaged or not an .npz" in text, text
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--reference", other)
    assert code == 2 and "it holds no gankit metadata, so it is not a reference file; make one with gankit stats" in text


def test_the_floor_is_recorded_below_a_poor_generators_score_and_cached(runs, cache):
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--metric", "fid,is")
    assert code == 0 and "real vs real" in text, text
    first = evaluation(runs["plain"])
    assert set(first["floor"]) == {"fid", "is", "is_std"} and 0 < first["floor"]["fid"] < first["scores"]["fid"] / 2, first
    assert first["floor_how"].startswith("the scores of 100 other images of the train split, disjoint")
    cached = Path(first["real"]["features_cache"])
    written = cached.stat().st_mtime_ns
    assert cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--metric", "fid,is")[0] == 0
    assert evaluation(runs["plain"])["floor"] == first["floor"] and cached.stat().st_mtime_ns == written
    code, text = cli("evaluate", runs["plain"], "-n", 200, "--features", QUICK, "--metric", "fid")
    assert code == 0, text
    assert evaluation(runs["plain"])["floor_how"].startswith("the scores of 200 images of the test split")


def test_without_enough_real_images_the_record_says_why_there_is_no_floor(runs, cache):
    from dataclasses import replace

    from gankit.runner import load_generator

    registry = load_registry()
    recipe, trainer, _ = load_generator(registry, runs["plain"], None)
    train = recipe.dataset.component.factory(recipe.dataset.params, DataContext(cache)).load("train")
    few = replace(train, images=train.images[:10], labels=train.labels[:10])
    config = EvalConfig(metrics=["fid"], n=200, features={"use": "domain", "steps": 20})
    evaluator = Evaluator(resolve_plan(config, registry), recipe, cache_dir=cache, loaded={"train": train, "test": few})
    assert evaluator.score_generator(trainer)[0]["fid"] > 0
    assert evaluator.floor() == ({}, "not made: the train split has 256 images and the test split 10: too few "
                                     "for a second real sample of 200; score fewer (-n)")


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 20 images per class in 128 dimensions
def test_intra_class_fid_is_the_mean_of_each_classs_fid(runs, cache):
    from scipy import linalg

    from gankit.runner import load_generator

    config = EvalConfig(metrics=["intra_fid", "fid"], n=200, features={"use": "domain", "steps": 20})

    registry = load_registry()
    recipe, trainer, _ = load_generator(registry, runs["conditional"], None)
    evaluator = Evaluator(resolve_plan(config, registry), recipe, cache_dir=cache)
    names = tuple(str(i) for i in range(10))
    scores = evaluator.score_generator(trainer, names=names)[0]
    per_class = {key: value for key, value in scores.items() if key.startswith("intra_fid_")}
    assert set(per_class) == {f"intra_fid_{name}" for name in names}
    assert scores["intra_fid"] == pytest.approx(np.mean(list(per_class.values())), rel=1e-12)

    labels = np.repeat(np.arange(10), 20)
    fake = evaluator.extractor.extract(trainer.generate(200, 0, labels=labels)).features.astype(np.float64)
    real = evaluator.real()[0]
    for label in range(10):
        a, b = fake[labels == label], real.features[real.labels == label].astype(np.float64)
        mean_a, mean_b, cov_a, cov_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = linalg.sqrtm(cov_a @ cov_b).real
        direct = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
        assert per_class[f"intra_fid_{label}"] == pytest.approx(direct, rel=1e-3), label

    code, text = cli("evaluate", runs["conditional"], "-n", 200, "--features", QUICK, "--metric", "intra_fid")
    assert code == 0 and "INTRA_FID_3" in text, text
    assert "intra_fid" in evaluation(runs["conditional"])["floor"]
    code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", QUICK, "--metric", "intra_fid")
    assert code == 2 and "intra_fid compares images class by class, and these have no classes" in text, text


def test_extractor_parameters_from_a_recipe_and_the_command_line_reach_the_extractor(runs, tiny_mnist, tmp_path,
                                                                                    cache):
    registry = load_registry()
    recipe = build_recipe(recipe_dict(tiny_mnist, eval={"features": {"use": "domain", "steps": 25}, "n": 100}),
                          tmp_path / "r.toml", registry)
    assert recipe.eval.extractor_params.steps == 25
    assert recipe.as_dict()["eval"]["features"] == {"use": "domain", "steps": 25}
    evaluator = Evaluator(recipe.eval, recipe, cache_dir=cache)
    assert evaluator.extractor.describe()["training"]["steps"] == 25
    recorded = {}
    for steps in (20, 25):
        code, text = cli("evaluate", runs["plain"], "-n", 100, "--features", f"domain:steps={steps}", "--metric", "fid")
        assert code == 0, text
        recorded[steps] = evaluation(runs["plain"])
        assert recorded[steps]["extractor"]["training"]["steps"] == steps
    assert recorded[20]["scores"]["fid"] != recorded[25]["scores"]["fid"]
    assert recorded[25]["extractor"]["weights_sha256"] == evaluator.extractor.describe()["weights_sha256"]

    with pytest.raises(RecipeError) as error:
        build_recipe(recipe_dict(tiny_mnist, eval={"features": {"use": "domain", "stpes": 3}}), tmp_path / "r.toml",
                     registry)
    assert "eval.features: feature extractor 'domain' has no parameter 'stpes'; did you mean 'steps'?" in str(error.value)
    for option, message in (("domain:steps=0", "feature extractor 'domain': steps: Input should be greater than or equal to 1"),
                            ("domain,inception", "--features: name one feature extractor"),
                            ("domain:steps", "--features: domain: expected KEY=VALUE, e.g. domain:steps=300")):
        code, text = cli("evaluate", runs["plain"], "--features", option)
        assert code == 2 and message in text, text
        code, text = cli("stats", runs["plain_recipe"], "-o", tmp_path / "x.npz", "--features", option)
        assert code == 2 and message in text and not (tmp_path / "x.npz").exists(), text


def test_a_recipes_eval_reference_is_used_during_training(tiny_mnist, reference, tmp_path, cache):
    data = recipe_dict(tiny_mnist, eval={"features": {"use": "domain", "steps": 20}, "metrics": ["fid"], "n": 100,
                                         "reference": str(reference)})
    run_dir = run(build_recipe(data, tmp_path / "r.toml", load_registry()), runs_root=tmp_path / "runs",
                  context=DataContext(cache)).run_dir
    during = json.loads((run_dir / "eval.json").read_text())["during_training"]
    assert during["protocol"]["reference"]["path"] == str(reference)
    assert set(during["floor"]) == {"fid"} and during["floor_how"].startswith("the scores of 100 other images")


def test_a_reference_made_from_other_images_than_the_runs_is_warned_of_during_training(tiny_mnist, reference,
                                                                                      tmp_path, cache):
    stored = read_reference(reference)
    other = tmp_path / "other-data.npz"
    write_reference(other, type(stored)(stored.real, stored.floor, {**stored.meta, "sha256": "0" * 64}))
    warned: list[str] = []
    for path in (reference, other):
        data = recipe_dict(tiny_mnist, eval={"features": {"use": "domain", "steps": 20}, "metrics": ["fid"], "n": 100,
                                             "reference": str(path)})
        run(build_recipe(data, tmp_path / "r.toml", load_registry()), runs_root=tmp_path / "runs",
            context=DataContext(cache, warn=warned.append))
    about = [message for message in warned if "was made from other train images" in message]
    assert len(about) == 1 and about[0].startswith(f"reference {other} was made from other train images than this "
                                                   "run's (sha256 000000000000... against "), warned
