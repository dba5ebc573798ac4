"""The image-folder dataset: formats, resizing and cropping, unreadable files, the cache,
and a recipe on a folder of images end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tomli_w
from click.testing import CliRunner
from PIL import Image

from gankit.cli import main
from gankit.data import DataContext, DataError
from gankit_plugins import image_folder
from gankit_plugins.image_folder import ImageFolder, ImageFolderParams

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def bands(width: int, height: int, colours, vertical: bool = True) -> Image.Image:
    """Equal bands of ``colours``, left to right (or top to bottom)."""
    image = Image.new("RGB", (width, height))
    step = (width if vertical else height) // len(colours)
    for index, colour in enumerate(colours):
        box = (index * step, 0, (index + 1) * step, height) if vertical else (0, index * step, width, (index + 1) * step)
        image.paste(colour, box)
    return image


@pytest.fixture
def folder(tmp_path) -> Path:
    """Four readable images in three formats and two levels, one corrupt file, and files to ignore."""
    root = tmp_path / "images"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    bands(60, 20, [RED, GREEN, BLUE]).save(root / "a_wide.png")
    bands(20, 60, [RED, GREEN, BLUE], vertical=False).save(root / "nested" / "b_tall.JPG", quality=95)
    Image.new("RGBA", (30, 30), (0, 0, 255, 0)).save(root / "nested" / "c_transparent.png")
    Image.new("L", (40, 40), 128).save(root / "nested" / "deeper" / "d_grey.webp", lossless=True)
    (root / "nested" / "e_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.new("RGB", (8, 8)).save(root / ".hidden" / "ignored.png")
    (root / "notes.txt").write_text("not an image")
    return root


def load(root: Path, warnings: list | None = None, **params):
    context = DataContext(cache_dir=Path(os.environ["GANKIT_CACHE"]), warn=(warnings if warnings is not None else []).append)
    return ImageFolder(ImageFolderParams(root=str(root), **params), context).load("train")


def test_reads_every_format_recursively_and_skips_unreadable_files(folder):
    warnings = []
    data = load(folder, warnings, size=16)
    assert data.images.shape == (4, 16, 16, 3) and data.images.dtype == np.uint8
    # a_wide.png lies directly in the root: no class; the others are in the subfolder "nested".
    assert data.labels.tolist() == [-1, 0, 0, 0] and data.spec.class_names == ("nested",) and not data.labelled
    assert "4 images, 1 unreadable skipped" in data.source
    assert len(warnings) == 1 and "skipped 1 unreadable or oversized image(s)" in warnings[0] and "e_broken.jpg" in warnings[0]


def test_resizes_the_short_side_then_center_crops(folder):
    wide, tall, transparent, grey = load(folder, size=16).images.astype(int)
    assert (np.abs(wide - GREEN).max(axis=-1) < 8).all()  # the middle band of three
    assert (np.abs(tall[2:-2] - GREEN).max(axis=-1) < 40).all()  # JPEG's chroma blurs the band edges
    assert (transparent == 255).all()  # transparency is laid over white
    assert (grey == 128).all()


def test_greyscale_and_limit(folder):
    data = load(folder, size=8, channels=1, limit=2)
    assert data.images.shape == (2, 8, 8, 1) and data.spec.channels == 1
    assert abs(int(data.images[0, 4, 4, 0]) - 150) < 10  # pure green in ITU-R 601 luma


def test_turns_images_upright_from_their_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    bands(20, 10, [RED, BLUE], vertical=False).save(tmp_path / "sideways.png", exif=exif)
    image = load(tmp_path, size=10).images[0].astype(int)
    assert (np.abs(image[:, :4] - BLUE).max(axis=-1) < 8).all() and (np.abs(image[:, 6:] - RED).max(axis=-1) < 8).all()


def test_empty_folders_unreadable_folders_and_bad_roots_are_clear_errors(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="no PNG, JPEG or WebP images in .*empty .searched recursively"):
        load(tmp_path / "empty")
    (tmp_path / "empty" / "sub" / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 image files .* could be read, e.g. sub/bad.png"):
        load(tmp_path / "empty")
    with pytest.raises(DataError, match="is not a directory; point dataset.root at a folder of images"):
        load(tmp_path / "missing")
    with pytest.raises(DataError, match="only a train split"):
        ImageFolder(ImageFolderParams(root=str(tmp_path)), DataContext()).load("test")


def test_decoded_images_are_cached_until_a_file_changes(folder, monkeypatch):
    first = load(folder, size=16)
    warnings = []
    with monkeypatch.context() as patch:
        patch.setattr(image_folder, "decode", lambda *args: pytest.fail("decoded again despite the cache"))
        cached = load(folder, warnings, size=16)
    assert np.array_equal(cached.images, first.images) and cached.source == first.source and len(warnings) == 1
    bands(60, 20, [BLUE, RED, GREEN]).save(folder / "a_wide.png")
    os.utime(folder / "a_wide.png", ns=(1, 1))  # a new mtime even on a coarse clock
    assert load(folder, size=16).images[0, 8, 8].tolist() == list(RED)
    assert len(list((Path(os.environ["GANKIT_CACHE"]) / "image-folder").iterdir())) == 1  # the stale one is gone


def test_a_recipe_on_an_image_folder_trains_and_exports(folder, tmp_path):
    recipe = tmp_path / "my_images.toml"
    recipe.write_text(tomli_w.dumps({
        "name": "my_images",
        "dataset": {"use": "image-folder", "root": str(folder), "size": 32},
        "architecture": {"use": "dcgan"},
        "backend": {"use": "torch", "device": "cpu"},
        "train": {"steps": 2, "batch_size": 2, "samples": 4},
        "export": [{"use": "png", "every": 1}, {"use": "gif"}],
    }))
    result = CliRunner().invoke(main, ["run", str(recipe), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs").iterdir())
    assert iio.imread(run_dir / "samples" / "step_00000002.png").shape == (70, 70, 3)
    assert (run_dir / "progress.gif").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"]["shape"] == [32, 32, 3] and "1 unreadable skipped" in summary["data"]["source"]


def test_first_level_subfolders_are_the_classes(tmp_path):
    root = tmp_path / "pets"
    for name, colour in (("dog", RED), ("cat", GREEN)):
        (root / name / "more").mkdir(parents=True)
        Image.new("RGB", (12, 12), colour).save(root / name / "one.png")
        Image.new("RGB", (12, 12), colour).save(root / name / "more" / "two.png")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    for _ in range(2):  # decoded, then from the cache
        data = load(root, size=8, channels=3)
        assert data.spec.class_names == ("cat", "dog") and data.spec.classes == 2 and data.labelled
        assert data.labels.tolist() == [0, 0, 1, 1]
        assert [tuple(image[0, 0]) for image in data.images] == [GREEN, GREEN, RED, RED]


def test_long_thin_and_huge_images_are_skipped_by_name_and_the_rest_load(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    bands(30, 30, [RED, GREEN, BLUE]).save(root / "fine.png")
    Image.new("L", (1, 60000), 200).save(root / "thin.png")  # a few hundred bytes; 16 GB once resized to 256
    warnings = []
    data = load(root, warnings, size=256)
    assert len(data.images) == 1 and data.images.shape == (1, 256, 256, 3)
    assert "thin.png (1x60000 pixels, an aspect ratio that would need" in warnings[0]
    with pytest.raises(ValueError, match="more than the"):
        image_folder.check_size(20_000, 20_000, 64)  # 400 M pixels, past Pillow's bound


def test_a_16_bit_png_is_scaled_to_8_bits_not_saturated(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    ramp = np.repeat(np.linspace(0, 65535, 32).astype(np.uint16)[None, :], 32, axis=0)
    Image.fromarray(ramp).save(root / "ramp16.png")
    assert Image.open(root / "ramp16.png").mode.startswith("I")
    image = load(root, size=32, channels=1).images[0, :, :, 0]
    np.testing.assert_allclose(image[16].astype(float), ramp[16] / 257, atol=2)
    assert image.min() == 0 and image.max() == 255 and 120 < image.mean() < 136


def test_a_damaged_cache_file_is_named_discarded_and_rebuilt(folder):
    first = load(folder, size=16)
    cached = next((Path(os.environ["GANKIT_CACHE"]) / "image-folder").glob("*.npz"))
    cached.write_bytes(cached.read_bytes()[:200])
    warnings = []
    again = load(folder, warnings, size=16)
    assert np.array_equal(again.images, first.images)
    assert any(f"the cached images {cached} are damaged" in w for w in warnings)
    with np.load(cached) as rebuilt:
        assert np.array_equal(rebuilt["images"], first.images)
