"""A feature extractor that needs no download: a small CNN classifier trained once on the
run's own labelled training split and cached (safetensors) by that data's sha256. Its
penultimate layer gives the features (FID, KID), its class logits the Inception Score.

Scores are comparable between runs scored against the same data (same checksum, hence the
same classifier), not with published Inception numbers. Training takes seconds to a minute
on a CPU and leaves torch's global random state as it was, so it can run mid-training.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import Field

from gankit.data import DataError, sha256_of
from gankit.files import write_bytes, write_json
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np

    from gankit.evaluation import Features

DESIGN = 1
"""Bump when the network or its training changes, so that cached classifiers are retrained."""
NETWORK = ("conv 16 5x5, 32 3x3, 64 3x3, each stride 2 and ReLU -> 4x4 average pool -> dense 128 + ReLU "
           "(the features) -> dense, one logit per class")
HELD_OUT = 0.1
BATCH = 500


class DomainParams(Params):
    steps: int = Field(600, ge=1, le=100_000, description="training steps of the classifier (Adam, lr 1e-3)")
    batch_size: int = Field(128, ge=8, le=4096)
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the classifier's initialisation and batches")


def _network(channels: int, classes: int, seed: int):
    """The classifier, initialised from ``seed`` without touching torch's global random state."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(channels, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, 128), nn.ReLU(),
            nn.Linear(128, classes),
        )


def _scaled(images: np.ndarray):
    """uint8 (N, H, W, C) -> float NCHW in [-1, 1], as GAN generators output them."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _train(params: DomainParams, images: np.ndarray, targets: np.ndarray, classes: int):
    """The trained network, its accuracy on a held-out tenth of the data, and the scale
    that gives the training images' features a mean square of 1 (so that FID and KID come
    out in the ranges familiar from Inception features)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(params.seed)
    order = rng.permutation(len(images))
    held = order[: max(1, int(len(images) * HELD_OUT))]
    train = order[len(held):] if len(order) > len(held) else order
    model = _network(images.shape[-1], classes, params.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    labels = torch.from_numpy(targets)
    model.train()
    for _ in range(params.steps):
        batch = rng.choice(train, min(params.batch_size, len(train)), replace=False)
        loss = F.cross_entropy(model(_scaled(images[batch])), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(_scaled(images[held[i:i + BATCH]])).argmax(1) for i in range(0, len(held), BATCH)])
        sample = images[np.sort(train[:10_000])]
        hidden = torch.cat([model[:-1](_scaled(sample[i:i + BATCH])) for i in range(0, len(sample), BATCH)])
    return model, float((predicted == labels[held]).float().mean()), float(hidden.pow(2).mean().sqrt())


class DomainExtractor:
    def __init__(self, params: DomainParams, context):
        import numpy as np
        import torch
        from safetensors.torch import save

        self.torch = torch
        data = context.training_data()
        labelled = data.labels >= 0
        classes = np.unique(data.labels[labelled])
        if len(classes) < 2:
            raise DataError(
                f"the domain extractor trains a classifier on the training labels, and {data.source or 'this data'} "
                f"has {len(classes)} labelled class(es); use --features inception"
            )
        from gankit.evaluation import data_sha256

        checksum = data_sha256(data)
        key = f"{checksum[:24]}-d{DESIGN}-s{params.steps}-b{params.batch_size}-r{params.seed}"
        folder = context.cache_dir / "domain"
        self.weights_path, meta_path = folder / f"{key}.safetensors", folder / f"{key}.json"
        images = data.images[labelled]
        if self.weights_path.is_file() and meta_path.is_file():
            try:
                self._load(meta_path, data.images.shape[-1], params.seed)
            except Exception as error:  # whatever a damaged file makes json, safetensors or torch raise
                context.warn(f"the cached domain classifier {self.weights_path} is damaged "
                             f"({type(error).__name__}: {error}); training it again")
                self.weights_path.unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
        if not (self.weights_path.is_file() and meta_path.is_file()):
            context.info(f"training the domain classifier on {len(images):,} images of {data.source} "
                         f"(once; cached in {folder})")
            targets = np.searchsorted(classes, data.labels[labelled]).astype(np.int64)
            model, accuracy, scale = _train(params, images, targets, len(classes))
            write_bytes(self.weights_path, save({k: v.contiguous() for k, v in model.state_dict().items()}))
            write_json(meta_path, {"held_out_accuracy": round(accuracy, 4), "classes": classes.tolist(),
                                   "feature_scale": scale, "weights_sha256": sha256_of(self.weights_path)})
            self._load(meta_path, data.images.shape[-1], params.seed)
        self.shape = data.images.shape[1:]
        self.description = {
            "name": "domain",
            "weights": str(self.weights_path),
            "weights_sha256": sha256_of(self.weights_path),
            "network": NETWORK,
            "features": f"the 128 penultimate activations divided by {self.meta['feature_scale']:.6g} "
                        "(their root mean square over up to 10,000 training images)",
            "logits": f"{len(self.meta['classes'])} classes",
            "input": "uint8 scaled to [-1, 1], at the data's own size and channels",
            "resize": "none: the data's own size",
            "trained_on": {"source": data.source, "sha256": checksum, "images": int(len(images))},
            "training": {"design": DESIGN, "optimizer": "adam, lr 1e-3", **params.model_dump(),
                         "held_out": f"{HELD_OUT:.0%} of the images, accuracy {self.meta['held_out_accuracy']}"},
            "torch": torch.__version__,
        }

    def _load(self, meta_path, channels: int, seed: int) -> None:
        """The cached classifier; raises if a file is damaged (a checksum that differs, a
        file that does not parse or weights that do not fit)."""
        from safetensors.torch import load

        self.meta = json.loads(meta_path.read_text())
        recorded = self.meta.get("weights_sha256")
        if recorded is not None and recorded != sha256_of(self.weights_path):
            raise ValueError("its sha256 differs from the one recorded when it was trained")
        self.class_labels = self.meta["classes"]  # the label of each logit, for a conditional run's class accuracy
        self.model = _network(channels, len(self.meta["classes"]), seed)
        self.model.load_state_dict(load(self.weights_path.read_bytes()))
        self.model.eval()

    def describe(self) -> dict[str, Any]:
        return self.description

    def differentiable(self, backend: str):
        """The features (as ``extract`` gives them) as a differentiable function of that
        backend's image tensors in [-1, 1], or None where it has none."""
        from gankit_plugins.features.domain_graph import tensorflow_features, torch_features

        scale = self.meta["feature_scale"]
        if backend == "torch":
            return torch_features(self.model, scale)
        if backend == "tensorflow":
            return tensorflow_features(self.model, scale, self.shape[:2])
        return None

    def extract(self, images: np.ndarray) -> Features:
        import numpy as np

        from gankit.evaluation import Features

        if images.shape[1:] != self.shape:
            raise DataError(f"the domain classifier was trained on {self.shape} images, got {images.shape[1:]}")
        features, logits = [], []
        with self.torch.no_grad():
            for start in range(0, len(images), BATCH):
                hidden = self.model[:-1](_scaled(images[start:start + BATCH]))
                features.append(hidden.numpy() / self.meta["feature_scale"])
                logits.append(self.model[-1](hidden).numpy())
        return Features(np.concatenate(features), np.concatenate(logits))
