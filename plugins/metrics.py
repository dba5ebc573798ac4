"""FID, KID and the Inception Score, computed by torch-fidelity from the features of
whichever extractor the evaluation uses (``inception`` gives the standard numbers).

torch-fidelity's own functions do the arithmetic: the trace of the matrix square root of
the features' covariances (FID, from ``Features.mean_and_covariance()``, which a reference
file stores), the polynomial-kernel MMD over random subsets
(KID), the exponentiated KL divergence over splits (IS). torch is imported only when a
score is computed.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field

from gankit import hookimpl
from gankit.evaluation import EvalError, Features
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np


def _library() -> str:
    return f"torch-fidelity {metadata.version('torch-fidelity')}"


def _tensor(values: np.ndarray, dtype: str = "float32"):
    """float32, as torch-fidelity's own extractors give them, unless told otherwise."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))


class Fid:
    uses_real = True
    higher_is_better = False
    scores = ("fid",)

    def __init__(self, params: None):
        pass

    def describe(self) -> dict[str, Any]:
        return {"library": _library(), "function": "fid_statistics_to_metric",
                "statistics": "mean and covariance of the features, in float64"}

    def compute(self, fake, real, seed: int) -> dict[str, float]:
        return {"fid": _fid(fake, real)}


def _fid(fake: Features, real: Features) -> float:
    """torch-fidelity's Fréchet distance between the two sets' float64 statistics (a
    float32 mean is off by 1e-6 of the score when the features' mean is far from 0); a
    reference file's stored statistics are used as they are."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    statistics = [dict(zip(("mu", "sigma"), features.mean_and_covariance())) for features in (fake, real)]
    return float(fid_statistics_to_metric(*statistics, verbose=False)[KEY_METRIC_FID])


class IntraFid:
    """FID within each class: the generated images of class c against the real ones of class c."""

    uses_real = True
    higher_is_better = False
    scores = ("intra_fid", "intra_fid_*")

    def __init__(self, params: None):
        pass

    def describe(self) -> dict[str, Any]:
        return {"library": _library(), "function": "fid_statistics_to_metric, per class",
                "intra_fid": "the mean over the generated images' classes of each class's FID",
                "statistics": "mean and covariance of the features, in float64"}

    def compute(self, fake, real, seed: int) -> dict[str, float]:
        import numpy as np

        if fake.labels is None or real.labels is None:
            raise EvalError("intra_fid compares images class by class, and these have no classes: "
                            "score a conditional run, or leave intra_fid out")
        names = fake.class_names or real.class_names
        scores = {}
        for label in np.unique(fake.labels):
            name = names[label] if label < len(names) else str(label)
            generated, matching = fake.features[fake.labels == label], real.features[real.labels == label]
            if min(len(generated), len(matching)) < 2:
                raise EvalError(f"intra_fid: class {name!r} has {len(generated)} generated and {len(matching)} real "
                                "images, and FID needs at least 2 of each; score more images (-n)")
            scores[f"intra_fid_{re.sub(r'[^A-Za-z0-9]+', '_', name)}"] = _fid(
                Features(generated, fake.logits[fake.labels == label]), Features(matching, real.logits[real.labels == label]))
        return {"intra_fid": float(np.mean(list(scores.values()))), **scores}


class KidParams(Params):
    subsets: int = Field(100, ge=1, le=10_000, description="random subsets the MMD is averaged over")
    subset_size: int = Field(1000, ge=2, description="images per subset, capped at the smaller sample count")
    degree: int = Field(3, ge=1, le=10, description="of the polynomial kernel (x.y / dims + coef0) ** degree")
    coef0: float = Field(1.0, ge=0)


class Kid:
    uses_real = True
    higher_is_better = False
    scores = ("kid", "kid_std")

    def __init__(self, params: KidParams):
        self.params = params

    def describe(self) -> dict[str, Any]:
        return {"library": _library(), "function": "kid_features_to_metric", "kernel": "poly",
                "subset_size_used": "min(subset_size, generated count, real count)",
                "sampling": "subsets drawn with the evaluation seed",
                **self.params.model_dump()}

    def compute(self, fake, real, seed: int) -> dict[str, float]:
        from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

        size = min(self.params.subset_size, len(fake), len(real))
        result = kid_features_to_metric(
            _tensor(fake.features), _tensor(real.features), kid_subsets=self.params.subsets, kid_subset_size=size,
            kid_kernel="poly", kid_kernel_poly_degree=self.params.degree, kid_kernel_poly_gamma=None,
            kid_kernel_poly_coef0=self.params.coef0, rng_seed=seed, verbose=False,
        )
        return {"kid": result[KEY_METRIC_KID_MEAN], "kid_std": result[KEY_METRIC_KID_STD]}


class IsParams(Params):
    splits: int = Field(10, ge=1, le=1000, description="the score is averaged over this many splits")


class InceptionScore:
    uses_real = False
    higher_is_better = True
    scores = ("is", "is_std")

    def __init__(self, params: IsParams):
        self.params = params

    def describe(self) -> dict[str, Any]:
        return {"library": _library(), "function": "isc_features_to_metric", "sampling": "shuffled with the evaluation seed",
                "reads": "the extractor's logits", **self.params.model_dump()}

    def compute(self, fake, real: Optional[object], seed: int) -> dict[str, float]:
        from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

        result = isc_features_to_metric(_tensor(fake.logits), splits=self.params.splits, shuffle=True, rng_seed=seed)
        return {"is": result[KEY_METRIC_ISC_MEAN], "is_std": result[KEY_METRIC_ISC_STD]}


@hookimpl
def register_metrics(register):
    requires = ("torch", "torch_fidelity")
    register("fid", Fid, requires=requires, default=True,
             description="Frechet distance between generated and real features (lower is better)")
    register("intra_fid", IntraFid, requires=requires,
             description="FID of each class of a conditional run, and their mean (lower is better)")
    register("kid", Kid, params=KidParams, requires=requires, default=True,
             description="kernel distance between generated and real features, unbiased for small n (lower is better)")
    register("is", InceptionScore, params=IsParams, requires=requires, default=True,
             description="Inception Score: confident and varied class predictions (higher is better)")
