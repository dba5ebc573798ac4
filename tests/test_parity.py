"""One description, every backend: torch and TensorFlow compile each gankit.nn network to
the same parameter count and the same output shape after every layer, for every
architecture in every shipped recipe and for the layer corner cases the recipes do not
reach (asymmetric 'same' padding, 'valid' transposed convolutions)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from gankit import nn
from gankit.data import DataSpec
from gankit.plugins import load_registry
from gankit.recipe import read_toml

pytestmark = pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None,
                                reason="needs both torch and tensorflow")

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPES = sorted(RECIPE_DIR.rglob("*.toml"))
SPECS = {"mnist": DataSpec(28, 28, 1, 10), "fashion-mnist": DataSpec(28, 28, 1, 10), "cifar10": DataSpec(32, 32, 3, 10)}
"""The shape of each bundled dataset, so that a recipe's networks are built without its data."""


def data_spec(dataset: dict, registry) -> DataSpec:
    name = dataset["use"]
    if name == "image-folder":
        params = registry.get("dataset", name).params.model_validate({k: v for k, v in dataset.items() if k != "use"})
        return DataSpec(params.size, params.size, params.channels)
    if name not in SPECS:
        pytest.fail(f"dataset {name!r} has no DataSpec here; add it to SPECS in {Path(__file__).name}")
    return SPECS[name]


def torch_compiled(network: nn.Network) -> tuple[int, list[tuple[int, ...]]]:
    """Trainable parameters and the (H, W, C) shape after each layer, on torch."""
    import torch

    from gankit_plugins.torch_backend.compile import Conditional, compile_network

    model = compile_network(network).eval()
    x = torch.zeros(2, *network.input_shape) if len(network.input_shape) == 1 else \
        torch.zeros(2, network.input_shape[2], *network.input_shape[:2])
    labels = torch.tensor([0, network.classes - 1]) if network.conditional else None
    shapes = []
    with torch.no_grad():
        for module in model:
            x = module(x, labels) if isinstance(module, Conditional) else module(x)
            shapes.append((x.shape[2], x.shape[3], x.shape[1]) if x.dim() == 4 else tuple(x.shape[1:]))
    return sum(p.numel() for p in model.parameters() if p.requires_grad), shapes


def tensorflow_compiled(network: nn.Network) -> tuple[int, list[tuple[int, ...]]]:
    """Trainable parameters and the shape after each layer, on TensorFlow."""
    from gankit_plugins.tensorflow_backend.compile import build_graph, compile_network

    model = compile_network(network, seed=0)
    shapes = [tuple(output.shape[1:]) for output, _ in build_graph(network, seed=0)[1]]
    return sum(int(v.numpy().size) for v in model.trainable_variables), shapes


def assert_same_on_both(network: nn.Network) -> None:
    described = (network.parameter_count(), [tuple(s) for s in network.shapes()])
    assert torch_compiled(network) == described
    assert tensorflow_compiled(network) == described


