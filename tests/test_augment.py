"""Differentiable augmentation, written once (gankit.augment): every operation gives the same
images on torch and TensorFlow for the same draw, is differentiable in its input, and is the
identity at p = 0; adaptive p follows ADA's rule and survives a resume; bad settings are
one-line errors before anything runs."""

from __future__ import annotations

import json
from importlib.util import find_spec

import numpy as np
import pytest
from click.testing import CliRunner

from gankit.augment import AdaptiveP, Augmentation, augment
from gankit.cli import main
from gankit.train_config import POLICIES, AugmentConfig

BOTH = pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None,
                          reason="needs both torch and tensorflow")
SHAPE = (6, 5, 3)
"""Images (H, W, C): not square, so that a mix-up of height and width shows; in colour, so
that saturation has something to do."""
OPERATIONS = [(policy, op) for policy, ops in POLICIES.items() for op in ops]
RNG = np.random.default_rng(1)


def draw(policy: str, ops, p: float, count: int = 4, step: int = 7, shape=SHAPE) -> dict[str, np.ndarray]:
    """One call's arrays of a p-probability transform of ``count`` images of ``shape``."""
    config = AugmentConfig(policy=policy, ops=list(ops), p=p)
    return {name: array[0] for name, array in Augmentation(config, 0, shape, count, 1).draws(step, p).items()}


def on_torch(images: np.ndarray, arrays: dict):
    """``augment`` on torch, NCHW as the torch trainer holds images; back as NHWC numpy."""
    import torch

    from gankit_plugins.torch_backend.ops import TensorOps

    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    out = augment(TensorOps, x, {k: torch.from_numpy(v) for k, v in arrays.items()}, int(np.prod(images.shape[1:])))
    return out.permute(0, 2, 3, 1).numpy()


def on_tensorflow(images: np.ndarray, arrays: dict):
    from gankit_plugins.tensorflow_backend.ops import TensorOps, tf

    out = augment(TensorOps, tf.constant(images), {k: tf.constant(v) for k, v in arrays.items()}, int(np.prod(SHAPE)))
    return out.numpy()


def images(count: int = 4, dtype=np.float32, shape=SHAPE) -> np.ndarray:
    return RNG.uniform(-1, 1, (count, *shape)).astype(dtype)


@BOTH
@pytest.mark.parametrize("policy, op", OPERATIONS)
def test_each_operation_gives_the_same_images_on_both_backends(policy, op):
    x, arrays = images(), draw(policy, [op], 1.0)
    changed = on_torch(x, arrays)
    np.testing.assert_allclose(on_tensorflow(x, arrays), changed, rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed, x), f"{op} at p = 1 left every image as it was"


@BOTH
@pytest.mark.parametrize("policy", POLICIES)
def test_p_zero_is_the_identity_on_both_backends(policy):
    x, arrays = images(), draw(policy, POLICIES[policy], 0.0)
    np.testing.assert_array_equal(on_torch(x, arrays), x)
    np.testing.assert_array_equal(on_tensorflow(x, arrays), x)


def torch_gradient(x: np.ndarray, arrays: dict, weights: np.ndarray):
    """(score, d score / dx) of score(x) = sum(augment(x) * weights) on torch, NHWC in and out."""
    import torch

    from gankit_plugins.torch_backend.ops import TensorOps

    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    image = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    score = (augment(TensorOps, image, tensors, int(np.prod(SHAPE))) * torch.from_numpy(weights).permute(0, 3, 1, 2)).sum()
    (gradient,) = torch.autograd.grad(score, image)
    return float(score.detach()), gradient.permute(0, 2, 3, 1).numpy()


def tensorflow_gradient(x: np.ndarray, arrays: dict, weights: np.ndarray):
    from gankit_plugins.tensorflow_backend.ops import TensorOps, tf

    image = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(image)
        score = tf.reduce_sum(augment(TensorOps, image, {k: tf.constant(v) for k, v in arrays.items()},
                                      int(np.prod(SHAPE))) * weights)
    return float(score), tape.gradient(score, image).numpy()


@pytest.mark.parametrize("backend", [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=name))
                                     for name in ("torch", "tensorflow")])
