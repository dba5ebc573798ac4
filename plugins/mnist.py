"""MNIST and Fashion-MNIST from the official IDX files.

Where the files come from, first match wins: ``root`` if given; the cache
(``$GANKIT_CACHE/<name>``); a download from the mirrors into the cache, each file checked
against its official md5. MNIST, offline with no copy, falls back to the real 10,000-image
test split shipped inside this package, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from pydantic import Field

from gankit import hookimpl
from gankit.data import DataContext, DataError, ImageData, download
from gankit.params import Params
from gankit_plugins.idx import read_idx

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class Source:
    name: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    class_names: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()


MNIST = Source(
    name="mnist",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    class_names=tuple(str(digit) for digit in range(10)),
)
FASHION_MNIST = Source(
    name="fashion-mnist",
    mirrors=("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
)


class IdxParams(Params):
    root: Optional[str] = Field(None, description="a directory holding the official .gz files")
    download: bool = Field(True, description="download into the cache when no local copy is found")
    mirrors: Optional[list[str]] = Field(None, min_length=1, description="base URLs to download from, in order")
    classes: Optional[list[int]] = Field(None, min_length=1, description="keep only these labels (0-9)")
    limit: Optional[int] = Field(None, ge=1, description="keep only the first N images (quick runs, tests)")


class IdxDataset:
    def __init__(self, source: Source, params: IdxParams, context: DataContext):
        self.source, self.params, self.context = source, params, context
        if params.classes and not all(0 <= c <= 9 for c in params.classes):
            raise DataError(f"classes must be labels 0-9, got {params.classes}")

    def _directories(self) -> list[Path]:
        found = [Path(self.params.root).expanduser()] if self.params.root else []
        return found + [self.context.cache_dir / self.source.name, *map(Path, self.source.system_dirs)]

    def _local(self, split: str) -> Optional[tuple[Path, Path]]:
        for directory in self._directories():
            paths = [directory / name for name in FILES[split]]
            if all(p.is_file() for p in paths):
                return paths[0], paths[1]
        if self.params.root and not Path(self.params.root).expanduser().is_dir():
            raise DataError(f"root {self.params.root!r} is not a directory; fix dataset.root or remove it")
        return None

    def _download(self, split: str) -> tuple[Path, Path]:
        target = self.context.cache_dir / self.source.name
        mirrors = self.params.mirrors or list(self.source.mirrors)
        paths = []
        for name in FILES[split]:
            errors = []
            for mirror in mirrors:
                try:
                    paths.append(download(mirror.rstrip("/") + "/" + name, target / name, md5=self.source.md5[name]))
                    break
                except DataError as error:
                    errors.append(str(error))
            else:
                raise DataError(errors[-1] if len(errors) == 1 else f"{len(errors)} mirrors failed, last: {errors[-1]}")
        return paths[0], paths[1]

    def _files(self, split: str) -> tuple[tuple[Path, Path], str]:
        local = self._local(split)
        if local:
            return local, str(local[0].parent)
        if not self.params.download:
            raise DataError(
                f"no {self.source.name} {split} files in {', '.join(map(str, self._directories()))}; "
                f"put {' and '.join(FILES[split])} in one of them or set dataset.download = true"
            )
        try:
            return self._download(split), "downloaded"
        except DataError as error:
            if self.source is MNIST:
                why = "checksum mismatch" if "checksum mismatch" in str(error) else "offline, or the mirrors are down"
                self.context.warn_once("mnist-bundled", f"MNIST {split} files are not here and could not be downloaded "
                                       f"({why}); using the 10,000-image MNIST test split shipped with gankit (said "
                                       "once on this machine; each run's summary.json keeps it)")
                bundled = resources.files("gankit_plugins") / "data" / "mnist"
                return (Path(bundled / FILES["test"][0]), Path(bundled / FILES["test"][1])), "bundled MNIST test split"
            raise DataError(f"{error}; or point dataset.root at a directory with the official files") from None

    def load(self, split: str = "train") -> ImageData:
        import numpy as np

        if split not in FILES:
            raise DataError(f"unknown split {split!r}; use train or test")
        (images_path, labels_path), origin = self._files(split)
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1).astype(np.int64)
        if len(images) != len(labels):
            raise DataError(f"{images_path}: {len(images)} images but {len(labels)} labels in {labels_path}")
        if self.params.classes:
            keep = np.isin(labels, self.params.classes)
            images, labels = images[keep], labels[keep]
        if self.params.limit:
            images, labels = images[: self.params.limit], labels[: self.params.limit]
        return ImageData(images[..., None].copy(), labels, f"{self.source.name} {split} ({origin})",
                         self.source.class_names)


@hookimpl
def register_datasets(register):
    register("mnist", lambda params, context: IdxDataset(MNIST, params, context), params=IdxParams,
             description="MNIST handwritten digits, 28x28 grey (60,000 train / 10,000 test)")
    register("fashion-mnist", lambda params, context: IdxDataset(FASHION_MNIST, params, context), params=IdxParams,
             description="Fashion-MNIST clothing, 28x28 grey (60,000 train / 10,000 test)")
