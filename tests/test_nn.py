"""The portable network description, and its compilation to torch."""

from __future__ import annotations

import pytest
import torch

from gankit import nn
from gankit.data import DataSpec
from gankit.plugins import load_registry
from gankit_plugins.torch_backend.compile import compile_network

MNIST = DataSpec(28, 28, 1, 10)


def architecture(name: str, spec: DataSpec = MNIST, **params):
    component = load_registry().get("architecture", name)
    return component.factory(component.params(**params), spec)


def test_tf_tutorial_dcgan_shapes_and_parameter_counts():
    """The TF tutorial's model summary: G 2,305,472 and D 212,865 trainable parameters."""
    arch = architecture("dcgan", slope=0.3)
    shapes = arch.generator.shapes()
    assert (7, 7, 256) in shapes and (7, 7, 128) in shapes and (14, 14, 64) in shapes
    assert arch.generator.output_shape == (28, 28, 1)
    assert arch.generator.parameter_count() == 2_305_472
    assert arch.discriminator.parameter_count() == 212_865
    assert arch.discriminator.output_shape == (1,)


def test_keras_simple_gan_mlp_parameter_counts():
    arch = architecture("mlp", g_hidden=[256, 512, 1024], g_norm_order="act_norm", d_hidden=[784, 392], d_dropout=0.0)
    assert arch.generator.parameter_count() == 1_489_936
    assert arch.discriminator.parameter_count() == 923_553


def test_pytorch_tutorial_mlp_parameter_counts():
    arch = architecture("mlp", g_hidden=[128], g_activation="relu", g_batchnorm=False, d_hidden=[128], d_dropout=0.0)
    assert arch.generator.parameter_count() == 100 * 128 + 128 + 128 * 784 + 784
    assert arch.discriminator.parameter_count() == 784 * 128 + 128 + 128 + 1


@pytest.mark.parametrize("size, padding", [(28, (1, 2)), (14, (1, 2)), (32, (1, 2)), (7, (2, 2))])
def test_same_padding_follows_tensorflow(size, padding):
    assert nn.same_padding(size, 5, 2) == padding


@pytest.mark.parametrize(
    "layers, input_shape",
    [
        ((nn.Conv(8, 5, 2),), (28, 28, 3)),          # asymmetric 'same' padding
        ((nn.Conv(8, 4, 2),), (32, 32, 3)),
        ((nn.Conv(8, 3, 1, "valid"),), (32, 32, 3)),
        ((nn.ConvTranspose(8, 5, 2),), (7, 7, 4)),
        ((nn.ConvTranspose(8, 4, 2),), (16, 16, 4)),
        ((nn.ConvTranspose(8, 3, 1),), (7, 7, 4)),
        ((nn.ConvTranspose(8, 3, 2, "valid"),), (7, 7, 4)),
        ((nn.Dense(12), nn.BatchNorm(0.8, 1e-3), nn.Reshape((2, 2, 3)), nn.BatchNorm()), (5,)),
        ((nn.Flatten(), nn.Dropout(0.5), nn.Dense(1)), (4, 4, 2)),
    ],
)
def test_torch_compilation_matches_the_description(layers, input_shape):
    network = nn.Network(input_shape, layers)
    model = compile_network(network)
    assert sum(p.numel() for p in model.parameters()) == network.parameter_count()
    expected = network.output_shape
    out = model.eval()(torch.zeros(3, *(input_shape[2], *input_shape[:2]) if len(input_shape) == 3 else input_shape))
    assert tuple(out.shape[1:]) == ((expected[2], *expected[:2]) if len(expected) == 3 else expected)


def test_a_layer_that_does_not_fit_names_itself():
    with pytest.raises(nn.ShapeError, match="layer 1 .Dense.: Dense needs a vector input"):
        nn.Network((8, 8, 1), (nn.Conv(4, 3), nn.Dense(3)))


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="unknown init"):
        nn.Network((4,), (nn.Dense(2),), init="he")


def test_batchnorm_momentum_has_the_keras_meaning_on_torch():
    model = compile_network(nn.Network((4,), (nn.Dense(4), nn.BatchNorm(momentum=0.8, eps=1e-3))))
    assert model[1].momentum == pytest.approx(0.2) and model[1].eps == 1e-3


