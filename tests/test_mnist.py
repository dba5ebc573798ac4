"""The IDX loader, local directories, the verified download, and the offline fallback."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib

import numpy as np
import pytest

from conftest import BUNDLED_MNIST, real_mnist, write_idx
from gankit.data import DataContext, DataError, download
from gankit.plugins import load_registry
from httpserver import serve


def dataset(name="mnist", warnings=None, **params):
    component = load_registry().get("dataset", name)
    context = DataContext(warn=(warnings.append if warnings is not None else print))
    return component.factory(component.params(**params), context)


def test_reads_official_idx_files_from_a_local_directory(tiny_mnist):
    data = dataset(root=str(tiny_mnist), download=False).load("train")
    expected_images, expected_labels = real_mnist(256)
    assert data.images.shape == (256, 28, 28, 1) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images[..., 0], expected_images)
    np.testing.assert_array_equal(data.labels, expected_labels)
    assert data.spec.shape == (28, 28, 1) and data.spec.classes == 10


def test_classes_and_limit(tiny_mnist):
    data = dataset(root=str(tiny_mnist), download=False, classes=[3, 7], limit=10).load("train")
    assert len(data.images) == 10
    assert set(data.labels.tolist()) <= {3, 7}


def test_truncated_idx_file_is_a_clear_error(tmp_path, tiny_mnist):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes((tiny_mnist / name).read_bytes())
    raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="truncated"):
        dataset(root=str(tmp_path), download=False).load("train")


def test_not_an_idx_file_is_a_clear_error(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"hello world, not idx"))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"nope"))
    with pytest.raises(DataError, match="not an IDX file"):
        dataset(root=str(tmp_path), download=False).load("train")


def _mirror(tmp_path, images, labels):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    write_idx(mirror / "train-images-idx3-ubyte.gz", images)
    write_idx(mirror / "train-labels-idx1-ubyte.gz", labels)
    return mirror


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_verifies_the_official_checksum_then_caches(isolated_cache):
    """The official MNIST test files, served locally, pass the official md5 and are cached."""
    with serve(BUNDLED_MNIST) as url:
        data = dataset(mirrors=["http://127.0.0.1:9/", url]).load("test")  # first mirror is down
    assert data.images.shape == (10_000, 28, 28, 1)
    assert "downloaded" in data.source
    cached = isolated_cache / "mnist" / "t10k-images-idx3-ubyte.gz"
    assert cached.read_bytes() == (BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()
    again = dataset(mirrors=["http://127.0.0.1:9/"]).load("test")  # the cache answers, no server needed
    assert str(cached.parent) in again.source


def test_checksum_mismatch_keeps_nothing_and_falls_back_with_a_warning(tmp_path, isolated_cache):
    images, labels = real_mnist(64)
    mirror = _mirror(tmp_path, images, labels)
    warnings: list[str] = []
    with serve(mirror) as url:
        data = dataset(mirrors=[url], warnings=warnings).load("train")
    assert "checksum mismatch" in warnings[0] and "10,000-image MNIST test split" in warnings[0]
    assert len(data.images) == 10_000 and "bundled" in data.source
    assert not any((isolated_cache / "mnist").iterdir())


def test_fashion_mnist_offline_without_a_copy_is_a_clear_error(monkeypatch):
    from gankit_plugins import mnist

    monkeypatch.setattr(mnist, "FASHION_MNIST", dataclasses.replace(mnist.FASHION_MNIST, system_dirs=()))
    with pytest.raises(DataError, match="point dataset.root at a directory"):
        dataset("fashion-mnist", mirrors=["http://127.0.0.1:9/"]).load("train")


def test_download_keeps_nothing_when_interrupted(tmp_path):
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "file.bin").write_bytes(b"x" * 100_000)
    destination = tmp_path / "out" / "file.bin"
    with serve(tmp_path / "served", truncate=True) as url, pytest.raises(DataError):
        download(url + "file.bin", destination, md5="0" * 32)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_download_without_checksum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="checksum"):
        download("http://127.0.0.1:9/x", tmp_path / "x")


def test_download_with_matching_sha256(tmp_path):
    (tmp_path / "served").mkdir()
    payload = b"gankit" * 1000
    (tmp_path / "served" / "file.bin").write_bytes(payload)
    with serve(tmp_path / "served") as url:
        path = download(url + "file.bin", tmp_path / "file.bin", sha256=hashlib.sha256(payload).hexdigest())
    assert path.read_bytes() == payload


def test_the_offline_fallback_is_said_once_per_machine_in_one_line_and_kept_by_each_run(tmp_path, tiny_mnist):
    import json

    import tomli_w

    from conftest import cli, recipe_dict

    recipe = tmp_path / "offline.toml"
    table = recipe_dict(tiny_mnist, train={"steps": 2, "log_every": 1}, export=[])
    table["dataset"] = {"use": "mnist", "mirrors": ["http://127.0.0.1:9/"]}  # no copy, and no network
    recipe.write_text(tomli_w.dumps(table))
    runs = tmp_path / "runs"
    first, second = (cli("run", recipe, "--runs-dir", runs) for _ in range(2))
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    said = [line for line in first.output.splitlines() if "shipped with gankit" in line]
    assert len(said) == 1 and said[0].startswith("warning: MNIST train files are not here") and "http" not in said[0]
    assert "shipped with gankit" not in second.output, "said once on this machine"
    for run_dir in sorted(runs.iterdir()):
        warnings = json.loads((run_dir / "summary.json").read_text())["warnings"]
        assert len(warnings) == 1 and "10,000-image MNIST test split" in warnings[0], warnings