def test_every_shipped_recipe_is_walked():
    names = {path.name for path in RECIPES}
    assert {"dcgan_mnist.toml", "tf_dcgan_mnist.toml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(RECIPE_DIR)) for p in RECIPES])
def test_a_recipe_architecture_compiles_alike_on_torch_and_tensorflow(path):
    registry = load_registry()
    recipe = read_toml(path)
    table = dict(recipe["architecture"])
    component = registry.get("architecture", table.pop("use"))
    if component.backends is not None and not {"torch", "tensorflow"} <= set(component.backends):
        pytest.skip(f"{component.name} gives native builders for {', '.join(component.backends)} only")
    architecture = component.factory(component.params.model_validate(table), data_spec(recipe["dataset"], registry))
    assert_same_on_both(architecture.generator)
    assert_same_on_both(architecture.discriminator)


CORNER_CASES = {
    "same conv, odd input, asymmetric padding": nn.Network((7, 7, 3), (nn.Conv(4, 4, 2), nn.Conv(5, 3, 3))),
    "valid conv, stride above the kernel": nn.Network(
        (13, 11, 2), (nn.Conv(4, 5, 2, "valid"), nn.Conv(3, 1, 3, "valid", bias=False))),
    "same transposed conv, k - s odd and even": nn.Network(
        (5, 3, 8), (nn.ConvTranspose(4, 3, 2), nn.ConvTranspose(2, 4, 2), nn.ConvTranspose(3, 5, 1),
                    nn.ConvTranspose(1, 4, 3))),
    "valid transposed conv, kernel below, at and above the stride": nn.Network(
        (4, 6, 2), (nn.ConvTranspose(3, 2, 3, "valid"), nn.ConvTranspose(2, 3, 3, "valid"),
                    nn.ConvTranspose(1, 5, 2, "valid"))),
    "vector layers": nn.Network(
        (10,), (nn.Dense(12), nn.BatchNorm(0.8, 1e-3), nn.LeakyReLU(0.3), nn.Dropout(0.5), nn.Dense(6, bias=False),
                nn.ReLU(), nn.Dense(12), nn.Sigmoid(), nn.Reshape((2, 2, 3)), nn.BatchNorm(), nn.Tanh(), nn.Flatten(),
                nn.Dense(1)),
        init="normal:0.02"),
}


@pytest.mark.parametrize("name", CORNER_CASES)
def test_layer_corner_cases_compile_alike(name):
    assert_same_on_both(CORNER_CASES[name])


@pytest.mark.parametrize("layer, input_shape", [
    (nn.Conv(4, 5, 2), (28, 28, 3)),           # TF pads 1 before, 2 after
    (nn.Conv(4, 4, 2), (32, 32, 3)),
    (nn.ConvTranspose(4, 5, 2), (7, 7, 3)),    # TF crops 1 before, 2 after
    (nn.ConvTranspose(4, 3, 2), (7, 7, 3)),
    (nn.ConvTranspose(4, 4, 2), (8, 8, 3)),
    (nn.ConvTranspose(4, 5, 1), (7, 7, 3)),
])
def test_the_same_weights_compute_the_same_function_on_both_backends(layer, input_shape):
    """Shapes alone would not catch a one-pixel shift: copy torch's weights into Keras and
    compare the outputs."""
    import torch

    from gankit_plugins.tensorflow_backend.compile import compile_network as keras_network
    from gankit_plugins.torch_backend.compile import compile_network as torch_network

    network = nn.Network(input_shape, (layer,))
    torch_model, keras_model = torch_network(network).eval(), keras_network(network, seed=0)
    conv = next(m for m in torch_model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
    keras_model.layers[-1].set_weights([conv.weight.detach().permute(2, 3, 1, 0).numpy(), conv.bias.detach().numpy()])
    images = np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32)
    with torch.no_grad():
        torch_out = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(keras_model(images).numpy(), torch_out, atol=1e-5)


RESIDUAL_G = nn.Network((16,), (
    nn.Dense(4 * 4 * 8), nn.Reshape((4, 4, 8)),
    nn.Residual((nn.BatchNorm(), nn.ReLU(), nn.Upsample(), nn.Conv(6, 3), nn.BatchNorm(), nn.ReLU(), nn.Conv(6, 3)),
                (nn.Upsample(), nn.Conv(6, 1))),
    nn.Residual((nn.BatchNorm(), nn.ReLU(), nn.Conv(6, 3))),
    nn.BatchNorm(), nn.ReLU(), nn.Conv(3, 3), nn.Tanh()))
RESIDUAL_D = nn.Network((8, 8, 3), (
    nn.Residual((nn.Conv(6, 3), nn.ReLU(), nn.Conv(6, 3), nn.AvgPool()), (nn.AvgPool(), nn.Conv(6, 1))),
    nn.Residual((nn.ReLU(), nn.Conv(6, 3), nn.ReLU(), nn.Conv(6, 3))),
    nn.ReLU(), nn.GlobalSumPool(), nn.Dense(1)))
CONDITIONAL_G = nn.Network((16,), (
    nn.JoinClass(4), nn.Dense(4 * 4 * 8), nn.Reshape((4, 4, 8)),
    nn.Residual((nn.ConditionalBatchNorm(), nn.ReLU(), nn.Upsample(), nn.Conv(6, 3), nn.ConditionalBatchNorm(0.8),
                 nn.ReLU(), nn.Conv(6, 3)), (nn.Upsample(), nn.Conv(6, 1))),
    nn.ConditionalBatchNorm(), nn.ReLU(), nn.Conv(3, 3), nn.Tanh()), init="normal:0.3", classes=5)
ONE_HOT_G = nn.Network((16,), (nn.JoinClass(), nn.Dense(12), nn.ConditionalBatchNorm(0.8, 1e-3), nn.ReLU(),
                                nn.Dense(6), nn.Tanh()), classes=5)
PROJECTION_D = nn.Network((8, 8, 3), (*RESIDUAL_D.layers[:-1], nn.Projection()), classes=5)
ONE_HOT_D = nn.Network((8, 8, 3), (nn.JoinClass(), nn.Conv(4, 3, 2), nn.LeakyReLU(), nn.Flatten(), nn.Dense(1)),
                       init="glorot_uniform", classes=5)
SPECTRAL_D = nn.Network((8, 8, 3), (nn.Residual((nn.Conv(6, 3, spectral_norm=True), nn.AvgPool()),
                                                (nn.AvgPool(), nn.Conv(6, 1, spectral_norm=True))),
                                    nn.GlobalSumPool(), nn.Projection(spectral_norm=True)), classes=3)
STRUCTURED = {"residual generator": RESIDUAL_G, "residual discriminator": RESIDUAL_D,
              "conditional generator (embedding, conditional BatchNorm)": CONDITIONAL_G,
              "conditional generator (one-hot, vector)": ONE_HOT_G, "projection discriminator": PROJECTION_D,
              "one-hot discriminator": ONE_HOT_D}


@pytest.mark.parametrize("name", [*STRUCTURED, "spectral projection"])
def test_residual_and_conditional_networks_compile_alike(name):
    assert_same_on_both(STRUCTURED.get(name, SPECTRAL_D))


def _torch_layers(model) -> list:
    """The torch modules in ``nn.flatten`` order: each top-level module, a block before its layers."""
    from gankit_plugins.torch_backend.compile import Residual

    found = []
    for module in model:
        found.append(module)
        if isinstance(module, Residual):
            found += _torch_layers(module.main) + _torch_layers(module.shortcut)
    return found


def _channels_last(shape) -> np.ndarray:
    """For a vector that is an (H, W, C) map flattened channels-first (torch), the index of
    each channels-last (Keras) entry."""
    h, w, c = shape
    return np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).ravel()


