"""One description, every backend: torch and TensorFlow compile each gankit.nn network to
the same parameter count and the same output shape after every layer, for every
architecture in every shipped recipe and for the layer corner cases the recipes do not
reach (asymmetric 'same' padding, 'valid' transposed convolutions)."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

from gankit import nn
from gankit.data import DataSpec
from gankit.plugins import load_registry
from gankit.recipe import read_toml

pytestmark = pytest.mark.skipif(find_spec("torch") is None or find_spec("tensorflow") is None,
                                reason="needs both torch and tensorflow")

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPES = sorted(RECIPE_DIR.rglob("*.toml"))
SPECS = {"mnist": DataSpec(28, 28, 1), "fashion-mnist": DataSpec(28, 28, 1), "cifar10": DataSpec(32, 32, 3, 10)}
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

    from gankit_plugins.torch_backend.compile import compile_network

    model = compile_network(network).eval()
    x = torch.zeros(2, *network.input_shape) if len(network.input_shape) == 1 else \
        torch.zeros(2, network.input_shape[2], *network.input_shape[:2])
    shapes = []
    with torch.no_grad():
        for module in model:
            x = module(x)
            shapes.append((x.shape[2], x.shape[3], x.shape[1]) if x.dim() == 4 else tuple(x.shape[1:]))
    return sum(p.numel() for p in model.parameters() if p.requires_grad), shapes


def tensorflow_compiled(network: nn.Network) -> tuple[int, list[tuple[int, ...]]]:
    """Trainable parameters and the shape after each layer, on TensorFlow."""
    from gankit_plugins.tensorflow_backend.compile import compile_network

    model = compile_network(network, seed=0)
    shapes = [tuple(layer.output.shape[1:]) for layer in model.layers]
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
    import numpy as np
    import torch

    from gankit_plugins.tensorflow_backend.compile import compile_network as keras_network
    from gankit_plugins.torch_backend.compile import compile_network as torch_network

    network = nn.Network(input_shape, (layer,))
    torch_model, keras_model = torch_network(network).eval(), keras_network(network, seed=0)
    conv = next(m for m in torch_model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
    keras_model.layers[0].set_weights([conv.weight.detach().permute(2, 3, 1, 0).numpy(), conv.bias.detach().numpy()])
    images = np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32)
    with torch.no_grad():
        torch_out = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(keras_model(images).numpy(), torch_out, atol=1e-5)
