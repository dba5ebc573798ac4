"""``gankit export``: the generator as ONNX (from both backends), TorchScript and SavedModel,
each giving ``generate``'s numbers; export.json; the one-line refusals; and the web page,
downloaded parts and all, run in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import tomli_w

from browser import Browser, find_chromium
from conftest import cli, recipe_dict
from gankit.data import default_cache_dir
from gankit.noise import sample_noise
from gankit.plugins import load_registry
from gankit.runner import load_generator
from gankit.web_export import VERSION, tarball_name
from httpserver import serve

pytestmark = pytest.mark.skipif(find_spec("onnxruntime") is None, reason="needs onnxruntime (pip install 'gankit[onnx]')")

TOLERANCE = 1e-4
CONDITIONAL_DCGAN = {"use": "dcgan", "conditional": True, "g_condition": "batchnorm", "d_condition": "projection",
                     "init": "glorot_uniform",  # images far from 0 after a few steps, so that 1e-4 says something
                     "g_start_channels": 16, "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
                     "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
            for name in ("torch", "tensorflow")]
ONNXRUNTIME_WEB = Path(os.environ.get("GANKIT_ONNXRUNTIME_WEB") or default_cache_dir() / "onnxruntime-web" / tarball_name())
"""The real tarball, looked for before each test gets its own empty cache (.ci/run puts it there)."""


@pytest.fixture(scope="module")
def trained(tiny_mnist, tmp_path_factory):
    """``trained(backend, architecture=None, steps=4, **train)``: a finished tiny run (an EMA
    generator, one thread), made once per module for each set of arguments."""
    made: dict = {}

    def train(backend: str, architecture: dict | None = None, steps: int = 4, **train) -> Path:
        key = (backend, json.dumps(architecture, sort_keys=True), steps, json.dumps(train, sort_keys=True))
        if key not in made:
            root = tmp_path_factory.mktemp(f"export-{backend}")
            extra = {"architecture": architecture} if architecture else {}
            # TensorFlow keeps the thread count it started with: its tests all use its default.
            threads = {"threads": 1} if backend == "torch" else {}
            recipe = recipe_dict(tiny_mnist, backend={"use": backend, "device": "cpu", **threads},
                                 train={"steps": steps, "batch_size": 16, "ema": 0.9, "checkpoint_every": steps,
                                        "log_every": steps, **train}, export=[], **extra)
            path = root / "recipe.toml"
            path.write_text(tomli_w.dumps(recipe))
            result = cli("run", path, "--runs-dir", root / "runs")
            assert result.exit_code == 0, result.output
            made[key] = next((root / "runs").iterdir())
        return made[key]

    return train


def export(run_dir: Path, format: str, *args) -> Path:
    result = cli("export", run_dir, "--format", format, *args)
    assert result.exit_code == 0, result.output
    return run_dir / "export" / format if "-o" not in args else Path(args[args.index("-o") + 1])


def generated(run_dir: Path, noise_seed: int, count: int, labels, monkeypatch, raw: bool = False) -> np.ndarray:
    """``generate``'s float output, (N, H, W, C) in [-1, 1]: the very path ``gankit sample``
    takes, stopped before its uint8 conversion."""
    import gankit.backend

    trainer = load_generator(load_registry(), run_dir)[1]
    with monkeypatch.context() as patch:
        patch.setattr(gankit.backend, "to_uint8", lambda images: np.asarray(images, np.float32))
        by_class = {"labels": labels} if labels is not None else {}
        return trainer.generate(count, noise_seed, raw=raw, **by_class)


def run_onnx(path: Path, noise: np.ndarray, labels) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"noise": noise, **({"labels": labels} if labels is not None else {})}
    assert [i.name for i in session.get_inputs()] == list(feeds) and [o.name for o in session.get_outputs()] == ["images"]
    return session.run(["images"], feeds)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_onnx_export_gives_what_generate_gives(backend, trained, monkeypatch, capsys):
    run_dir = trained(backend, CONDITIONAL_DCGAN)
    for raw, args in ((False, ()), (True, ("--raw", "-o", run_dir / "raw-onnx"))):
        model = export(run_dir, "onnx", *args) / "generator.onnx"
        for count in (1, 7):  # any batch size
            labels = (np.arange(count) * 3 % 10).astype(np.int64)
            reference = generated(run_dir, 5, count, labels, monkeypatch, raw=raw)
            assert np.abs(reference).max() > 0.2, "the generator draws more than a blank"
            difference = np.abs(run_onnx(model, sample_noise(5, count, 100), labels) - reference).max()
            with capsys.disabled():
                print(f"\n{backend} onnx{' --raw' if raw else ''}, batch {count}: max |onnx - generate| = {difference:.2e}")
            assert difference < TOLERANCE


def test_an_unconditional_export_takes_noise_alone(trained, monkeypatch):
    run_dir = trained("torch")
    model = export(run_dir, "onnx") / "generator.onnx"
    images = run_onnx(model, sample_noise(2, 6, 100), None)
    assert images.shape == (6, 28, 28, 1)
    assert np.abs(images - generated(run_dir, 2, 6, None, monkeypatch)).max() < TOLERANCE


def test_export_json_says_how_to_call_the_model_and_where_it_came_from(trained):
    run_dir = trained("torch", CONDITIONAL_DCGAN)
    described = json.loads((export(run_dir, "onnx") / "export.json").read_text())
    assert described["format"] == "onnx" and described["file"] == "generator.onnx"
    assert described["inputs"] == {"noise": {"dtype": "float32", "shape": ["N", 100], "distribution": "standard normal"},
                                   "labels": {"dtype": "int64", "shape": ["N"], "range": [0, 9]}}
    images = described["outputs"]["images"]
    assert images["shape"] == ["N", 28, 28, 1] and images["layout"] == "NHWC" and images["range"] == [-1.0, 1.0]
    assert described["latent_dim"] == 100 and described["classes"] == 10
    assert described["class_names"] == [str(digit) for digit in range(10)]
    assert described["run"] == str(run_dir.resolve()) and described["step"] == 4
    assert described["checkpoint"] == str((run_dir / "checkpoints" / "step_00000004").resolve())
    assert described["backend"] == "torch" and described["generator"] == "ema"
    assert described["exporter"]["opset"] == 18


def in_a_python_without_gankit(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh Python that has the installed packages (torch, TensorFlow)
    but no gankit: no site processing (so no editable install's finder), no repository on
    the path, no PYTHON* variables. Returns what it printed."""
    paths = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    prelude = (f"import sys; sys.path += {paths!r}\nimport importlib.util\n"
               "assert importlib.util.find_spec('gankit') is None and importlib.util.find_spec('gankit_plugins') is None\n")
    environment = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], cwd=cwd, env=environment,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(find_spec("torch") is None, reason="needs torch")
