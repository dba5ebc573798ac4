"""CIFAR-10 from the official python pickles (``cifar-10-batches-py``).

Where the files come from, first match wins: ``root`` if given (the
``cifar-10-batches-py`` folder or the folder holding it); the cache
(``$GANKIT_CACHE/cifar10``); a download of the official archive into the cache.

Unpickling is this dataset's only trust boundary, so a batch file is unpickled only after
its md5 matches the official file's (the figures torchvision checks, which the archive's
own md5 on the CIFAR page vouches for). A download is verified as an archive first, then
only the six expected regular files are read out of it under fixed names, verified, and
moved into the cache in one rename. As a second line of defence the unpickler refuses
every global except the three numpy needs to rebuild an array, so even a file that got
past the checksum cannot run code.
"""

from __future__ import annotations

import pickle
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field

from gankit import hookimpl
from gankit.data import DataContext, DataError, ImageData, download, md5_of
from gankit.files import atomic_directory
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ClassName = Literal[CLASS_NAMES]

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # https://www.cs.toronto.edu/~kriz/cifar.html
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
FILE_MD5 = {  # torchvision/datasets/cifar.py
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
SPLITS = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


class CifarParams(Params):
    root: Optional[str] = Field(None, description=f"a {FOLDER} folder (or the folder holding it) with the official files")
    download: bool = Field(True, description="download the official archive into the cache when no local copy is found")
    mirrors: Optional[list[str]] = Field(None, min_length=1, description=f"base URLs serving {ARCHIVE}, tried in order")
    classes: Optional[list[ClassName]] = Field(None, min_length=1, description="keep only these classes, e.g. [\"frog\"]")
    limit: Optional[int] = Field(None, ge=1, description="keep only the first N images (quick runs, tests)")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, numbers, bytes and numpy arrays; refuses every other global."""

    def find_class(self, module, name):
        import numpy as np

        reconstruct = np.zeros(0).__reduce__()[0]  # numpy.core (1.x) or numpy._core (2.x) .multiarray._reconstruct
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) and labels (N,) from one verified batch file."""
    import numpy as np

    try:
        with open(path, "rb") as handle:
            batch = _ArrayOnlyUnpickler(handle, encoding="bytes").load()
    except Exception as error:  # any unpickling failure means a bad file
        raise DataError(f"{path}: not a CIFAR-10 batch ({error}); delete it and try again") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise DataError(f"{path}: b'data' is not a uint8 N x 3072 array; delete it and try again")
    labels = np.asarray(labels if isinstance(labels, list) else [], dtype=np.int64)
    if len(labels) != len(data) or not np.all((labels >= 0) & (labels < 10)):
        raise DataError(f"{path}: b'labels' is not {len(data)} labels in 0-9; delete it and try again")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def verify(directory: Path, names: tuple[str, ...], fix: str) -> None:
    for name in names:
        actual = md5_of(directory / name)
        if actual != FILE_MD5[name]:
            raise DataError(
                f"{directory / name} is not the official CIFAR-10 file (md5 {actual}, expected {FILE_MD5[name]}); {fix}"
            )


class Cifar10:
    def __init__(self, params: CifarParams, context: DataContext):
        self.params, self.context = params, context
        self.cache = context.cache_dir / "cifar10"

    def _candidates(self) -> list[Path]:
        found = []
        if self.params.root:
            root = Path(self.params.root).expanduser()
            if not root.is_dir():
                raise DataError(f"root {self.params.root!r} is not a directory; fix dataset.root or remove it")
            found += [root / FOLDER, root]
        return found + [self.cache / FOLDER]

    def _local(self, names: tuple[str, ...]) -> Optional[Path]:
        for directory in self._candidates():
            if all((directory / name).is_file() for name in names):
                return directory
        return None

    def _download(self) -> Path:
        errors = []
        for mirror in self.params.mirrors or list(MIRRORS):
            url = mirror.rstrip("/") + "/" + ARCHIVE
            try:
                archive = download(url, self.cache / ARCHIVE, md5=ARCHIVE_MD5)
                break
            except DataError as error:
                errors.append(str(error))
        else:
            raise DataError(f"{'; '.join(errors)}; or point dataset.root at a {FOLDER} folder")
        try:
            return self._extract(archive)
        finally:
            archive.unlink(missing_ok=True)

    def _extract(self, archive: Path) -> Path:
        """Read the six batch files out of the verified archive into ``cache/FOLDER``."""
        target = self.cache / FOLDER
        try:
            with atomic_directory(target) as staging, tarfile.open(archive, "r:gz") as tar:
                for name in FILE_MD5:
                    member = tar.getmember(f"{FOLDER}/{name}")  # KeyError if missing
                    if not member.isreg():
                        raise DataError(f"{archive}: {member.name} is not a regular file")
                    with tar.extractfile(member) as source, open(staging / name, "wb") as out:
                        shutil.copyfileobj(source, out)
                verify(staging, tuple(FILE_MD5), f"{ARCHIVE} passed its checksum but holds other files; please report this")
            return target
        except (KeyError, tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise DataError(f"{archive}: cannot extract ({error}); delete it and try again") from None

    def _directory(self, split: str) -> tuple[Path, str]:
        names = SPLITS[split]
        local = self._local(names)
        if local:
            return local, str(local)
        if not self.params.download:
            places = ", ".join(map(str, self._candidates()))
            raise DataError(f"no CIFAR-10 {split} files in {places}; put {FOLDER} there or set dataset.download = true")
        return self._download(), "downloaded"

    def load(self, split: str = "train") -> ImageData:
        import numpy as np

        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use train or test")
        directory, origin = self._directory(split)
        in_cache = directory == self.cache / FOLDER
        verify(directory, SPLITS[split], f"delete {directory} to download it again" if in_cache
               else f"use the files from the official {ARCHIVE}, or remove dataset.root to download them")
        parts = [read_batch(directory / name) for name in SPLITS[split]]
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([labels for _, labels in parts])
        chosen = ""
        if self.params.classes:
            keep = np.isin(labels, [CLASS_NAMES.index(name) for name in self.params.classes])
            images, labels = images[keep], labels[keep]
            chosen = f" [{', '.join(self.params.classes)}]"
        if self.params.limit:
            images, labels = images[: self.params.limit], labels[: self.params.limit]
        if not len(images):
            raise DataError(f"no CIFAR-10 {split} images{chosen} in {directory}; check dataset.classes")
        return ImageData(np.ascontiguousarray(images), labels, f"cifar10 {split}{chosen} ({origin})", CLASS_NAMES)


@hookimpl
def register_datasets(register):
    register("cifar10", Cifar10, params=CifarParams,
             description="CIFAR-10, 32x32 colour in 10 classes (50,000 train / 10,000 test); classes = [\"frog\"]")
