"""Reference statistics: the real side of an evaluation, made once and kept in one .npz.

It holds the real images' features (the k-NN metrics and KID compare them one by one),
their mean and covariance in float64 (what FID reads, and what other tools' FID can read), logits and labels; a second real
sample of the same size, disjoint from the first, for the real-vs-real floor; and a JSON
``meta`` entry saying how all of it was made: the extractor's ``describe()``, the dataset,
split, count, seed and image shape. ``gankit stats`` writes one, and the cache of real
features (``cache_dir/eval/real/KEY.npz``) is the same file. Read with allow_pickle=False.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gankit.features import Features
from gankit.files import write_bytes

if TYPE_CHECKING:
    import numpy as np

FORMAT = "gankit-reference"
VERSION = 1
COMPARED = (("name", "extractor"), ("weights_sha256", "extractor weights (sha256)"), ("resize", "resize"))
"""What a reference must share with the evaluation using it: the extractor's describe() keys."""


class BadReference(Exception):
    """A file that is not a readable reference; the message says why, in one line."""


@dataclass(frozen=True)
class Reference:
    real: Features
    floor: Features | None
    """The disjoint second real sample; None when there were not enough real images (``meta["floor"]`` says why)."""
    meta: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["image"])


def _arrays(prefix: str, features: Features) -> dict[str, np.ndarray]:
    import numpy as np

    return {f"{prefix}features": features.features, f"{prefix}logits": features.logits,
            f"{prefix}labels": np.asarray(features.labels, np.int64)}


def write_reference(path: Path, reference: Reference) -> None:
    """Write ``reference`` to ``path`` atomically, with the features' mean and covariance."""
    import numpy as np

    mean, covariance = reference.real.mean_and_covariance()
    arrays = {**_arrays("", reference.real), "mean": mean, "covariance": covariance,
              "meta": np.array(json.dumps({"format": FORMAT, "version": VERSION, **reference.meta}))}
    if reference.floor is not None:
        arrays.update(_arrays("floor_", reference.floor))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def read_reference(path: Path) -> Reference:
    """The reference in ``path``; BadReference if it does not read as one."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as stored:
            if "meta" not in stored.files:
                raise BadReference("it holds no gankit metadata, so it is not a reference file")
            meta = json.loads(str(stored["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise BadReference("its metadata are not those of a gankit reference file")
            if meta.get("version") != VERSION:
                raise BadReference(f"it is version {meta.get('version')} of the format, and this gankit reads {VERSION}")
            real = Features(stored["features"], stored["logits"], stored["labels"],
                            moments=(stored["mean"], stored["covariance"]))
            floor = (Features(stored["floor_features"], stored["floor_logits"], stored["floor_labels"])
                     if "floor_features" in stored.files else None)
    except BadReference:
        raise
    except FileNotFoundError:
        raise BadReference("no such file") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise BadReference(f"damaged or not an .npz ({error})") from None
    if real.features.ndim != 2 or len(real.logits) != len(real) or len(real.labels) != len(real):
        raise BadReference("its arrays do not fit together (features, logits and labels of different counts)")
    mean, covariance = real.moments
    if mean.shape != real.features.shape[1:] or covariance.shape != 2 * real.features.shape[1:]:
        raise BadReference("its mean and covariance do not fit its features")
    return Reference(real, floor, meta)


def mismatch(reference: Reference, extractor: dict[str, Any], shape: tuple[int, ...] | None) -> str | None:
    """What differs between how ``reference`` was made and an evaluation with ``extractor``
    (its describe()) of images of ``shape`` (H, W, C), or None if nothing that matters does."""
    made = reference.meta.get("extractor", {})
    for key, what in COMPARED:
        if made.get(key) != extractor.get(key):
            return f"it was made with {what} {made.get(key)!r}, and this evaluation uses {extractor.get(key)!r}"
    if shape is not None and tuple(shape) != reference.shape:
        size = lambda s: "x".join(map(str, s))  # noqa: E731
        return (f"it was made from {size(reference.shape)} (height x width x channels) images, "
                f"and these are {size(shape)}")
    return None


def disjoint_subset(total: int, taken: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` sorted indices below ``total`` outside ``taken``, drawn with ``seed``."""
    import numpy as np

    rest = np.setdiff1d(np.arange(total), taken)
    return np.sort(np.random.default_rng([seed, 1]).choice(rest, count, replace=False))
