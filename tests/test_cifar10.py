"""The cifar10 dataset on small files in the official pickle layout, written here; its
download path against a local HTTP server; the two CIFAR frog recipes end to end."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from gankit.cli import main
from gankit.data import DataContext, DataError
from gankit.plugins import load_registry
from gankit_plugins import cifar10
from gankit_plugins.cifar10 import Cifar10, CifarParams
from httpserver import serve

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PER_BATCH = 12  # labels cycle 0..9, so each train batch holds at least one frog


def batch_dict(index: int) -> dict:
    rng = np.random.default_rng(index)
    data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
    labels = [(index * PER_BATCH + i) % 10 for i in range(PER_BATCH)]
    return {b"batch_label": f"batch {index}".encode(), b"labels": labels, b"data": data}


def write_cifar(parent: Path) -> dict[str, str]:
    """Write cifar-10-batches-py under ``parent``; return the files' md5s."""
    folder = parent / cifar10.FOLDER
    folder.mkdir(parents=True)
    names = [*cifar10.SPLITS["train"], *cifar10.SPLITS["test"]]
    for index, name in enumerate(names):
        (folder / name).write_bytes(pickle.dumps(batch_dict(index), protocol=4))
    meta = {b"label_names": [name.encode() for name in cifar10.CLASS_NAMES], b"num_cases_per_batch": PER_BATCH}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in names}


@pytest.fixture
def cache(isolated_cache) -> Path:
    return isolated_cache


@pytest.fixture
def local_cifar(tmp_path, monkeypatch) -> Path:
    """A small CIFAR directory whose files gankit treats as official."""
    root = tmp_path / "data"
    monkeypatch.setattr(cifar10, "FILE_MD5", write_cifar(root))
    return root


def load(cache: Path, split: str = "train", **params):
    return Cifar10(CifarParams(**params), DataContext(cache_dir=cache, warn=lambda message: None)).load(split)


