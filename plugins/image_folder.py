"""Your own images: every PNG, JPEG and WebP file under a folder, searched recursively.

Each image is turned upright (EXIF orientation), laid over white if it has transparency,
converted to grey or RGB, resized so that its short side is ``size`` and center-cropped
to ``size`` x ``size``; 16-bit greyscale is scaled to 8 bits. Hidden files and folders
are skipped; files that cannot be decoded, or that would need too much memory (more pixels
than Pillow's bound, or so long and thin that resizing would make more than
``MAX_RESIZED_PIXELS``), are skipped too, counted in the run's summary and named in a warning.

The first level of subfolders names the classes (``root/cat/*.png``, ``root/dog/*.png``:
classes cat and dog, in sorted order), which a conditional architecture draws; images
directly in ``root`` have no class.

Decoding a large folder is slow, so the decoded arrays are cached under
``$GANKIT_CACHE/image-folder``, keyed by every file's path, size and modification time
and by the parameters: change any image and the folder is decoded again (and the stale
copy removed). ``cache = false`` turns this off.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field

from gankit import hookimpl
from gankit.data import DataContext, DataError, ImageData
from gankit.files import write_bytes
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class ImageFolderParams(Params):
    root: str = Field(description="a folder of PNG, JPEG or WebP images (subfolders included)")
    size: int = Field(64, ge=4, le=1024, description="side of the square images, in pixels")
    channels: Literal[1, 3] = Field(3, description="1: greyscale, 3: RGB")
    limit: Optional[int] = Field(None, ge=1, description="keep only the first N readable images (sorted by path)")
    cache: bool = Field(True, description="keep the decoded images in the cache for the next run")


def image_files(root: Path) -> list[Path]:
    """Image files under ``root``, sorted, skipping hidden files and folders."""
    return sorted(
        path for path in root.rglob("*")
        if path.suffix.lower() in EXTENSIONS and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def classes_of(root: Path, files: list[Path]) -> tuple[tuple[str, ...], np.ndarray]:
    """The class names (first-level subfolders holding images, sorted) and each file's
    label (-1 for a file directly in ``root``)."""
    import numpy as np

    folders = [path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else None for path in files]
    names = tuple(sorted({folder for folder in folders if folder is not None}))
    return names, np.array([names.index(folder) if folder is not None else -1 for folder in folders], np.int64)


MAX_RESIZED_PIXELS = 1 << 24
"""The most pixels an image may have once its short side is resized to ``size`` (a long,
thin image would otherwise need gigabytes before it is cropped)."""


def check_size(width: int, height: int, size: int) -> None:
    """Raise ValueError for an image too large to decode, or too long and thin to resize."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ValueError(f"{width}x{height} pixels, more than the {Image.MAX_IMAGE_PIXELS:,} an image may have")
    scale = size / max(min(width, height), 1)
    resized = round(width * scale) * round(height * scale)
    if resized > MAX_RESIZED_PIXELS:
        raise ValueError(f"{width}x{height} pixels, an aspect ratio that would need {resized:,} pixels once resized "
                         f"to {size} (at most {MAX_RESIZED_PIXELS:,})")


def _to_8_bits(image):
    """16-bit greyscale ("I;16", "I") scaled to 8 bits; Pillow's convert would clip it to white."""
    import numpy as np
    from PIL import Image

    if not image.mode.startswith("I"):
        return image
    return Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 (size, size, channels); raises OSError/ValueError if unreadable
    or too large (``check_size``)."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        check_size(*image.size, size)
        image.draft("RGB" if channels == 3 else "L", (size, size))
        image = _to_8_bits(ImageOps.exif_transpose(image))
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
        image = image.convert("RGB" if channels == 3 else "L")
        scale = size / min(image.size)
        width, height = (max(size, round(side * scale)) for side in image.size)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.uint8).reshape(size, size, channels)