@pytest.mark.parametrize("policy, op", OPERATIONS)
def test_each_operation_is_differentiable_in_its_input(policy, op, backend):
    """d sum(augment(x) * r) / dx from the backend's autodiff equals a central finite
    difference (in float64, where a difference is exact enough to compare)."""
    gradient_of = torch_gradient if backend == "torch" else tensorflow_gradient
    arrays = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in draw(policy, [op], 1.0).items()}
    weights, x = RNG.normal(size=(4, *SHAPE)), images(dtype=np.float64)
    _, gradient = gradient_of(x, arrays, weights)
    assert np.abs(gradient).sum() > 0
    for flat in RNG.choice(x.size, 12, replace=False):
        step = np.zeros(x.size)
        step[flat] = 1e-6
        step = step.reshape(x.shape)
        numeric = (gradient_of(x + step, arrays, weights)[0] - gradient_of(x - step, arrays, weights)[0]) / 2e-6
        assert numeric == pytest.approx(gradient.flat[flat], rel=1e-5, abs=1e-7)


def test_integer_moves_copy_pixels_exactly():
    """On square images ADA's flips, 90-degree rotations and integer translations move whole
    pixels (reflected at the border), and DiffAugment's translation pads with zeros."""
    square = (6, 6, 3)
    x = images(8, shape=square)
    moved = on_torch_only(x, draw("ada", ["xflip", "rotate90", "xint"], 1.0, 8, shape=square))
    for before, after in zip(x, moved):
        assert set(np.unique(after)) <= set(np.unique(before))
    assert not np.array_equal(moved, x)
    shifted = on_torch_only(x, draw("diffaugment", ["translation"], 1.0, 8, shape=square))
    assert set(np.unique(shifted)) <= set(np.unique(x)) | {0.0} and 0.0 in shifted


def on_torch_only(x, arrays):
    pytest.importorskip("torch")
    return on_torch(x, arrays)


def test_diffaugment_has_the_papers_parameters():
    """Translation by at most 1/8 of each side, cutout of half each side, colour factors in
    the paper's ranges."""
    arrays = Augmentation(AugmentConfig(policy="diffaugment"), 0, (32, 32, 3), 512, 1).draws(0, 1.0)
    assert -0.5 <= arrays["brightness"].min() and arrays["brightness"].max() <= 0.5
    assert 0 <= arrays["saturation"].min() and arrays["saturation"].max() <= 2
    assert 0.5 <= arrays["contrast_about_mean"].min() and arrays["contrast_about_mean"].max() <= 1.5
    cut = (arrays["mask"] == 0).reshape(-1, 32, 32)
    assert cut.any(axis=2).sum(axis=1).max() == 16 and cut.any(axis=1).sum(axis=1).max() == 16
    index = arrays["index"].reshape(-1, 32, 32)
    rows = np.where(index == 32 * 32, -1, index // 32) - np.arange(32)[None, :, None]
    assert np.abs(rows[index != 32 * 32]).max() == 4


def test_the_same_step_draws_the_same_transforms_and_another_step_others():
    augmentation = Augmentation(AugmentConfig(policy="ada", p=0.5), 3, SHAPE, 8, 2)
    first, again, other = augmentation.draws(5, 0.5), augmentation.draws(5, 0.5), augmentation.draws(6, 0.5)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["index"], other["index"])
    assert first["index"].shape[0] == 4  # real and fake batch of each of the two D updates


def test_each_image_is_transformed_with_probability_p():
    arrays = Augmentation(AugmentConfig(policy="ada", ops=["brightness"], p=0.3), 0, SHAPE, 4000, 1).draws(0, 0.3)
    assert (arrays["brightness"] != 0).mean() == pytest.approx(0.3, abs=0.03)


