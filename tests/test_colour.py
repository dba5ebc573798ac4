"""Colour end to end: architectures at 32x32x3 and 64x64x3, RGB sample grids, GIFs and
``gankit sample``."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from PIL import Image

from gankit import nn
from gankit.cli import main
from gankit.data import DataSpec
from gankit.images import grid, png_bytes
from gankit.plugins import load_registry
from gankit.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent


def architecture(name: str, spec: DataSpec, **params) -> nn.Architecture:
    component = load_registry().get("architecture", name)
    return component.factory(component.params(**params), spec)


def forward_shapes(built: nn.Architecture, count: int = 2) -> tuple[tuple, tuple]:
    """The compiled torch networks' output shapes for ``count`` inputs."""
    import torch

    from gankit_plugins.torch_backend.compile import compile_network

    generator, discriminator = compile_network(built.generator), compile_network(built.discriminator)
    with torch.no_grad():
        images = generator(torch.randn(count, built.latent_dim))
        return tuple(images.shape), tuple(discriminator(images).shape)


@pytest.mark.parametrize("size, start, upsamplings", [(32, 8, 2), (64, 8, 3)])
def test_default_dcgan_scales_to_colour_images(size, start, upsamplings):
    built = architecture("dcgan", DataSpec(size, size, 3))
    reshape = next(layer for layer in built.generator.layers if isinstance(layer, nn.Reshape))
    assert reshape.shape[:2] == (start, start)
    strided = [layer for layer in built.generator.layers if isinstance(layer, nn.ConvTranspose) and layer.stride == 2]
    assert len(strided) == upsamplings
    assert built.generator.output_shape == (size, size, 3) and built.discriminator.output_shape == (1,)
    assert forward_shapes(built) == ((2, 3, size, size), (2, 1))


def test_mlp_gan_works_on_rgb():
    built = architecture("mlp", DataSpec(32, 32, 3), g_hidden=[16], d_hidden=[16])
    assert built.generator.layers[-3] == nn.Dense(32 * 32 * 3)
    assert built.generator.output_shape == (32, 32, 3)
    assert forward_shapes(built) == ((2, 3, 32, 32), (2, 1))


def recipe_architecture(path: Path) -> nn.Architecture:
    recipe = load_recipe(path, [], load_registry())
    return recipe.architecture.component.factory(recipe.architecture.params, DataSpec(32, 32, 3, 10))


def test_the_keras_cifar_frog_networks_have_the_tutorials_shapes():
    built = recipe_architecture(REPO / "recipes" / "tutorials" / "keras_dcgan_cifar_frog.toml")
    assert built.latent_dim == 32
    g_convs = [shape for layer, shape in zip(built.generator.layers, built.generator.shapes())
               if isinstance(layer, (nn.Conv, nn.ConvTranspose))]
    assert g_convs == [(16, 16, 256), (32, 32, 256), (32, 32, 256), (32, 32, 256), (32, 32, 3)]
    d_convs = [shape for layer, shape in zip(built.discriminator.layers, built.discriminator.shapes())
               if isinstance(layer, nn.Conv)]
    assert d_convs == [(30, 30, 128), (14, 14, 128), (6, 6, 128), (2, 2, 128)]
    assert [type(layer) for layer in built.discriminator.layers[-3:]] == [nn.Flatten, nn.Dropout, nn.Dense]
    assert not any(isinstance(layer, nn.BatchNorm) for layer in built.generator.layers)
    assert (built.generator.parameter_count(), built.discriminator.parameter_count()) == (6_264_579, 790_913)


def test_the_headline_cifar_frog_dcgan_goes_from_4x4x512_to_32x32x3():
    built = recipe_architecture(REPO / "recipes" / "dcgan_cifar_frog.toml")
    reshape = next(layer for layer in built.generator.layers if isinstance(layer, nn.Reshape))
    assert reshape.shape == (4, 4, 512) and built.generator.output_shape == (32, 32, 3)
    assert [s for layer, s in zip(built.discriminator.layers, built.discriminator.shapes()) if isinstance(layer, nn.Conv)] \
        == [(16, 16, 64), (8, 8, 128), (4, 4, 256)]


def test_grids_keep_colour():
    images = np.zeros((3, 4, 4, 3), np.uint8)
    images[..., 0], images[1, ..., 1], images[2, ..., 2] = 200, 150, 100
    canvas = grid(images, columns=3, padding=1)
    assert canvas.shape == (6, 16, 3)
    assert canvas[1, 1].tolist() == [200, 0, 0] and canvas[1, 6].tolist() == [200, 150, 0]
    assert iio.imread(png_bytes(canvas)).tolist() == canvas.tolist()


@pytest.fixture
def colour_run(tmp_path) -> Path:
    """A tiny MLP GAN run on eight solid-colour images: samples every step, then a GIF."""
    folder = tmp_path / "colours"
    folder.mkdir()
    for index in range(8):
        Image.new("RGB", (20, 20), (255 * (index & 1), 255 * (index >> 1 & 1), 255 * (index >> 2 & 1))).save(
            folder / f"{index}.png")
    recipe = tmp_path / "colours.toml"
    recipe.write_text(tomli_w.dumps({
        "name": "colours",
        "dataset": {"use": "image-folder", "root": str(folder), "size": 16},
        "architecture": {"use": "mlp", "g_hidden": [32], "d_hidden": [32]},
        "backend": {"use": "torch", "device": "cpu"},
        "train": {"steps": 3, "batch_size": 4, "samples": 9},
        "export": [{"use": "png", "every": 1}, {"use": "gif"}],
    }))
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    return next((tmp_path / "runs").iterdir())


def test_png_grids_gif_and_sample_are_in_colour(colour_run, tmp_path):
    grids = sorted((colour_run / "samples").glob("step_*.png"))
    assert len(grids) == 3
    last = iio.imread(grids[-1])
    assert last.shape == (2 + 3 * 18, 2 + 3 * 18, 3)
    assert np.abs(last[..., 0].astype(int) - last[..., 2]).max() > 0  # not grey in three channels
    frames = iio.imread(colour_run / "progress.gif", index=None)
    assert frames.shape[0] >= 3 and frames.shape[1:3] == last.shape[:2] and frames.shape[-1] in (3, 4)

    result = CliRunner().invoke(main, ["sample", str(colour_run), "-n", "4", "-o", str(tmp_path / "drawn.png")])
    assert result.exit_code == 0, result.output
    assert iio.imread(tmp_path / "drawn.png").shape == (2 + 2 * 18, 2 + 2 * 18, 3)
    result = CliRunner().invoke(main, ["sample", str(colour_run), "-n", "5", "-o", str(tmp_path / "drawn.npz")])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "drawn.npz") as stored:
        assert stored["images"].shape == (5, 16, 16, 3) and stored["images"].dtype == np.uint8