def test_initialisations():
    torch.manual_seed(0)
    dcgan = compile_network(nn.Network((100,), (nn.Dense(4000), nn.BatchNorm()), init="normal:0.02"))
    assert dcgan[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert dcgan[1].weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert dcgan[1].weight.std().item() == pytest.approx(0.02, rel=0.1)
    glorot = compile_network(nn.Network((300,), (nn.Dense(200),), init="glorot_uniform"))
    limit = (6 / (300 + 200)) ** 0.5
    assert glorot[0].weight.abs().max().item() <= limit
    assert glorot[0].weight.abs().max().item() > 0.95 * limit
    assert torch.count_nonzero(glorot[0].bias) == 0


@pytest.mark.parametrize("spec", [DataSpec(32, 32, 3), DataSpec(64, 64, 3), DataSpec(28, 28, 1)])
def test_default_dcgan_sizes_itself_from_the_data(spec):
    arch = architecture("dcgan", spec)
    assert arch.generator.output_shape == spec.shape
    assert arch.discriminator.input_shape == spec.shape
    assert 4 <= arch.generator.shapes()[0][0] // 256 <= 64  # starts from a 7x7 or 8x8 map


def test_a_residual_block_whose_branches_disagree_is_refused_before_compiling():
    block = nn.Residual((nn.Conv(8, 3), nn.AvgPool()), (nn.AvgPool(),))
    with pytest.raises(nn.ShapeError, match=r"layer 0 .Residual.: its layers give \(4, 4, 8\) but its shortcut "
                                            r"gives \(4, 4, 3\); fit the shortcut"):
        nn.Network((8, 8, 3), (block,))


def test_residual_shapes_and_parameter_counts():
    block = nn.Residual((nn.BatchNorm(), nn.ReLU(), nn.Upsample(), nn.Conv(8, 3)), (nn.Upsample(), nn.Conv(8, 1)))
    network = nn.Network((4, 4, 3), (block, nn.AvgPool(), nn.GlobalSumPool()))
    assert network.shapes() == [(8, 8, 8), (4, 4, 8), (8,)]
    assert network.parameter_count() == 2 * 3 + (9 * 3 * 8 + 8) + (3 * 8 + 8)
    identity = nn.Network((4, 4, 8), (nn.Residual((nn.ReLU(), nn.Conv(8, 3))),))
    assert identity.output_shape == (4, 4, 8)


def test_conditional_layers_need_a_network_with_classes():
    with pytest.raises(nn.ShapeError, match="Projection reads the class label: give the network classes"):
        nn.Network((4,), (nn.Projection(),))
    with pytest.raises(ValueError, match="takes 10 classes but no layer reads the label"):
        nn.Network((4,), (nn.Dense(1),), classes=10)


def test_conditional_shapes_and_parameter_counts():
    generator = nn.Network((100,), (nn.JoinClass(50), nn.Dense(16), nn.ConditionalBatchNorm(), nn.ReLU()), classes=10)
    assert generator.shapes()[0] == (150,)
    assert generator.parameter_count() == 10 * 50 + 150 * 16 + 16 + 2 * 10 * 16
    one_hot_d = nn.Network((8, 8, 3), (nn.JoinClass(), nn.Flatten(), nn.Projection()), classes=10)
    assert one_hot_d.shapes() == [(8, 8, 13), (8 * 8 * 13,), (1,)]
    assert one_hot_d.parameter_count() == 8 * 8 * 13 * 11 + 1
    with pytest.raises(nn.ShapeError, match="Projection needs a vector of features"):
        nn.Network((8, 8, 3), (nn.Projection(),), classes=10)


def test_a_conditional_torch_network_reads_the_label():
    network = nn.Network((4,), (nn.JoinClass(), nn.Dense(3), nn.ConditionalBatchNorm(), nn.Dense(2)), classes=5)
    model = compile_network(network).eval()
    z = torch.randn(1, 4).expand(5, 4)
    out = model(z, torch.arange(5))
    assert out.shape == (5, 2) and len({tuple(row.tolist()) for row in out}) == 5


@pytest.mark.parametrize("size, start, blocks", [(28, 7, 2), (32, 4, 3), (64, 4, 4)])
def test_resnet_is_sized_from_the_data(size, start, blocks):
    spec = DataSpec(size, size, 3, 10)
    plain = architecture("resnet", spec, g_channels=16, d_channels=16)
    shapes = plain.generator.shapes()
    assert shapes[1] == (start, start, 16) and plain.generator.output_shape == (size, size, 3)
    assert sum(isinstance(layer, nn.Residual) for layer in plain.generator.layers) == blocks
    assert plain.discriminator.output_shape == (1,) and plain.discriminator.shapes()[-3] == (start, start, 16)
    conditional = architecture("resnet", spec, g_channels=16, d_channels=16, conditional=True)
    assert conditional.generator.classes == conditional.discriminator.classes == 10
    # conditional BatchNorm: one scale and shift per class instead of one; projection: an embedding per class
    g_extra = conditional.generator.parameter_count() - plain.generator.parameter_count()
    assert g_extra == 2 * blocks * (2 * 10 * 16 - 2 * 16)
    assert conditional.discriminator.parameter_count() - plain.discriminator.parameter_count() == 10 * 16


def test_conditional_dcgan_and_mlp_need_labelled_data():
    with pytest.raises(ValueError, match="conditional = true needs labelled data"):
        architecture("dcgan", DataSpec(28, 28, 1), conditional=True)
    onehot = architecture("mlp", MNIST, conditional=True, g_condition="onehot", d_condition="onehot")
    assert onehot.generator.shapes()[0] == (110,) and isinstance(onehot.discriminator.layers[1], nn.JoinClass)