def _dense_orders(network: nn.Network) -> dict:
    """For each Dense next to an image (a Reshape after it, a Flatten before it), how its
    outputs or inputs are reordered between torch's channels-first and Keras's layout."""
    shapes = [tuple(network.input_shape), *network.shapes()]
    orders = {}
    for index, layer in enumerate(network.layers):
        if isinstance(layer, nn.Dense):
            after = network.layers[index + 1] if index + 1 < len(network.layers) else None
            before = network.layers[index - 1] if index else None
            orders[id(layer)] = (_channels_last(after.shape) if isinstance(after, nn.Reshape) and len(after.shape) == 3
                                 else None,
                                 _channels_last(shapes[index - 1]) if isinstance(before, nn.Flatten) and
                                 len(shapes[index - 1]) == 3 else None)
    return orders


def copy_weights(network: nn.Network, torch_model, placed) -> None:
    """Give each Keras layer (``build_graph``'s, in ``nn.flatten`` order) its torch twin's weights."""
    from gankit_plugins.torch_backend import compile as torch_compile

    numpy = lambda tensor: tensor.detach().numpy()  # noqa: E731
    orders = _dense_orders(network)
    for layer, module, keras_layer in zip(nn.flatten(network.layers), _torch_layers(torch_model), placed, strict=True):
        if isinstance(layer, (nn.Conv, nn.ConvTranspose)):
            conv = torch_compile._weighted(module)
            keras_layer.set_weights([numpy(conv.weight.permute(2, 3, 1, 0)), *([numpy(conv.bias)] if layer.bias else [])])
        elif isinstance(layer, nn.Dense):
            kernel, bias = numpy(module.weight.t()), numpy(module.bias) if layer.bias else None
            outputs, inputs = orders.get(id(layer), (None, None))
            if outputs is not None:
                kernel, bias = kernel[:, outputs], None if bias is None else bias[outputs]
            if inputs is not None:
                kernel = kernel[inputs]
            keras_layer.set_weights([kernel, *([bias] if bias is not None else [])])
        elif isinstance(layer, nn.BatchNorm):
            keras_layer.set_weights([numpy(t) for t in (module.weight, module.bias, module.running_mean, module.running_var)])
        elif isinstance(layer, nn.ConditionalBatchNorm):
            keras_layer.scale.assign(numpy(module.scale.weight))
            keras_layer.shift.assign(numpy(module.shift.weight))
            keras_layer.norm.set_weights([numpy(module.norm.running_mean), numpy(module.norm.running_var)])
        elif isinstance(layer, nn.JoinClass) and layer.embedding:
            keras_layer.table.assign(numpy(module.embedding.weight))
        elif isinstance(layer, nn.Projection):
            keras_layer.dense.set_weights([numpy(module.linear.weight.t()), *([numpy(module.linear.bias)] if layer.bias else [])])
            keras_layer.embedding.assign(numpy(module.embedding.weight))
        else:
            assert isinstance(module, torch_compile.Residual) or not any(True for _ in module.parameters()), layer


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_residual_and_conditional_networks_compute_the_same_function(name, training):
    """With torch's weights copied into Keras, both give the same outputs for the same inputs
    and labels, with running statistics (inference) and with the batch's (training)."""
    import torch

    from gankit_plugins.tensorflow_backend.compile import build_graph, keras
    from gankit_plugins.torch_backend.compile import compile_network as torch_network

    network = STRUCTURED[name]
    torch.manual_seed(0)
    torch_model = torch_network(network).train(training)
    inputs, outputs, placed = build_graph(network, seed=0, placed=True)
    keras_model = keras.Model(inputs if network.conditional else inputs[0], outputs[-1][0])
    copy_weights(network, torch_model, placed)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, *network.input_shape)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 4, 2], dtype=np.int32) if network.conditional else None
    torch_x = torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x)
    with torch.no_grad():
        torch_out = torch_model(torch_x, None if labels is None else torch.from_numpy(labels).long())
    torch_out = torch_out.permute(0, 2, 3, 1) if torch_out.dim() == 4 else torch_out
    keras_out = keras_model([x, labels] if network.conditional else x, training=training)
    np.testing.assert_allclose(keras_out.numpy(), torch_out.numpy(), atol=2e-4, rtol=1e-4)
    if network.conditional:
        other = (labels + 1) % network.classes
        with torch.no_grad():
            changed = torch_model(torch_x, torch.from_numpy(other).long())
        assert not torch.allclose(changed, torch_model(torch_x, torch.from_numpy(labels).long())), "the label is ignored"