def test_reads_the_official_layout_channel_planar(local_cifar, cache):
    data = load(cache, root=str(local_cifar), download=False)
    assert data.images.shape == (5 * PER_BATCH, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.spec.shape == (32, 32, 3) and data.spec.classes == 10
    first = batch_dict(0)[b"data"][3]
    assert data.images[3, 0, 0].tolist() == [first[0], first[1024], first[2048]]
    assert data.images[3, 1, 2, 2] == first[2048 + 32 + 2]
    assert data.labels[:12].tolist() == [i % 10 for i in range(12)]
    assert "cifar10 train" in data.source and str(local_cifar) in data.source
    assert len(load(cache, "test", root=str(local_cifar / cifar10.FOLDER), download=False).images) == PER_BATCH


def test_classes_and_limit(local_cifar, cache):
    frogs = load(cache, root=str(local_cifar), download=False, classes=["frog"])
    assert len(frogs.images) == 6 and set(frogs.labels.tolist()) == {6}
    assert "[frog]" in frogs.source and frogs.class_names[6] == "frog"
    two = load(cache, root=str(local_cifar), download=False, classes=["frog", "cat"], limit=3)
    assert len(two.images) == 3 and set(two.labels.tolist()) <= {3, 6}


def test_refuses_files_that_are_not_the_official_ones(tmp_path, cache):
    marker = tmp_path / "pwned"
    write_cifar(tmp_path)
    (tmp_path / cifar10.FOLDER / "data_batch_1").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(DataError, match="data_batch_1 is not the official CIFAR-10 file"):
        load(cache, root=str(tmp_path), download=False)
    assert not marker.exists()


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_the_unpickler_refuses_code_even_past_the_checksum(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": []}))
    with pytest.raises(DataError, match="refused to load posix.mkdir|refused to load os.mkdir"):
        cifar10.read_batch(path)
    assert not marker.exists()


class Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 strings, as the cPickle that made CIFAR-10 did."""

    def save_bytes(self, obj):
        size = len(obj)
        header = pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size)
        self.write(header + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes, str: save_str}


def test_reads_python2_pickles_like_the_official_ones(tmp_path):
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).__mod__(251).astype(np.uint8)
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump({"data": data, "labels": [6, 9], "batch_label": "training batch 1 of 5"})
    path = tmp_path / "data_batch_1"
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    images, labels = cifar10.read_batch(path)
    assert labels.tolist() == [6, 9]
    assert images[1, 0, 1].tolist() == [data[1, 1], data[1, 1025], data[1, 2049]]


def test_missing_files_and_a_bad_root_say_how_to_fix(tmp_path, cache):
    with pytest.raises(DataError, match="no CIFAR-10 train files in .*dataset.download = true"):
        load(cache, root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="is not a directory; fix dataset.root"):
        load(cache, root=str(tmp_path / "nowhere"))


def make_archive(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The official archive's layout, plus members that must never be extracted."""
    table = write_cifar(tmp_path / "src")
    archive = tmp_path / "serve" / cifar10.ARCHIVE
    archive.parent.mkdir(exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / cifar10.FOLDER, arcname=cifar10.FOLDER)
        evil = tarfile.TarInfo("../escaped")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return archive, table


def test_download_verifies_extracts_and_caches(tmp_path, cache, monkeypatch):
    archive, table = make_archive(tmp_path)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(cifar10, "FILE_MD5", table)
    with serve(archive.parent) as url:
        data = load(cache, mirrors=["http://127.0.0.1:9/nothing-here", url], classes=["frog"])
    assert len(data.images) == 6 and "downloaded" in data.source
    folder = cache / "cifar10" / cifar10.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == sorted(table)
    assert sorted(p.name for p in (cache / "cifar10").iterdir()) == [cifar10.FOLDER]
    assert not (cache / "escaped").exists() and not (tmp_path / "escaped").exists()
    again = load(cache, download=False, classes=["frog"])
    assert np.array_equal(again.images, data.images) and str(folder) in again.source


def test_download_with_a_wrong_checksum_leaves_nothing(tmp_path, cache):
    archive, _ = make_archive(tmp_path)
    with serve(archive.parent) as url, pytest.raises(DataError, match="checksum mismatch.*nothing was kept"):
        load(cache, mirrors=[url])
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_headline_recipe_trains_and_exports_in_colour(local_cifar, cache, tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, [
        "run", str(RECIPES / "dcgan_cifar_frog.toml"), "--runs-dir", str(runs),
        "--set", f"dataset.root={json.dumps(str(local_cifar))}", "--set", "dataset.download=false",
        "--set", "train.steps=2", "--set", "train.batch_size=3", "--set", "train.samples=4",
        "--set", "export.0.every=1", "--set", "backend.device=\"cpu\"",
    ])
    assert result.exit_code == 0, result.output
    run_dir = next(runs.iterdir())
    grids = sorted((run_dir / "samples").glob("*.png"))
    assert len(grids) == 2 and iio.imread(grids[-1]).shape == (2 + 2 * 34, 2 + 2 * 34, 3)
    assert iio.imread(run_dir / "progress.gif", index=0).shape[-1] in (3, 4)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"]["shape"] == [32, 32, 3] and "[frog]" in summary["data"]["source"]


def _backends() -> list:
    registry = load_registry()
    return [
        pytest.param(name, marks=pytest.mark.skipif(
            ("backend", name) not in registry.components, reason=f"the {name} backend is not registered yet"))
        for name in ("torch", "tensorflow")
    ]


@pytest.mark.parametrize("backend", _backends())
def test_tutorial_recipe_runs_on_each_backend(backend, local_cifar, cache, tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(main, [
        "run", str(RECIPES / "tutorials" / "keras_dcgan_cifar_frog.toml"), "--runs-dir", str(runs),
        "--set", f"dataset.root={json.dumps(str(local_cifar))}", "--set", "dataset.download=false",
        "--set", f"backend.use={backend}", "--set", "train.steps=2", "--set", "train.batch_size=3",
        "--set", "export.0.every=1",
    ])
    assert result.exit_code == 0, result.output
    run_dir = next(runs.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["parameters"] == {"generator": 6_264_579, "discriminator": 790_913}
    assert iio.imread(next((run_dir / "samples").glob("*.png"))).shape == (2 + 2 * 34, 2 + 5 * 34, 3)
