"""``check_dataset``: a dataset's splits are what ``register_datasets`` promises."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from gankit.data import DataContext, ImageData
from gankit.plugins import load_registry
from gankit.registry import Registry
from gankit.testing.common import component, validated


def check_dataset(name: str, params: dict[str, Any] | None = None, *, splits: Iterable[str] = ("train",),
                  context: DataContext | None = None, registry: Registry | None = None) -> dict[str, ImageData]:
    """Load each of ``splits`` of dataset ``name`` and check it is what the hook promises:
    an ``ImageData`` of uint8 (N, H, W, C) images with C 1 or 3, one int label each (in
    range when the classes are named), the same image size in every split."""
    registry = registry or load_registry()
    found = component(registry, "dataset", name)
    context = context or DataContext(warn=lambda message: None, info=lambda message: None)
    dataset = found.factory(validated(found, params), context)
    assert callable(getattr(dataset, "load", None)), f"dataset {name!r}: its factory's object has no load(split)"
    loaded = {}
    for split in splits:
        data = dataset.load(split)
        assert isinstance(data, ImageData), f"load({split!r}) returned {type(data).__name__}, not gankit.data.ImageData"
        images, labels = data.images, data.labels
        assert images.dtype == np.uint8 and images.ndim == 4, f"{split}: images {images.dtype} {images.shape}"
        assert len(images) > 0 and images.shape[3] in (1, 3), f"{split}: images of shape {images.shape}"
        assert np.issubdtype(np.asarray(labels).dtype, np.integer) and len(labels) == len(images), \
            f"{split}: labels {np.asarray(labels).dtype} {np.shape(labels)} for {len(images)} images"
        if data.class_names:
            assert ((labels >= -1) & (labels < len(data.class_names))).all(), \
                f"{split}: labels outside -1..{len(data.class_names) - 1}"
        loaded[split] = data
    shapes = {split: data.images.shape[1:] for split, data in loaded.items()}
    assert len(set(shapes.values())) <= 1, f"the splits' images differ in size: {shapes}"
    return loaded