class ImageFolder:
    def __init__(self, params: ImageFolderParams, context: DataContext):
        self.params, self.context = params, context
        self.root = Path(params.root).expanduser()

    def _cache_path(self, files: list[Path]) -> Path:
        """``<folder and parameters>-<every file's path, size and mtime>.npz``"""
        setting = json.dumps(["v3", str(self.root.resolve()), self.params.size, self.params.channels, self.params.limit])
        contents = hashlib.sha256()
        for path in files:
            stat = path.stat()
            contents.update(f"{path.relative_to(self.root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        name = f"{hashlib.sha256(setting.encode()).hexdigest()[:16]}-{contents.hexdigest()[:16]}.npz"
        return self.context.cache_dir / "image-folder" / name

    def _store(self, path: Path, images: np.ndarray, skipped: list[str], kept: np.ndarray) -> None:
        """Write the cache file, replacing this folder's older ones; a failure only warns."""
        import numpy as np

        buffer = io.BytesIO()
        np.savez(buffer, images=images, skipped=np.array(skipped, dtype=str), kept=kept)
        try:
            write_bytes(path, buffer.getvalue())
            for old in path.parent.glob(path.name.split("-")[0] + "-*.npz"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError as error:
            self.context.warn(f"could not cache the decoded images in {path.parent} ({error}); they are decoded each run")

    def _decode_all(self, files: list[Path]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """The readable images, what was skipped, and the index in ``files`` of each image."""
        import numpy as np

        from PIL import Image

        unreadable = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)  # what Pillow raises
        images, skipped, kept = [], [], []
        for index, path in enumerate(files):
            if self.params.limit and len(images) == self.params.limit:
                break
            try:
                images.append(decode(path, self.params.size, self.params.channels))
                kept.append(index)
            except unreadable as error:
                skipped.append(f"{path.relative_to(self.root)} ({error})")
        shape = (0, self.params.size, self.params.size, self.params.channels)
        return (np.stack(images) if images else np.zeros(shape, np.uint8)), skipped, np.array(kept, np.int64)

    def _decoded(self, files: list[Path]) -> tuple[np.ndarray, list[str], np.ndarray]:
        import numpy as np

        cached = self._cache_path(files) if self.params.cache else None
        if cached and cached.is_file():
            try:
                with np.load(cached, allow_pickle=False) as stored:
                    return stored["images"], stored["skipped"].tolist(), stored["kept"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                self.context.warn(f"the cached images {cached} are damaged ({error}); decoding the folder again")
                cached.unlink(missing_ok=True)
        images, skipped, kept = self._decode_all(files)
        if cached and len(images):
            self._store(cached, images, skipped, kept)
        return images, skipped, kept

    def load(self, split: str = "train") -> ImageData:
        if split != "train":
            raise DataError(f"an image folder has only a train split, not {split!r}")
        if not self.root.is_dir():
            raise DataError(f"root {self.params.root!r} is not a directory; point dataset.root at a folder of images")
        files = image_files(self.root)
        if not files:
            raise DataError(
                f"no PNG, JPEG or WebP images in {self.root} (searched recursively); add some or fix dataset.root"
            )
        images, skipped, kept = self._decoded(files)
        if not len(images):
            raise DataError(f"none of the {len(files)} image files in {self.root} could be read, e.g. {skipped[0]}")
        if skipped:
            self.context.warn(f"skipped {len(skipped)} unreadable or oversized image(s) in {self.root}: "
                              f"{'; '.join(skipped[:5])}{'; ...' if len(skipped) > 5 else ''}")
        names, labels = classes_of(self.root, files)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        classes = f"; {len(names)} class(es): {shown}" if names else ""
        source = f"image-folder {self.root} ({len(images)} images, {len(skipped)} unreadable skipped{classes})"
        return ImageData(images, labels[kept], source, names)


@hookimpl
def register_datasets(register):
    register("image-folder", ImageFolder, params=ImageFolderParams, requires=("PIL",),
             description="your own PNG/JPEG/WebP images (recursive), resized and center-cropped to a square")