def test_the_torchscript_export_loads_in_a_python_without_gankit(trained, tmp_path, monkeypatch):
    run_dir = trained("torch", CONDITIONAL_DCGAN)
    model = export(run_dir, "torchscript") / "generator.pt"
    labels = np.arange(6, dtype=np.int64)
    np.savez(tmp_path / "inputs.npz", noise=sample_noise(9, 6, 100), labels=labels)
    in_a_python_without_gankit(
        "import numpy as np, torch\n"
        "inputs = np.load('inputs.npz')\n"
        f"model = torch.jit.load({str(model)!r})\n"
        "images = model(torch.from_numpy(inputs['noise']), torch.from_numpy(inputs['labels']))\n"
        "np.save('images.npy', images.detach().numpy())\n", tmp_path)
    assert np.abs(np.load(tmp_path / "images.npy") - generated(run_dir, 9, 6, labels, monkeypatch)).max() < TOLERANCE


@pytest.mark.skipif(find_spec("tensorflow") is None, reason="needs tensorflow")
def test_the_savedmodel_export_loads_in_a_python_without_gankit(trained, tmp_path, monkeypatch):
    run_dir = trained("tensorflow", CONDITIONAL_DCGAN)
    model = export(run_dir, "savedmodel") / "generator"
    labels = np.arange(6, dtype=np.int64)
    np.savez(tmp_path / "inputs.npz", noise=sample_noise(9, 6, 100), labels=labels)
    in_a_python_without_gankit(
        "import numpy as np, tensorflow as tf\n"
        "inputs = np.load('inputs.npz')\n"
        f"serve = tf.saved_model.load({str(model)!r}).signatures['serving_default']\n"
        "images = serve(noise=tf.constant(inputs['noise']), labels=tf.constant(inputs['labels']))['images']\n"
        "np.save('images.npy', images.numpy())\n", tmp_path)
    assert np.abs(np.load(tmp_path / "images.npy") - generated(run_dir, 9, 6, labels, monkeypatch)).max() < TOLERANCE


def refused(*args) -> str:
    """The one line ``gankit export ARGS`` is refused with (exit code 2, no traceback)."""
    result = cli("export", *args)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    return result.output.strip()


def test_a_format_whose_exporter_is_missing_names_the_pip_install(trained, monkeypatch):
    import gankit.export

    run_dir = trained("torch")
    monkeypatch.setattr(gankit.export, "module_installed", lambda module: module != "onnxscript")
    line = refused(run_dir, "--format", "onnx")
    assert "--format onnx needs 'onnxscript', not installed; pip install 'gankit[onnx]'" in line
    assert "pip install 'gankit[onnx]'" in refused(run_dir, "--format", "web")


def test_a_format_the_backend_does_not_offer_says_which_it_offers(trained):
    line = refused(trained("torch"), "--format", "savedmodel")
    assert "the torch backend of" in line and "cannot export it; it offers onnx, torchscript, web" in line


def test_a_run_without_a_checkpoint_is_refused(trained, tmp_path):
    run_dir = tmp_path / "runs" / "00000-tiny"
    shutil.copytree(trained("torch"), run_dir, ignore=shutil.ignore_patterns("export"))
    shutil.rmtree(run_dir / "checkpoints")
    assert "no checkpoint yet; train the run first" in refused(run_dir, "--format", "onnx")
    assert not (run_dir / "export").exists()


