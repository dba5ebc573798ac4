"""Sample grids, written with imageio. Public: exporters use these too."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from gankit.files import write_bytes

if TYPE_CHECKING:
    import numpy as np

__all__ = ["grid", "png_bytes", "write_png", "write_npz"]


def grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile uint8 (N, H, W, C) images into one (rows*H, columns*W, C) image with a
    ``padding``-pixel black border, as torchvision's make_grid does."""
    import numpy as np

    count, height, width, channels = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * (height + padding) + padding, columns * (width + padding) + padding, channels), np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        canvas[top:top + height, left:left + width] = image
    return canvas


def png_bytes(image: np.ndarray) -> bytes:
    import imageio.v3 as iio

    if image.shape[-1] == 1:
        image = image[..., 0]
    buffer = io.BytesIO()
    iio.imwrite(buffer, image, extension=".png")
    return buffer.getvalue()


def write_png(path: Path, image: np.ndarray) -> None:
    write_bytes(path, png_bytes(image))


def write_npz(path: Path, images: np.ndarray, **arrays: np.ndarray) -> None:
    """``images`` (and any further named arrays, e.g. ``labels``) in one compressed .npz."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, **arrays)
    write_bytes(path, buffer.getvalue())
