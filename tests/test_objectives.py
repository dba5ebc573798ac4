"""The GAN objective, written once: every loss, target and penalty computes the same value
on torch and TensorFlow and the value the papers define; spectral norm normalises alike;
an EMA run resumes bit-exact; every option changes what it should; bad combinations are
one-line errors before anything runs."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from conftest import Trained
import tomli_w
from click.testing import CliRunner

from gankit import nn
from gankit.cli import main
from gankit.objectives import LOSSES, bce, gradient_penalty, squared_gradient_penalty
from gankit.plugins import load_registry
from gankit.recipe import load_recipe

BOTH = pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None,
                          reason="needs both torch and tensorflow")
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(find_spec(name) is None, reason=f"needs {name}"))
            for name in ("torch", "tensorflow")]
REPO = Path(__file__).resolve().parent.parent

RNG = np.random.default_rng(0)
REAL = RNG.normal(1.0, 2.0, (16, 1)).astype(np.float32)
FAKE = RNG.normal(-0.5, 2.0, (16, 1)).astype(np.float32)
TARGETS = RNG.uniform(0.8, 0.95, (16, 1)).astype(np.float32)


def softplus(x):
    return np.logaddexp(0.0, x)


def reference(loss: str, real, fake, real_target, fake_target) -> tuple[float, float]:
    """Each loss as its paper writes it, in numpy: (d_loss, g_loss)."""
    sigmoid = 1 / (1 + np.exp(-fake))
    if loss in ("bce", "minimax"):
        def xent(x, t):
            p = 1 / (1 + np.exp(-x))
            return -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
        d = xent(real, real_target) + xent(fake, fake_target)
        g = -np.mean(np.log(sigmoid)) if loss == "bce" else np.mean(np.log(1 - sigmoid))
        return d, g
    if loss == "lsgan":
        return 0.5 * np.mean((real - real_target) ** 2) + 0.5 * np.mean((fake - fake_target) ** 2), 0.5 * np.mean((fake - 1) ** 2)
    if loss == "rpgan":
        return np.mean(softplus(fake - real)), np.mean(softplus(real - fake))
    if loss == "hinge":
        return np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake)), -np.mean(fake)
    return np.mean(fake) - np.mean(real), -np.mean(fake)


def torch_ops():
    import torch

    from gankit_plugins.torch_backend.ops import TensorOps

    return TensorOps, torch.from_numpy


def tensorflow_ops():
    from gankit_plugins.tensorflow_backend.ops import TensorOps, tf

    return TensorOps, tf.constant


@BOTH
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("targets", ["plain", "smoothed", "noisy"])
def test_every_loss_gives_the_papers_value_on_both_backends(loss, targets):
    real_target, fake_target = {"plain": (1.0, 0.0), "smoothed": (0.9, 0.0), "noisy": (TARGETS, 1 - TARGETS)}[targets]
    if not LOSSES[loss].uses_targets and targets != "plain":
        pytest.skip(f"{loss} has no label targets")
    expected = reference(loss, REAL, FAKE, real_target, fake_target)
    for ops, tensor in (torch_ops(), tensorflow_ops()):
        wrap = lambda t, tensor=tensor: t if isinstance(t, float) else tensor(t)  # noqa: E731
        d = LOSSES[loss].d_loss(ops, tensor(REAL), tensor(FAKE), wrap(real_target), wrap(fake_target))
        g = LOSSES[loss].g_loss(ops, tensor(FAKE), tensor(REAL) if LOSSES[loss].relativistic else None)
        np.testing.assert_allclose([float(d), float(g)], expected, rtol=1e-5, atol=1e-6)


@BOTH
def test_bce_is_stable_for_extreme_logits():
    logits = np.array([[-200.0], [200.0]], np.float32)
    for ops, tensor in (torch_ops(), tensorflow_ops()):
        assert float(bce(ops, tensor(logits), 1.0)) == pytest.approx(100.0)


def _linear_critic(backend: str, weights: np.ndarray):
    """D(x) = x . w on (N, 2, 2, 1) images: its input gradient is w for every image."""
    if backend == "torch":
        import torch

        w = torch.from_numpy(weights.reshape(1, 1, 2, 2))  # NCHW, as the torch trainer's images
        return lambda x: (x * w).flatten(1).sum(1, keepdim=True), torch.from_numpy
    from gankit_plugins.tensorflow_backend.ops import tf

    w = tf.constant(weights.reshape(1, 2, 2, 1))
    return lambda x: tf.reduce_sum(tf.reshape(x * w, [tf.shape(x)[0], -1]), 1, keepdims=True), tf.constant


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalties_match_the_hand_computed_value(backend, write_recipe):
    """|w| = 3 for w = (1, 2, 2, 0): gp = (3 - 1)^2 = 4 and r1 = r2 = 3^2 / 2 = 4.5, whatever
    the images and the interpolation (r1 takes the gradient at real images, r2 at fake ones)."""
    trainer = Trained(write_recipe(backend={"use": backend, "device": "cpu"})).trainer
    critic, tensor = _linear_critic(backend, np.array([1.0, 2.0, 2.0, 0.0], np.float32))
    images = RNG.normal(size=(5, 1, 2, 2) if backend == "torch" else (5, 2, 2, 1)).astype(np.float32)
    others = RNG.normal(size=images.shape).astype(np.float32)
    assert float(gradient_penalty(trainer, critic, tensor(images), tensor(others))) == pytest.approx(4.0, rel=1e-5)
    _, gradient = trainer.input_gradient(critic, tensor(images))
    assert float(squared_gradient_penalty(gradient, trainer)) == pytest.approx(4.5, rel=1e-6)


@pytest.mark.parametrize("update", ["alternating", "simultaneous"])
def test_r1_and_r2_take_the_gradient_at_real_and_at_fake_images(update, write_recipe):
    """With D(x) = |x|^2 / 2, D's gradient is the image itself: r1 = mean(|real|^2) / 2 and
    r2 = mean(|fake|^2) / 2, computed in numpy."""
    import torch

    from gankit.updates import Updates

    trainer = Trained(write_recipe(backend={"use": "torch", "device": "cpu"})).trainer
    recipe = load_recipe(write_recipe(train={"update": update, "loss": "rpgan", "penalties": [
        {"use": "r1", "weight": 1.0}, {"use": "r2", "weight": 1.0}]}), [], load_registry())

    class Quadratic(type(trainer)):
        def forward_discriminator(self, images, labels=None):
            return 0.5 * (images * images).flatten(1).sum(1, keepdim=True)

    trainer.__class__ = Quadratic
    real, fake = RNG.normal(size=(6, 1, 3, 3)), RNG.normal(2.0, 1.0, size=(6, 1, 3, 3))
    same = lambda images: images  # noqa: E731
    loss, real_out, fake_out, values = Updates(recipe.train)._discriminator_loss(
        trainer, torch.from_numpy(real), torch.from_numpy(fake), None, None, (True, True), same, same,
        detached=update == "alternating")
    squares = lambda x: 0.5 * np.mean((x * x).reshape(len(x), -1).sum(1))  # noqa: E731
    r1, r2 = (float(values[name].detach()) for name in ("d_r1", "d_r2"))
    assert r1 == pytest.approx(squares(real)) and r2 == pytest.approx(squares(fake))
    d_real, d_fake = 0.5 * (real ** 2).reshape(6, -1).sum(1), 0.5 * (fake ** 2).reshape(6, -1).sum(1)
    expected = np.mean(softplus(d_fake - d_real)) + squares(real) + squares(fake)
    assert float(loss.detach()) == pytest.approx(expected)


@BOTH
def test_penalty_gradients_reach_the_discriminator_alike_on_both_backends():
    """The penalty must be differentiable again (create_graph / nested tapes): its gradient
    with respect to a nonlinear D's weights is the same on both backends."""
    import tensorflow as tf
    import torch

    from gankit_plugins.tensorflow_backend.ops import TensorOps as TfOps
    from gankit_plugins.torch_backend.ops import TensorOps as TorchOps

    w, images = RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=(6, 3)).astype(np.float32)
    tw = torch.from_numpy(w).requires_grad_(True)
    x = torch.from_numpy(images).requires_grad_(True)
    out = torch.tanh(x @ tw).sum(1, keepdim=True)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    (torch_result,) = torch.autograd.grad(squared_gradient_penalty(grad, TorchOps), tw)

    fw = tf.Variable(w)
    with tf.GradientTape() as outer:
        xs = tf.constant(images)
        with tf.GradientTape() as inner:
            inner.watch(xs)
            out = tf.reduce_sum(tf.tanh(xs @ fw), 1, keepdims=True)
        penalty = squared_gradient_penalty(inner.gradient(out, xs), TfOps)
    np.testing.assert_allclose(outer.gradient(penalty, fw).numpy(), torch_result.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(torch_result.numpy()).sum() > 0


SPECTRAL = {
    "convolutions": nn.Network((6, 6, 3), (nn.Conv(4, 3, 2, spectral_norm=True), nn.LeakyReLU(),
                                           nn.ConvTranspose(5, 3, 2, spectral_norm=True))),
    "dense": nn.Network((7,), (nn.Dense(6, spectral_norm=True), nn.Tanh(), nn.Dense(1, bias=False, spectral_norm=True))),
}


@BOTH
@pytest.mark.parametrize("name", SPECTRAL)
def test_spectral_norm_normalises_alike_on_both_backends(name):
    """Given the same weights and vectors, both backends compute the same normalised network,
    take the same power iteration, and converge to the true largest singular value."""
    import torch

    from gankit import spectral
    from gankit_plugins.tensorflow_backend.compile import compile_network as keras_network
    from gankit_plugins.tensorflow_backend.compile import spectral_layers
    from gankit_plugins.torch_backend.compile import SpectralNorm, spectral_norms
    from gankit_plugins.torch_backend.compile import compile_network as torch_network
    from gankit_plugins.torch_backend.ops import TensorOps

    network = SPECTRAL[name]
    torch_model, keras_model = torch_network(network).eval(), keras_network(network, seed=0)
    weighted = [m for m in torch_model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    layouts = {torch.nn.Linear: (1, 0), torch.nn.Conv2d: (2, 3, 1, 0), torch.nn.ConvTranspose2d: (2, 3, 1, 0)}
    for module, keras_layer in zip(weighted, spectral_layers(keras_model), strict=True):
        original = module.parametrizations.weight.original.detach()
        layout = next(order for kind, order in layouts.items() if isinstance(module, kind))
        keras_layer.layer.kernel.assign(original.permute(*layout).numpy())
        if module.bias is not None:
            keras_layer.layer.bias.assign(module.bias.detach().numpy())
        keras_layer.u.assign(module.parametrizations.weight[0].u.numpy())
    assert sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables) == \
        sum(p.numel() for p in torch_model.parameters()) == network.parameter_count()

    inputs = RNG.normal(size=(2, *network.input_shape)).astype(np.float32)

    def outputs():
        image = len(network.input_shape) == 3
        with torch.no_grad():
            torch_in = torch.from_numpy(inputs).permute(0, 3, 1, 2) if image else torch.from_numpy(inputs)
            torch_out = torch_model(torch_in)
        return (torch_out.permute(0, 2, 3, 1) if image else torch_out).numpy(), keras_model(inputs, training=False).numpy()

    np.testing.assert_allclose(*outputs(), rtol=1e-4, atol=1e-5)
    layers = spectral_norms(torch_model)
    assert len(layers) == len(weighted)

    def advance_torch():
        with torch.no_grad():
            for original, parametrization in layers:
                parametrization.advance(original)

    advance_torch()
    for layer in spectral_layers(keras_model):
        layer.advance()
    np.testing.assert_allclose(*outputs(), rtol=1e-4, atol=1e-5)
    for module, keras_layer in zip(weighted, spectral_layers(keras_model)):
        np.testing.assert_allclose(module.parametrizations.weight[0].u.numpy(), keras_layer.u.numpy(), rtol=1e-4, atol=1e-6)

    for _ in range(300):
        advance_torch()
    for module in weighted:
        parametrization = module.parametrizations.weight[0]
        assert isinstance(parametrization, SpectralNorm)
        matrix = parametrization.matrix(module.parametrizations.weight.original.detach())
        largest = np.linalg.svd(matrix.numpy(), compute_uv=False)[0]
        assert float(spectral.sigma(TensorOps, matrix, parametrization.u)) == pytest.approx(largest, rel=1e-3)
        normalised = parametrization.matrix(module.weight.detach()).numpy()
        assert np.linalg.svd(normalised, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)


DCGAN_TINY = {"use": "dcgan", "g_start_channels": 16,
              "g_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"kernel": 3, "stride": 2}],
              "d_layers": [{"filters": 8, "kernel": 3, "stride": 2}, {"filters": 16, "kernel": 3, "stride": 2}]}
EVERYTHING = {"loss": "hinge", "ema": 0.8, "ema_warmup": 1, "d_steps": 2, "batch_size": 16,
              "penalties": [{"use": "gp", "weight": 5.0}, {"use": "r1", "weight": 0.5, "every": 2},
                            {"use": "r2", "weight": 0.3}],
              "augment": {"policy": "ada", "p": 0.5}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_ema_run_with_every_option_resumes_bit_exact(backend, write_recipe, tmp_path):
    recipe = write_recipe(architecture={**DCGAN_TINY, "d_spectral_norm": True, "g_spectral_norm": True},
                          backend={"use": backend, "device": "cpu"}, train=EVERYTHING)
    straight = Trained(recipe)
    losses = straight.steps(0, 5)
    resumed_losses, resumed = Trained.interrupted(recipe, 3, 5, tmp_path)
    assert resumed_losses == losses
    assert "d_r1" in losses[2] and "d_r1" not in losses[1] and "d_gp" in losses[1] and "d_r2" in losses[1]
    np.testing.assert_array_equal(resumed.trainer.fixed_samples(), straight.trainer.fixed_samples())
    np.testing.assert_array_equal(resumed.trainer.generate(8, 3, raw=True), straight.trainer.generate(8, 3, raw=True))


def _last_losses(write_recipe, tmp_path, backend: str, name: str, architecture=None, **train) -> dict:
    recipe = write_recipe(f"{name}.toml", architecture=architecture or DCGAN_TINY,
                          backend={"use": backend, "device": "cpu"}, train={"steps": 3, "log_every": 1, **train})
    runs = tmp_path / name
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = next(runs.iterdir())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {k: v for k, v in rows[-1].items() if k not in ("images_per_sec", "step", "epoch")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_option_changes_the_losses(backend, write_recipe, tmp_path):
    """No option is silently ignored: each one, alone, gives other losses than the plain run."""
    plain = _last_losses(write_recipe, tmp_path, backend, "plain")
    options = {
        **{f"loss_{name}": {"loss": name} for name in LOSSES if name != "bce"},
        "gp": {"penalties": [{"use": "gp", "weight": 10.0}]},
        "r1": {"penalties": [{"use": "r1", "weight": 10.0}]},
        "r2": {"penalties": [{"use": "r2", "weight": 10.0}]},
        "augment_diffaugment": {"augment": {"policy": "diffaugment"}},
        "augment_ada": {"augment": {"policy": "ada", "p": 0.5}},
        "label_smoothing": {"label_smoothing": 0.2},
        "label_noise": {"label_noise": 0.2},
        "d_steps": {"d_steps": 2},
        "simultaneous": {"update": "simultaneous"},
        "clip_value": {"clip_value": 1e-3},
    }
    for name, train in options.items():
        changed = _last_losses(write_recipe, tmp_path, backend, name, **train)
        assert (changed["d_loss"], changed["g_loss"]) != (plain["d_loss"], plain["g_loss"]), name
    normalised = _last_losses(write_recipe, tmp_path, backend, "sn", {**DCGAN_TINY, "d_spectral_norm": True})
    assert (normalised["d_loss"], normalised["g_loss"]) != (plain["d_loss"], plain["g_loss"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ema_gives_the_samples_and_warm_up_copies(backend, write_recipe):
    """EMA changes what is sampled, not how G trains; during its warm-up it copies G. (Each
    trainer trains before the next is built: torch's dropout draws from the process's RNG.)"""
    runs = {}
    for name, train in {"plain": {}, "averaged": {"ema": 0.5}, "warming": {"ema": 0.5, "ema_warmup": 10}}.items():
        run = Trained(write_recipe(f"{name}.toml", architecture=DCGAN_TINY, backend={"use": backend, "device": "cpu"},
                                   train=train))
        runs[name] = (run.steps(0, 3), run.trainer.generate(16, 0), run.trainer.generate(16, 0, raw=True))
    assert runs["plain"][0] == runs["averaged"][0] == runs["warming"][0]
    raw = runs["plain"][1]
    np.testing.assert_array_equal(runs["averaged"][2], raw)
    assert not np.array_equal(runs["averaged"][1], raw)
    np.testing.assert_array_equal(runs["warming"][1], raw)


def test_sample_and_evaluate_use_the_average_unless_raw(write_recipe, tmp_path):
    recipe = write_recipe(train={"steps": 3, "ema": 0.5, "checkpoint_every": 0})
    runs = tmp_path / "runs"
    assert CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(runs)]).exit_code == 0
    run_dir = next(runs.iterdir())
    drawn = {}
    for flag in ([], ["--raw"]):
        out = tmp_path / f"s{len(flag)}.npz"
        result = CliRunner().invoke(main, ["sample", str(run_dir), "-n", "8", "-o", str(out), *flag])
        assert result.exit_code == 0, result.output
        drawn[bool(flag)] = np.load(out)["images"]
    assert not np.array_equal(drawn[True], drawn[False])


@pytest.mark.parametrize("train, expected", [
    ({"loss": "wgan"}, "unknown loss 'wgan'; known: bce, minimax, lsgan, hinge, wasserstein, rpgan"),
    ({"loss": "hinge", "label_smoothing": 0.1}, "label_smoothing needs a loss with label targets"),
    ({"ema": 1.0}, "train.ema: Input should be less than 1"),
    ({"ema": 0.0}, "train.ema: Input should be greater than 0"),
    ({"ema_warmup": 10}, "ema_warmup needs train.ema"),
    ({"penalties": [{"use": "gp2", "weight": 1.0}]}, "unknown penalty 'gp2'; known: gp, r1, r2"),
    ({"penalties": [{"use": "gp", "weight": 0.0}]}, "train.penalties.0.weight"),
    ({"penalties": [{"use": "r1", "weight": 1.0}, {"use": "r1", "weight": 2.0}]}, "each penalty may appear once"),
])
def test_bad_objective_settings_are_one_line_errors(write_recipe, tmp_path, train, expected):
    result = CliRunner().invoke(main, ["run", str(write_recipe(train=train)), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("architecture, train, expected", [
    ({**DCGAN_TINY, "d_batchnorm": True}, {"penalties": [{"use": "gp", "weight": 10.0}]},
     "train.penalties.0: gp penalises each image's gradient"),
    ({**DCGAN_TINY, "d_batchnorm": True, "d_spectral_norm": True}, {}, "d_spectral_norm: BatchNorm after"),
])
def test_combinations_that_cannot_work_are_refused_before_the_run(write_recipe, tmp_path, architecture, train, expected):
    result = CliRunner().invoke(main, ["run", str(write_recipe(architecture=architecture, train=train)),
                                       "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_a_backend_without_a_primitive_is_refused_in_one_line(write_recipe):
    from gankit.updates import check_supported

    recipe = load_recipe(write_recipe(train={"penalties": [{"use": "r1", "weight": 1.0}], "ema": 0.9}), [], load_registry())
    with pytest.raises(ValueError, match=r"train.penalties.0: r1: the backend lacks the primitive\(s\) input_gradient"):
        check_supported(recipe.train, None, object())


def test_no_objective_is_written_in_a_backend_plugin():
    """Losses, targets, penalties, the EMA and the augmentations live in gankit.objectives,
    gankit.updates and gankit.augment only."""
    words = ("cross_entropy", "label_smoothing", "label_noise", "hinge", "wasserstein", "lsgan", "softplus(",
             "penalty", "average - live", "1 - decay", "decay *", "update ==", "d_steps):", "_d_loss", "_g_loss",
             "relativistic", "brightness", "saturation", "contrast", "cutout", "bilinear", "_reflect", "np.sign")
    for path in (REPO / "plugins").rglob("*backend/*.py"):
        text = path.read_text()
        assert not [word for word in words if word in text], path


def test_shipped_recipes_with_objectives_are_valid():
    registry = load_registry()
    for name in ("wgan_gp_mnist", "lsgan_mnist", "hinge_sn_dcgan_cifar_frog"):
        recipe = load_recipe(REPO / "recipes" / f"{name}.toml", [], registry)
        assert tomli_w.dumps(recipe.as_dict())
