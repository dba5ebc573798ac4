"""The standard feature extractor for FID, KID and IS: InceptionV3 with the TensorFlow
2015-12-05 weights that scores have been reported with since the FID paper, run by
torch-fidelity (which also resizes to 299x299 exactly as TensorFlow 1.x did).

The weights file comes from, first match wins: ``weights`` (``--features inception:weights=PATH``)
or ``$GANKIT_INCEPTION_WEIGHTS``; the cache (``$GANKIT_CACHE/inception/``); a download into
the cache. Wherever it comes from it must have the official sha256, so every number gankit
reports with this extractor comes from the same network (and the file, which torch-fidelity
unpickles, is known before it is loaded).
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field

from gankit.data import DataError, download, sha256_of
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np

    from gankit.evaluation import Features

FILE_NAME = "weights-inception-2015-12-05-6726825d.pth"
URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + FILE_NAME
SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
"""torch-fidelity's file (95,628,359 bytes); its name carries the first 8 hex digits, as
torch.hub names files, and this full digest is the one published records of the file give."""
BATCH = 50


class InceptionParams(Params):
    weights: Optional[str] = Field(None, description=f"the {FILE_NAME} file (default: $GANKIT_INCEPTION_WEIGHTS, else the cache)")
    download: bool = Field(True, description="download into the cache when the file is not found")
    urls: list[str] = Field(default_factory=lambda: [URL], min_length=1, description="where to download from, in order")


def _verify(path: Path, sha256: str, fix: str) -> Path:
    actual = sha256_of(path)
    if actual != sha256:
        raise DataError(f"{path} has sha256 {actual}, not that of the standard FID Inception weights ({sha256}); {fix}")
    return path


def locate_weights(params: InceptionParams, cache_dir: Path, *, file_name: str | None = None,
                   sha256: str | None = None) -> Path:
    """The verified weights file: given, cached, or downloaded into the cache (the official
    file unless tests name another)."""
    file_name, sha256 = file_name or FILE_NAME, sha256 or SHA256
    cached = cache_dir / "inception" / file_name
    given = params.weights or os.environ.get("GANKIT_INCEPTION_WEIGHTS")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise DataError(f"Inception weights {path} not found; "
                            "check --features inception:weights=PATH or $GANKIT_INCEPTION_WEIGHTS")
        return _verify(path, sha256, "use the official file")
    if cached.is_file():
        return _verify(cached, sha256, "delete it and run again to download it afresh")
    if not params.download:
        why = "downloads are off"
    else:
        errors = []
        for url in params.urls:
            try:
                return download(url, cached, sha256=sha256)
            except DataError as error:
                errors.append(str(error))
        why = "; ".join(errors)
    raise DataError(
        f"no Inception weights at {cached} ({why}); put {file_name} (sha256 {sha256}, from {URL}) at that path, "
        "or pass --features inception:weights=PATH (or set GANKIT_INCEPTION_WEIGHTS), "
        "or use --features domain, which needs no download"
    )


class InceptionExtractor:
    def __init__(self, params: InceptionParams, context):
        self.path = locate_weights(params, context.cache_dir)
        import torch
        from torch_fidelity import FeatureExtractorInceptionV3

        self.torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with torch.random.fork_rng(devices=[]):  # building the layers draws initial weights; training may be running
            self.network = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.path)
            ).to(self.device)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "inception",
            "weights": str(self.path),
            "weights_sha256": SHA256,
            "network": "InceptionV3, TensorFlow graph of 2015-12-05, as ported by torch-fidelity",
            "features": "pool3, 2048 dims",
            "logits": "logits_unbiased, 1008 classes",
            "input": "uint8 RGB (grey repeated to 3 channels), resized to 299x299 bilinear as TensorFlow 1.x did",
            "resize": "bilinear to 299x299, as TensorFlow 1.x did (torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x)",
            "library": f"torch-fidelity {metadata.version('torch-fidelity')}",
            "torch": self.torch.__version__,
            "device": self.device.type,
        }

    def extract(self, images: np.ndarray) -> Features:
        import numpy as np

        from gankit.evaluation import Features

        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(f"the inception extractor takes grey or RGB images, got shape {images.shape}")
        features, logits = [], []
        with self.torch.no_grad():
            for start in range(0, len(images), BATCH):
                batch = self.torch.from_numpy(np.ascontiguousarray(images[start:start + BATCH])).permute(0, 3, 1, 2)
                batch = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
                pooled, scores = self.network(batch.contiguous().to(self.device))
                features.append(pooled.cpu().numpy())
                logits.append(scores.cpu().numpy())
        return Features(np.concatenate(features).astype(np.float32), np.concatenate(logits).astype(np.float32))
