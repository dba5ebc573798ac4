"""``gankit project``: the latent whose generated image matches a given one, found through
the frozen generator on both backends, and its bad inputs as one line each."""

from __future__ import annotations

import shutil
from importlib.util import find_spec

import imageio.v3 as iio
import numpy as np
import pytest
import tomli_w

from conftest import cli, one_line, recipe_dict, runs_made_on_first_use

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
            for name in ("torch", "tensorflow")]
FAST_FEATURES = "domain:steps=50"
RECOVERED = 2.0
"""The largest mean absolute error (0-255 levels) of a generated image projected back."""


@pytest.fixture(scope="module")
def trained(tiny_mnist, tmp_path_factory):
    """One tiny run per backend, trained 20 steps (made on first use)."""
    return runs_made_on_first_use(tiny_mnist, tmp_path_factory, "project", train={"steps": 20, "checkpoint_every": 0},
                                  export=[])


def _seed_image(run_dir, seed, folder):
    """The image the run's generator draws for ``seed``, as a PNG."""
    result = cli("sample", run_dir, "--seeds", str(seed), "-o", folder / "drawn.npz")
    assert result.exit_code == 0, result.output
    with np.load(folder / "drawn.npz") as drawn:
        image = drawn["images"][0]
    iio.imwrite(folder / "target.png", image[..., 0])
    return image


@pytest.mark.parametrize("backend", BACKENDS)
def test_projecting_a_generated_image_recovers_it(trained, backend, tmp_path):
    run_dir = trained(backend)
    target = _seed_image(run_dir, 7, tmp_path)
    result = cli("project", run_dir, tmp_path / "target.png", "--steps", "200", "--features", FAST_FEATURES,
                 "-o", tmp_path / "projected.npz")
    assert result.exit_code == 0, result.output
    assert "mean absolute error" in result.output
    with np.load(tmp_path / "projected.npz") as saved:
        latents, error, image = saved["latents"], float(saved["mean_abs_error"]), saved["images"][0]
        np.testing.assert_array_equal(saved["target"][0], target)
    start = float(one_line(result.output).split("(from ")[1].split(")")[0])
    assert error < RECOVERED < start  # the starting latents' images are far from it
    assert np.abs(image.astype(int) - target).mean() == pytest.approx(error)
    assert latents.shape == (1, 100) and "labels" not in np.load(tmp_path / "projected.npz").files
    reconstruction = iio.imread(tmp_path / "projected.png")
    np.testing.assert_array_equal(reconstruction, image[..., 0])
    frames = iio.imread(tmp_path / "projected.gif", index=None)
    assert len(frames) > 10 and not np.array_equal(frames[0], frames[-1])
    again = cli("sample", run_dir, "--latent", tmp_path / "projected.npz", "-o", tmp_path / "again.npz")
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(np.load(tmp_path / "again.npz")["images"][0], image)


@pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None, reason="needs torch and tensorflow")
def test_the_domain_features_are_differentiable_on_both_backends_and_match_extract(trained, tiny_mnist):
    import tensorflow as tf
    import torch

    from conftest import real_mnist
    from gankit.eval_config import EvalConfig, parse_features_option
    from gankit.plugins import load_registry
    from gankit.recipe import build_recipe, read_toml
    from gankit.scoring import Evaluator, resolve_plan

    run_dir = trained("torch")
    registry = load_registry()
    recipe = build_recipe(read_toml(run_dir / "recipe.toml"), run_dir / "recipe.toml", registry)
    extractor = Evaluator(resolve_plan(EvalConfig(features=parse_features_option(FAST_FEATURES)), registry), recipe,
                          info=lambda _: None).extractor
    images = np.array(real_mnist(8)[0][..., None])
    expected = extractor.extract(images).features
    scaled = images.astype(np.float32) / 127.5 - 1.0
    pixels = torch.from_numpy(scaled).permute(0, 3, 1, 2).requires_grad_(True)
    on_torch = extractor.differentiable("torch")(pixels)
    on_torch.sum().backward()
    assert pixels.grad is not None and float(pixels.grad.abs().sum()) > 0
    variable = tf.Variable(scaled)
    with tf.GradientTape() as tape:
        on_tensorflow = extractor.differentiable("tensorflow")(variable)
    assert float(tf.reduce_sum(tf.abs(tape.gradient(on_tensorflow, variable)))) > 0
    np.testing.assert_allclose(on_torch.detach().numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(on_tensorflow.numpy(), expected, atol=1e-4)
    assert extractor.differentiable("jax") is None


def test_an_image_of_the_wrong_size_is_one_line_and_resize_fits_it(trained, tmp_path):
    run_dir = trained("torch")
    iio.imwrite(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    result = cli("project", run_dir, tmp_path / "big.png", "--steps", "2", "--feature-weight", "0",
                 "-o", tmp_path / "p.npz")
    assert result.exit_code != 0
    assert ("big.png is a 30x40 RGB image and this run's generator makes 28x28 greyscale ones; pass --resize to "
            "resize and convert it") in one_line(result.output)
    assert not (tmp_path / "p.npz").exists()
    resized = cli("project", run_dir, tmp_path / "big.png", "--steps", "2", "--feature-weight", "0", "--resize",
                  "-o", tmp_path / "p.npz")
    assert resized.exit_code == 0, resized.output
    assert np.load(tmp_path / "p.npz")["target"].shape == (1, 28, 28, 1)


@pytest.mark.parametrize(("name", "content", "says"), [
    ("broken.png", b"not a picture", "broken.png: not a readable image"),
    ("missing.png", None, "missing.png: no such image"),
])
def test_an_unreadable_image_is_one_line(trained, tmp_path, name, content, says):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    result = cli("project", trained("torch"), tmp_path / name, "-o", tmp_path / "p.npz")
    assert result.exit_code != 0 and says in one_line(result.output)
    assert len(result.output.strip().splitlines()) == 1


def test_bad_options_are_one_line(trained, tmp_path):
    run_dir = trained("torch")
    _seed_image(run_dir, 1, tmp_path)
    for options, says in ((["--class", "3"], "--class: "), (["-o", tmp_path / "p.png"], "use an .npz file name")):
        result = cli("project", run_dir, tmp_path / "target.png", *options)
        assert result.exit_code != 0 and says in one_line(result.output)


def test_a_run_without_a_checkpoint_is_one_line(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained("torch"), run_dir)
    _seed_image(run_dir, 1, tmp_path)
    for path in sorted((run_dir / "checkpoints").iterdir()):
        shutil.rmtree(path)
    result = cli("project", run_dir, tmp_path / "target.png", "-o", tmp_path / "p.npz")
    assert result.exit_code != 0 and "no checkpoint yet; train the run first" in one_line(result.output)
    assert not (tmp_path / "p.npz").exists()


@pytest.fixture(scope="module")
def conditional_run(tiny_mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("project-conditional")
    recipe = root / "tiny.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(
        tiny_mnist, train={"steps": 20, "checkpoint_every": 0}, export=[],
        architecture={"use": "mlp", "g_hidden": [32], "d_hidden": [32], "conditional": True})))
    result = cli("run", recipe, "--runs-dir", root / "runs")
    assert result.exit_code == 0, result.output
    return root / "runs" / "00000-tiny"


def test_a_conditional_projection_tries_every_class_or_the_one_given(conditional_run, tmp_path):
    result = cli("sample", conditional_run, "--seeds", "7", "--class", "3", "-o", tmp_path / "drawn.npz")
    assert result.exit_code == 0, result.output
    target = np.load(tmp_path / "drawn.npz")["images"][0]
    iio.imwrite(tmp_path / "target.png", target[..., 0])
    for options, name in (([], "any"), (["--class", "3"], "three")):
        output = tmp_path / f"{name}.npz"
        result = cli("project", conditional_run, tmp_path / "target.png", "--steps", "200", "--feature-weight", "0",
                     *options, "-o", output)
        assert result.exit_code == 0, result.output
        with np.load(output) as saved:
            assert saved["labels"].shape == (1,) and float(saved["mean_abs_error"]) < RECOVERED
            label, image = int(saved["labels"][0]), saved["images"][0]
        again = cli("sample", conditional_run, "--latent", output, "-o", tmp_path / "again.npz")
        assert again.exit_code == 0, again.output
        np.testing.assert_array_equal(np.load(tmp_path / "again.npz")["images"][0], image)
    assert label == 3 and "class 3: mean absolute error" in one_line(result.output)


def test_features_that_are_not_differentiable_leave_the_pixel_loss(trained, tmp_path, scorer_installed):
    run_dir = trained("torch")
    _seed_image(run_dir, 2, tmp_path)
    result = cli("project", run_dir, tmp_path / "target.png", "--steps", "5", "--features", "pixels",
                 "-o", tmp_path / "p.npz")
    assert result.exit_code == 0, result.output
    assert "the 'pixels' features are not differentiable on the torch backend: projecting with the pixel loss alone" \
        in one_line(result.output)
    refused = cli("project", run_dir, tmp_path / "target.png", "--features", "pixels", "--feature-weight", "0.5",
                  "-o", tmp_path / "q.npz")
    assert refused.exit_code != 0
    assert ("--feature-weight 0.5: the 'pixels' features are not differentiable on the torch backend; use "
            "--feature-weight 0") in one_line(refused.output)
    assert not (tmp_path / "q.npz").exists()
