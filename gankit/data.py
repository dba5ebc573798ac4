"""What datasets give, framework-free, and the download helper they share.

Datasets hand backends uint8 arrays of shape (N, H, W, C); backends scale them to [-1, 1].
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from gankit.errors import GankitError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DataSpec", "ImageData", "Dataset", "DataError", "DataContext", "default_cache_dir", "sha256_of", "md5_of",
           "download", "fixed_labels", "even_labels"]


@dataclass(frozen=True)
class DataSpec:
    """The images' shape and, for labelled data, how many classes there are and their names."""

    height: int
    width: int
    channels: int
    classes: int = 0
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.class_names and len(self.class_names) != self.classes:
            raise ValueError(f"{self.classes} classes but {len(self.class_names)} class names")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def class_index(self, name: str) -> int:
        """The label of a class given by name or index; ValueError listing the known ones."""
        if name in self.class_names:
            return self.class_names.index(name)
        if name.isdigit() and int(name) < self.classes:
            return int(name)
        known = ", ".join(f"{i} {n}" if n != str(i) else n for i, n in enumerate(self.names()))
        raise ValueError(f"unknown class {name!r}; the known classes are {known}")

    def names(self) -> tuple[str, ...]:
        return self.class_names or tuple(str(i) for i in range(self.classes))


def fixed_labels(classes: int, samples: int) -> np.ndarray:
    """The labels of a conditional run's fixed-noise grid: one row per class, each of
    ``max(1, samples // classes)`` images."""
    import numpy as np

    return np.repeat(np.arange(classes, dtype=np.int64), max(1, samples // classes))


def even_labels(classes: int, count: int) -> np.ndarray:
    """``count`` labels covering every class as evenly as it divides, in class order."""
    import numpy as np

    return np.sort(np.arange(count, dtype=np.int64) % classes)


@dataclass
class ImageData:
    """uint8 images (N, H, W, C), int64 labels (N,) (-1 where unlabelled), and a note on
    where they came from (shown in summaries)."""

    images: np.ndarray
    labels: np.ndarray
    source: str = ""
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        import numpy as np

        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    @property
    def spec(self) -> DataSpec:
        _, h, w, c = self.images.shape
        return DataSpec(h, w, c, len(self.class_names), self.class_names)

    @property
    def labelled(self) -> bool:
        return bool(self.class_names) and bool(len(self.labels)) and int(self.labels.min()) >= 0


class Dataset(Protocol):
    """What a dataset plugin's factory returns."""

    def load(self, split: str) -> ImageData:
        """The images of ``split``, ``"train"`` or ``"test"``: uint8 (N, H, W, C) with C 1 or 3,
        and int64 labels (N,), -1 where unlabelled. A DataError saying how to fix it when
        they cannot be had (missing, corrupt, no network)."""


class DataError(GankitError):
    """The data cannot be had: missing, corrupt or unreadable. The message says how to fix it."""


def default_cache_dir() -> Path:
    """``$GANKIT_CACHE``, else ``$XDG_CACHE_HOME/gankit``, else ``~/.cache/gankit``."""
    if os.environ.get("GANKIT_CACHE"):
        return Path(os.environ["GANKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gankit"


@dataclass
class DataContext:
    """What a dataset plugin gets besides its parameters."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    """Where to keep downloads and anything made from them (``$GANKIT_CACHE``, else the user's cache)."""
    warn: Callable[[str], None] = print
    """Show a warning: one line the user should read."""
    info: Callable[[str], None] = print
    """Show progress (a download), one line."""
    warnings: list[str] = field(default_factory=list)
    """Every ``warn_once`` warning, shown or not (a run keeps what it was warned of in summary.json)."""

    def warn_once(self, key: str, message: str) -> None:
        """A warning that stays true on this machine until something changes there (no
        network: the bundled copy is used): shown the first time on this machine (a marker
        ``warned/<key>`` in the cache dir), kept in ``warnings`` every time."""
        self.warnings.append(message)
        marker = self.cache_dir / "warned" / key
        if marker.exists():
            return
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a cache that cannot be written: say it each time rather than never
        self.warn(message)


def _file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return _file_digest(path, "sha256")


def md5_of(path: Path) -> str:
    return _file_digest(path, "md5")


def download(url: str, destination: Path, *, md5: str | None = None, sha256: str | None = None,
             sha512: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``destination``, verifying its checksum (hex digits) before it appears there.

    The bytes go to a temporary file beside the destination, which is renamed into place
    only when complete and verified; an interrupted download or a checksum mismatch leaves
    nothing at ``destination``. Raises DataError on any failure.
    """
    import urllib.request

    algorithm, wanted = next(((name, digest) for name, digest in (("md5", md5), ("sha256", sha256), ("sha512", sha512))
                              if digest is not None), (None, None))
    if wanted is None:
        raise ValueError("download needs an md5, sha256 or sha512 checksum")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=destination.name + ".", suffix=".part", dir=destination.parent)
    partial_path = Path(partial)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            written = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                written += len(block)
        if expected is not None and written != int(expected):
            raise DataError(f"download of {url} was cut short ({written} of {expected} bytes); try again")
        actual = _file_digest(partial_path, algorithm)
        if actual != wanted:
            raise DataError(f"checksum mismatch for {url}: got {actual}, expected {wanted}; nothing was kept")
        os.replace(partial_path, destination)
        return destination
    except DataError:
        raise
    except OSError as error:
        raise DataError(f"could not download {url}: {error}") from None
    finally:
        partial_path.unlink(missing_ok=True)
