"""Evaluation: the domain FID puts real held-out data far below noise, falls as a run
trains, and is the same when a run is scored twice; ``gankit evaluate`` and its errors;
finding, downloading and checking the Inception weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("torch_fidelity")

from conftest import real_mnist, write_idx  # noqa: E402
from gankit import __version__  # noqa: E402
from gankit.cli import main  # noqa: E402
from gankit.data import DataContext, DataError  # noqa: E402
from gankit.eval_config import EvalConfig  # noqa: E402
from gankit.evaluation import EvalError  # noqa: E402
from gankit.scoring import Evaluator, resolve_plan  # noqa: E402
from gankit.sampling import evaluate_run  # noqa: E402
from gankit import checkpoints  # noqa: E402
from gankit.rundir import RunDir  # noqa: E402
from gankit.plugins import load_registry  # noqa: E402
from gankit.recipe import build_recipe  # noqa: E402
from gankit.runner import build_trainer, run  # noqa: E402
from gankit_plugins.features.inception import InceptionParams, locate_weights  # noqa: E402
from httpserver import serve  # noqa: E402

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
HALF = 2048


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def eval_cache(tmp_path_factory) -> Path:
    """One cache for the module, so each domain classifier is trained once."""
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="module")
def mnist_halves(tmp_path_factory) -> Path:
    """Real MNIST in the official format: 2,048 train and 2,048 other (test) images."""
    root = tmp_path_factory.mktemp("mnist-halves")
    images, labels = real_mnist(2 * HALF)
    for split, part in (("train", slice(0, HALF)), ("t10k", slice(HALF, None))):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images[part])
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels[part])
    return root


def mlp_recipe(mnist_root: Path) -> dict:
    return {
        "name": "mlp",
        "seed": 0,
        "dataset": {"use": "mnist", "root": str(mnist_root), "download": False},
        "architecture": {"use": "mlp", "g_hidden": [128, 256], "d_hidden": [256, 128]},
        "backend": {"use": "torch", "device": "cpu"},
        "train": {"steps": 300, "batch_size": 64, "log_every": 50, "checkpoint_every": 0},
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, registry, mnist_halves, eval_cache) -> Path:
    """A small MLP GAN trained 300 steps on real MNIST, with its step-0 weights (the run's
    own seeded initialisation) saved as a checkpoint beside the last."""
    root = tmp_path_factory.mktemp("runs")
    data = mlp_recipe(mnist_halves)
    recipe = build_recipe(data, root / "mlp.toml", registry)
    run_dir = run(recipe, runs_root=root, context=DataContext(eval_cache)).run_dir
    initial = build_trainer(recipe, RunDir(run_dir).spec())
    checkpoints.save(RunDir(run_dir), initial, 0, {"epoch": 0})
    return run_dir


def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_real_held_out_images_score_far_better_than_noise(dataset, registry, mnist_halves, eval_cache, tmp_path):
    if dataset == "fashion-mnist" and not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    table = {"use": "mnist", "root": str(mnist_halves), "download": False} if dataset == "mnist" \
        else {"use": "fashion-mnist", "download": False, "limit": 10_000}
    recipe = build_recipe({**mlp_recipe(mnist_halves), "dataset": table}, tmp_path / "r.toml", registry)
    quick = {"steps": 200} if dataset == "fashion-mnist" else {}  # the mnist classifier is shared with the tests below
    plan = resolve_plan(EvalConfig(metrics=["fid"], n=1000, features={"use": "domain", **quick}), registry)
    evaluator = Evaluator(plan, recipe, cache_dir=eval_cache)
    held_out = evaluator.load("test").images[:1000]
    noise = np.random.default_rng(0).integers(0, 256, held_out.shape, dtype=np.uint8)
    real, random = evaluator.score(held_out)["fid"], evaluator.score(noise)["fid"]
    assert real * 50 < random, (real, random)
    assert evaluator.extractor.describe()["trained_on"]["images"] == len(evaluator.load("train").images)


def test_a_longer_trained_checkpoint_scores_better(trained_run, registry, eval_cache):
    config = EvalConfig(metrics=["fid", "is"], n=1000)
    initial = evaluate_run(registry, trained_run, config, checkpoint="step_00000000", cache_dir=eval_cache)
    trained = evaluate_run(registry, trained_run, config, cache_dir=eval_cache)
    assert trained["checkpoint"]["step"] == 300 and initial["checkpoint"]["step"] == 0
    early, late = initial["scores"], trained["scores"]
    assert late["fid"] < 0.6 * early["fid"], (early, late)
    assert late["is"] > early["is"], (early, late)


def test_scoring_a_run_twice_gives_the_same_numbers_and_records_how(trained_run, registry, eval_cache):
    config = EvalConfig(metrics=["fid", "kid", "is"], n=500, seed=3)
    first = evaluate_run(registry, trained_run, config, cache_dir=eval_cache)
    cached = Path(first["real"]["features_cache"])
    written = cached.stat().st_mtime_ns
    second = evaluate_run(registry, trained_run, config, cache_dir=eval_cache)
    assert second["scores"] == first["scores"]
    assert cached.stat().st_mtime_ns == written, "the real features should come from the cache"
    recorded = json.loads((trained_run / "eval.json").read_text())["evaluations"]["domain"]
    assert recorded["scores"] == first["scores"] and set(recorded["scores"]) == {"fid", "kid", "kid_std", "is", "is_std"}
    assert recorded["gankit_version"] == __version__
    assert recorded["generated"] == {"count": 500, "seed": 3, "backend": "torch", "generator": "raw"}
    real = recorded["real"]
    assert (real["split"], real["count"], real["images_in_split"]) == ("train", 500, HALF)
    assert real["selection"] == "random subset drawn with seed 3" and len(real["sha256"]) == 64
    extractor = recorded["extractor"]
    assert extractor["name"] == "domain"
    assert extractor["weights_sha256"] == hashlib.sha256(Path(extractor["weights"]).read_bytes()).hexdigest()
    assert set(recorded["metrics"]) == {"fid", "kid", "is"}
    assert recorded["metrics"]["kid"]["library"].startswith("torch-fidelity")


def test_evaluate_command_prints_a_table_and_writes_eval_json(trained_run, eval_cache, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(eval_cache))
    code, output = cli("evaluate", trained_run, "-n", 400, "--checkpoint", "step_00000300")
    assert code == 0, output
    assert all(name in output for name in ("FID", "KID", "IS", "400 of 2,048 train images", "step 300"))
    assert "generated images: 0/400 generated images: 400/400" in output, "progress while extracting features"
    assert json.loads((trained_run / "eval.json").read_text())["evaluations"]["domain"]["generated"]["count"] == 400


def test_evaluate_command_errors_are_one_line(trained_run, tmp_path, monkeypatch, eval_cache):
    monkeypatch.setenv("GANKIT_CACHE", str(eval_cache))
    code, output = cli("evaluate", trained_run, "--metric", "fdi")
    assert code == 2 and "unknown metric 'fdi'; did you mean 'fid'?" in output
    code, output = cli("evaluate", trained_run, "--features", "inceptoin")
    assert code == 2 and "did you mean 'inception'?" in output
    code, output = cli("evaluate", trained_run, "--checkpoint", "step_00000007")
    assert code == 2 and "known: step_00000000, step_00000300" in output
    code, output = cli("evaluate", trained_run, "--features", f"domain:weights={tmp_path / 'nothing.pth'}")
    assert code == 2 and "feature extractor 'domain' has no parameter 'weights'; it takes steps" in output
    unborn = tmp_path / "unborn"
    unborn.mkdir()
    (unborn / "recipe.toml").write_text((trained_run / "recipe.toml").read_text())
    code, output = cli("evaluate", unborn)
    assert code == 2 and "no checkpoint yet" in output
    monkeypatch.setenv("GANKIT_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    code, output = cli("evaluate", trained_run, "--features", "inception")
    assert code == 2 and f"Inception weights {tmp_path / 'missing.pth'} not found" in output
    forged = tmp_path / "forged.pth"
    forged.write_bytes(b"not the weights")
    code, output = cli("evaluate", trained_run, "--features", f"inception:weights={forged}")
    assert code == 2 and "not that of the standard FID Inception weights" in output


def test_metric_parameters_on_the_command_line_change_the_scores(trained_run, eval_cache, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(eval_cache))
    recorded = {}
    for k in (1, 20):
        code, output = cli("evaluate", trained_run, "-n", 300, "--metric", f"precision:k={k},recall",
                           "--metric", "kid:subsets=5,subset_size=100")
        assert code == 0 and "PRECISION" in output and "RECALL" in output, output
        recorded[k] = json.loads((trained_run / "eval.json").read_text())["evaluations"]["domain"]
        assert recorded[k]["metrics"]["precision"]["k"] == k and recorded[k]["metrics"]["recall"]["k"] == 3
        assert recorded[k]["metrics"]["kid"]["subsets"] == 5
        assert recorded[k]["protocol"] == {"generated_images": 300, "real_images": 300, "split": "train",
                                           "extractor": "domain", "resize": "none: the data's own size",
                                           "weights_sha256": recorded[k]["extractor"]["weights_sha256"]}
    assert recorded[1]["scores"]["precision"] < recorded[20]["scores"]["precision"]
    assert recorded[1]["scores"]["recall"] == recorded[20]["scores"]["recall"]
    for option, message in (("precision:kk=5", "metric 'precision' has no parameter 'kk'; did you mean 'k'?"),
                            ("fid,kid:subsets=0", "metric 'kid': subsets: Input should be greater than or equal to 1"),
                            ("k=5", "--metric: 'k=5' names no metric")):
        code, output = cli("evaluate", trained_run, "--metric", option)
        assert code == 2 and message in output, output


def test_metrics_and_extractors_are_plugins():
    code, output = cli("list-plugins", "--kind", "metric")
    assert code == 0 and all(name in output for name in ("fid", "kid", "is"))
    code, output = cli("list-plugins", "--kind", "feature_extractor")
    assert code == 0 and "inception" in output and "domain" in output


def test_inception_weights_are_downloaded_into_the_cache_and_checked(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights.pth").write_bytes(b"pretend Inception weights")
    good = hashlib.sha256(b"pretend Inception weights").hexdigest()
    cache = tmp_path / "cache"
    with serve(served) as url:
        params = InceptionParams(urls=[url + "weights.pth"])
        with pytest.raises(DataError, match="checksum mismatch") as mismatch:
            locate_weights(params, cache, file_name="weights.pth", sha256="0" * 64)
        assert str(cache / "inception" / "weights.pth") in str(mismatch.value)
        assert not (cache / "inception" / "weights.pth").exists()
        path = locate_weights(params, cache, file_name="weights.pth", sha256=good)
    assert path == cache / "inception" / "weights.pth" and path.read_bytes() == b"pretend Inception weights"
    assert locate_weights(InceptionParams(download=False), cache, file_name="weights.pth", sha256=good) == path


def test_missing_inception_weights_offline_say_where_to_put_them(tmp_path):
    with serve(tmp_path) as url:  # serves nothing under that name: as good as offline
        params = InceptionParams(urls=[url + "absent.pth"])
        with pytest.raises(DataError) as missing:
            locate_weights(params, tmp_path / "cache")
    message = str(missing.value)
    assert "\n" not in message
    assert "put weights-inception-2015-12-05-6726825d.pth (sha256 6726825d0af5" in message
    assert f"at {tmp_path / 'cache' / 'inception' / 'weights-inception-2015-12-05-6726825d.pth'}" in message
    assert "--features domain" in message


def test_the_domain_extractor_needs_labelled_classes(registry, mnist_halves, eval_cache, tmp_path):
    data = {**mlp_recipe(mnist_halves), "dataset": {"use": "mnist", "root": str(mnist_halves), "download": False,
                                                      "classes": [3]}}
    recipe = build_recipe(data, tmp_path / "r.toml", registry)
    with pytest.raises(EvalError, match="has 1 labelled class"):
        Evaluator(resolve_plan(EvalConfig(n=100), registry), recipe, cache_dir=eval_cache)


def test_evaluation_during_training_logs_scores_and_keeps_the_best_checkpoint(registry, mnist_halves, eval_cache,
                                                                              tmp_path):
    data = {**mlp_recipe(mnist_halves), "train": {"steps": 120, "batch_size": 64, "log_every": 20, "checkpoint_every": 0}}
    plain = run(build_recipe(data, tmp_path / "plain.toml", registry), runs_root=tmp_path / "plain",
                context=DataContext(eval_cache)).run_dir
    data["eval"] = {"every": 40, "metrics": ["fid", "is"], "n": 300}
    run_dir = run(build_recipe(data, tmp_path / "eval.toml", registry), runs_root=tmp_path / "eval",
                  context=DataContext(eval_cache)).run_dir
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scored = [line for line in lines if "fid" in line]
    assert [line["step"] for line in scored] == [40, 80, 120]
    losses = lambda rows: [(r["step"], r["d_loss"], r["g_loss"]) for r in rows if "d_loss" in r]  # noqa: E731
    plain_lines = [json.loads(line) for line in (plain / "metrics.jsonl").read_text().splitlines()]
    assert losses(lines) == losses(plain_lines), "scoring during training must not change the training"

    best = json.loads((run_dir / "checkpoints" / "best" / "meta.json").read_text())
    assert best["scores"]["fid"] == min(line["fid"] for line in scored)
    recorded = json.loads((run_dir / "eval.json").read_text())["during_training"]
    assert recorded["best"]["step"] == best["step"] and recorded["last"]["step"] == 120
    assert recorded["extractor"]["name"] == "domain" and recorded["best_by"] == "fid, lower is better"
    assert (recorded["protocol"]["generated_images"], recorded["protocol"]["real_images"]) == (300, 300)
    again = evaluate_run(registry, run_dir, EvalConfig(metrics=["fid"], n=300), checkpoint="best", cache_dir=eval_cache)
    assert again["scores"]["fid"] == pytest.approx(best["scores"]["fid"], rel=1e-9)


def test_a_recipe_names_its_eval_metrics_correctly(registry, mnist_halves, tmp_path):
    from gankit.recipe import RecipeError

    data = {**mlp_recipe(mnist_halves), "eval": {"every": "1 epoch", "metrics": ["fdi"]}}
    with pytest.raises(RecipeError, match="eval: unknown metric 'fdi'; did you mean 'fid'?"):
        build_recipe(data, tmp_path / "r.toml", registry)
    data["eval"] = {"every": "1 epoch", "metrics": ["fid"], "n": 1}
    with pytest.raises(RecipeError, match=r"eval.n: Input should be greater than or equal to 2"):
        build_recipe(data, tmp_path / "r.toml", registry)
    data["eval"] = {"every": "2 epochs", "metrics": ["kid", "fid"]}
    recipe = build_recipe(data, tmp_path / "r.toml", registry)
    assert recipe.as_dict()["eval"]["every"] == "2 epochs" and list(recipe.eval.metrics) == ["kid", "fid"]


@pytest.fixture(scope="module")
def stand_in_inception(tmp_path_factory) -> Path:
    """A weights file in the layout of the FID Inception weights, with random values: the
    real file is a 95 MB download, and these tests only need the shapes."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception_v3
    from unittest import mock

    with mock.patch.object(inception_v3, "load_state_dict_from_url", lambda *args, **kwargs: None), \
            mock.patch.object(inception_v3.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        network = inception_v3.FeatureExtractorInceptionV3("stand-in", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "stand-in.pth"
    torch.save(network.state_dict(), path)
    return path


def test_evaluate_with_the_inception_extractor(trained_run, stand_in_inception, eval_cache, monkeypatch):
    from gankit_plugins.features import inception

    digest = hashlib.sha256(stand_in_inception.read_bytes()).hexdigest()
    monkeypatch.setattr(inception, "SHA256", digest)
    monkeypatch.setenv("GANKIT_CACHE", str(eval_cache))
    code, output = cli("evaluate", trained_run, "--features", f"inception:weights={stand_in_inception}",
                       "--metric", "fid,is", "-n", 8)
    assert code == 0, output
    assert "scores with inception features" in output and f"weights sha256 {digest}" in output
    recorded = json.loads((trained_run / "eval.json").read_text())["evaluations"]
    assert recorded["inception"]["extractor"]["features"] == "pool3, 2048 dims"
    assert recorded["inception"]["real"]["count"] == 8


def test_a_third_party_metric_is_a_plugin_like_the_bundled_ones(mnist_halves, eval_cache, tmp_path):
    from gankit import hookimpl

    class Brightness:
        uses_real, higher_is_better = True, False

        def __init__(self, params):
            pass

        def describe(self):
            return {"what": "difference of the mean logits"}

        def compute(self, fake, real, seed):
            return {"brightness": float(abs(fake.logits.mean() - real.logits.mean()))}

    class Plugin:
        @hookimpl
        def register_metrics(self, register):
            register("brightness", Brightness, description="a test metric")

    registry = load_registry([("brightness-plugin", Plugin(), "test")])
    recipe = build_recipe(mlp_recipe(mnist_halves), tmp_path / "r.toml", registry)
    plan = resolve_plan(EvalConfig(metrics=["brightness", "fid"], n=200), registry)
    evaluator = Evaluator(plan, recipe, cache_dir=eval_cache)
    scores = evaluator.score(evaluator.load("test").images[:200])
    assert set(scores) == {"brightness", "fid"} and scores["brightness"] >= 0
    assert evaluator.describe()["metrics"]["brightness"] == {"what": "difference of the mean logits"}
