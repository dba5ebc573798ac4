"""Sample grids and animations, written with imageio. Public: exporters use these too."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

from gankit.files import write_bytes

if TYPE_CHECKING:
    import numpy as np

__all__ = ["grid", "png_bytes", "write_png", "write_npz", "enlarged", "gif_bytes"]


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


def enlarged(frames: list[np.ndarray], min_width: int = 256, scale: int = 0) -> list[np.ndarray]:
    """``frames`` (H, W, ...) enlarged, nearest neighbour, by ``scale``, or (0) by the
    smallest whole factor that makes them at least ``min_width`` pixels wide."""
    scale = scale or max(1, -(-min_width // frames[0].shape[1]))
    return [frame.repeat(scale, axis=0).repeat(scale, axis=1) for frame in frames] if scale > 1 else list(frames)


def gif_bytes(frames: list[np.ndarray], duration: float | list[float], loop: int = 0) -> bytes:
    """uint8 frames, (H, W, C) or greyscale (H, W), as a GIF showing each for ``duration``
    milliseconds (or one duration per frame), played ``loop`` times (0: forever)."""
    import imageio.v3 as iio

    frames = [frame[..., 0] if frame.ndim == 3 and frame.shape[-1] == 1 else frame for frame in frames]
    if isinstance(duration, list) and len(frames) == 1:
        duration = duration[0]
    buffer = io.BytesIO()
    iio.imwrite(buffer, frames, extension=".gif", duration=duration, loop=loop)
    return buffer.getvalue()


def write_npz(path: Path, images: np.ndarray, **arrays: np.ndarray) -> None:
    """``images`` (and any further named arrays, e.g. ``labels``) in one compressed .npz."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, **arrays)
    write_bytes(path, buffer.getvalue())
