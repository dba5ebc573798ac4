"""Reading the IDX format that MNIST-style datasets ship in (optionally gzipped)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

from gankit.data import DataError

if TYPE_CHECKING:
    import numpy as np

_MAGIC = {3: 2051, 1: 2049}  # images (N, rows, cols), labels (N,)


def read_idx(path: Path, dims: int) -> np.ndarray:
    """The uint8 array in an IDX file with ``dims`` dimensions; DataError if it is not one."""
    import numpy as np

    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read ({error}); delete it and try again") from None
    header = 4 + 4 * dims
    if len(raw) < header or int.from_bytes(raw[:4], "big") != _MAGIC[dims]:
        raise DataError(f"{path}: not an IDX file with {dims} dimension(s); delete it and try again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)
