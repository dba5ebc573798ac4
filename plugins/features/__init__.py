"""Feature extractors for metrics: ``inception``, the standard FID network, and ``domain``,
a small classifier trained on the run's own labelled data, which needs no download.
Both modules import torch only when an extractor is made."""

from __future__ import annotations

from gankit import hookimpl
from gankit_plugins.features.domain import DomainExtractor, DomainParams
from gankit_plugins.features.inception import InceptionExtractor, InceptionParams


@hookimpl
def register_feature_extractors(register):
    register("inception", InceptionExtractor, params=InceptionParams, requires=("torch", "torch_fidelity"),
             description="InceptionV3 with the standard FID weights (2015-12-05, sha256-checked); comparable with papers")
    register("domain", DomainExtractor, params=DomainParams, requires=("torch", "safetensors"), default=True,
             description="a small CNN trained once on the dataset's labelled train split; no download, fast on CPU")