def test_a_folder_of_other_files_is_never_replaced(trained, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    assert "that folder holds other files" in refused(trained("torch"), "--format", "onnx", "-o", tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_a_wrong_onnxruntime_web_tarball_is_refused(trained, tmp_path):
    run_dir = trained("torch")
    assert "no such file" in refused(run_dir, "--format", "web", "--onnxruntime-web", tmp_path / "missing.tgz")
    (tmp_path / "other.tgz").write_bytes(b"not onnxruntime-web")
    line = refused(run_dir, "--format", "web", "--onnxruntime-web", tmp_path / "other.tgz")
    assert f"not the onnxruntime-web {VERSION} tarball" in line and f"npm pack onnxruntime-web@{VERSION}" in line


def test_a_damaged_download_of_onnxruntime_web_is_not_kept(trained, tmp_path, monkeypatch, isolated_cache):
    mirror = tmp_path / "mirror" / "onnxruntime-web" / "-"
    mirror.mkdir(parents=True)
    (mirror / tarball_name()).write_bytes(b"tampered")
    with serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("GANKIT_NPM_REGISTRY", url)
        line = refused(trained("torch"), "--format", "web")
    assert "checksum mismatch" in line and "nothing was kept" in line
    assert not (isolated_cache / "onnxruntime-web" / tarball_name()).exists()


needs_onnxruntime_web = pytest.mark.skipif(
    not ONNXRUNTIME_WEB.is_file(), reason=f"no onnxruntime-web tarball at {ONNXRUNTIME_WEB} "
    f"(npm pack onnxruntime-web@{VERSION} there, or set GANKIT_ONNXRUNTIME_WEB)")


@needs_onnxruntime_web
def test_onnxruntime_web_is_downloaded_verified_and_cached(trained, tmp_path, monkeypatch, isolated_cache):
    mirror = tmp_path / "mirror" / "onnxruntime-web" / "-"
    mirror.mkdir(parents=True)
    shutil.copy(ONNXRUNTIME_WEB, mirror / tarball_name())
    with serve(tmp_path / "mirror") as url:
        monkeypatch.setenv("GANKIT_NPM_REGISTRY", url)
        folder = export(trained("torch"), "web")
    assert (isolated_cache / "onnxruntime-web" / tarball_name()).read_bytes() == ONNXRUNTIME_WEB.read_bytes()
    assert sorted(path.name for path in (folder / "onnxruntime-web").iterdir()) == [
        "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "ort.wasm.min.js", "package.json"]
    described = json.loads((folder / "export.json").read_text())
    assert described["format"] == "web" and described["onnxruntime_web"]["version"] == VERSION
    monkeypatch.setenv("GANKIT_NPM_REGISTRY", "http://127.0.0.1:9")  # nothing listens: the cached copy serves
    export(trained("torch"), "web", "-o", tmp_path / "again")


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install chromium)")
@needs_onnxruntime_web
def test_the_web_page_draws_samples_and_walks_between_latents_in_a_browser(trained, tmp_path):
    run_dir = trained("torch", {"use": "mlp", "conditional": True, "g_condition": "onehot", "g_hidden": [128],
                                "d_hidden": [128], "d_dropout": 0.0}, steps=300, batch_size=32, lr_g=1e-3, lr_d=1e-3)
    folder = export(run_dir, "web", "--onnxruntime-web", ONNXRUNTIME_WEB)
    browser = Browser(find_chromium(), tmp_path / "profile")
    picture = "document.getElementById('grid').toDataURL()"
    try:
        with serve(folder) as url:  # a page from file: cannot load WebAssembly modules: the README says to serve it
            browser.open(url + "index.html")
            browser.evaluate("window.gankitPage.ready")
            assert browser.evaluate("document.body.dataset.state") == "ready", browser.evaluate(
                "document.getElementById('status').textContent")
            width, height = browser.evaluate("[document.getElementById('grid').width, document.getElementById('grid').height]")
            assert (width, height) == (8 * 28 * 2, 10 * 28 * 2), "a grid of 8 columns, one row per class"
            start = browser.evaluate(picture)
            browser.click("#walk")  # a click on the slider's middle moves it there
            browser.evaluate("window.gankitPage.rendering")
            assert browser.evaluate("document.getElementById('walk').value") == "500"
            halfway = browser.evaluate(picture)
            assert halfway != start, "moving the slider changes the picture"
            browser.evaluate("(() => { const s = document.getElementById('class'); s.value = '3'; "
                             "s.dispatchEvent(new Event('change')); })()")
            browser.evaluate("window.gankitPage.rendering")
            assert browser.evaluate(picture) != halfway, "picking a class changes the picture"
            browser.click("#draw")
            browser.evaluate("window.gankitPage.rendering")
            assert browser.evaluate("document.body.dataset.state") == "ready"
            screenshot = tmp_path / "export-web.png"
            browser.screenshot(screenshot)
            assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            if os.environ.get("GANKIT_TEST_ARTIFACTS"):
                shutil.copy(screenshot, Path(os.environ["GANKIT_TEST_ARTIFACTS"]) / "export-web.png")
    finally:
        browser.close()