def test_adaptive_p_follows_adas_rule():
    """Scripted D outputs: r_t above the target raises p by batch * interval / (kimg * 1000)
    every ``interval`` steps, below it lowers p, and p stays in [0, 1]."""
    config = AugmentConfig(policy="ada", target=0.6, ada_kimg=1, interval=2)
    controller = AdaptiveP(config, batch_size=100)  # a step of 100 * 2 / 1000 = 0.2
    seen = []
    for sign_mean in [1.0, 0.9, 0.8, 0.6, 0.7, 0.7, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]:
        controller.observe(sign_mean)
        seen.append(round(controller.p, 10))
    assert seen == [0, 0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.4, 0.4, 0.2, 0.2, 0.0,
                    0.0, 0.2, 0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0, 1.0, 1.0]
    restored = AdaptiveP(config, 100, {"p": 0.4, "sign_sum": 0.9, "observed": 1})
    restored.observe(0.2)  # r_t = 0.55 < 0.6
    assert restored.p == pytest.approx(0.2)


ADAPTIVE = {"augment": {"policy": "ada", "ada_kimg": 0.15, "interval": 3, "target": 0.05}, "steps": 10, "checkpoint_every": 4,
            "log_every": 1, "batch_size": 16}


@pytest.mark.parametrize("backend", [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=name))
                                     for name in ("torch", "tensorflow")])
def test_an_adaptive_run_resumed_ends_bit_identical_p_included(backend, write_recipe, tmp_path):
    """A run stopped at step 5 (its last checkpoint at 4, midway through an interval of 3)
    and resumed logs every step as the uninterrupted run does: losses, r_t and p."""
    recipe = write_recipe(train=ADAPTIVE, backend={"use": backend, "device": "cpu"})
    runs = tmp_path / "runs"
    invoke = lambda *args: CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)  # noqa: E731
    assert invoke("run", recipe, "--runs-dir", runs).exit_code == 0
    assert invoke("run", recipe, "--runs-dir", runs, "--set", "train.steps=5").exit_code == 0
    straight, stopped = sorted(runs.iterdir())
    meta = json.loads((stopped / "checkpoints" / "step_00000004" / "meta.json").read_text())
    assert meta["augment"]["observed"] == 1
    result = invoke("run", "--resume", stopped, "--set", "train.steps=10")
    assert result.exit_code == 0, result.output

    def logged(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "images_per_sec"} for row in rows]

    assert logged(stopped) == logged(straight)
    assert len({row["augment_p"] for row in logged(straight)}) > 2, "p never moved"


@pytest.mark.parametrize("augment, expected", [
    ({"policy": "diffaugment", "ops": ["xflip"]}, "train.augment: ops: diffaugment has no operation 'xflip'"),
    ({"policy": "ada", "p": 1.5}, "p = 1.5 is not a probability"),
    ({"policy": "ada", "p": -0.1}, "p = -0.1 is not a probability"),
    ({"policy": "ada", "p": "sometimes"}, "train.augment.p"),
    ({"policy": "stylegan"}, "train.augment.policy"),
    ({"policy": "diffaugment", "target": 0.7}, "target tune an adaptive p"),
    ({"policy": "ada", "ops": []}, "name each operation once"),
])
def test_bad_augment_settings_are_one_line_errors(augment, expected, write_recipe, tmp_path):
    result = CliRunner().invoke(main, ["run", str(write_recipe(train={"augment": augment})),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_a_backend_without_the_primitives_is_refused(write_recipe):
    from gankit.plugins import load_registry
    from gankit.recipe import load_recipe
    from gankit.updates import check_supported

    recipe = load_recipe(write_recipe(train={"augment": {"policy": "diffaugment"}}), [], load_registry())
    with pytest.raises(ValueError, match=r"^train.augment: the backend lacks the primitive\(s\) gather_pixels"):
        check_supported(recipe.train, None, object())


def test_a_resolved_augment_table_reads_back():
    """A run writes every key with its default into recipe.toml; reading it back must work
    for a fixed p as well as an adaptive one."""
    from gankit.params import validate_params

    for config in (AugmentConfig(policy="diffaugment"), AugmentConfig(policy="ada", p=0.25),
                   AugmentConfig(policy="ada", ada_kimg=50)):
        assert validate_params(AugmentConfig, config.model_dump()) == config


def test_lsgan_measures_ds_confidence_from_its_boundary(write_recipe):
    """lsgan pulls D(real) to 1 and D(fake) to 0: r_t counts D(x) above 0.5, not above 0."""
    from gankit.objectives import LOSSES

    assert LOSSES["lsgan"].boundary == 0.5 and LOSSES["bce"].boundary == 0.0
