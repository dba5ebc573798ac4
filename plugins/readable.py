"""The readable share: how many generated images the extractor's classifier assigns to one
class with probability at least ``threshold`` (0.9), beside the same share of the real
images they are compared with (its ceiling), and how evenly the generated images spread
over the classes.

With the ``domain`` extractor (a classifier of the run's own classes) this answers a
newcomer's question, "how many of these are digits?", in a number: a blurred or hybrid
image gets no confident class. With ``inception`` it is the share of images ImageNet's
classifier is sure of, which means little for digits. numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from gankit import hookimpl
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np

    from gankit.evaluation import Features


class ReadableParams(Params):
    threshold: float = Field(0.9, gt=0, lt=1, description="the class probability an image must reach to count as readable")


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over each row, computed stably in float64."""
    import numpy as np

    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class Readable:
    uses_real = True
    higher_is_better = True
    scores = ("readable", "readable_real", "rarest_class_share")

    def __init__(self, params: ReadableParams):
        self.params = params

    def describe(self) -> dict[str, Any]:
        return {"function": "share of images whose largest softmax probability is at least the threshold",
                "readable_real": "the same share of the real images scored against",
                "rarest_class_share": "the share of generated images whose most probable class is the rarest one",
                **self.params.model_dump()}

    def share(self, features: Features) -> float:
        return float((probabilities(features.logits).max(axis=1) >= self.params.threshold).mean())

    def compute(self, fake: Features, real: Features | None, seed: int) -> dict[str, float]:
        import numpy as np

        classes = np.bincount(fake.logits.argmax(axis=1), minlength=fake.logits.shape[1])
        return {"readable": self.share(fake), "readable_real": self.share(real),
                "rarest_class_share": float(classes.min() / len(fake))}


@hookimpl
def register_metrics(register):
    register("readable", Readable, params=ReadableParams,
             description="share of images the classifier is sure of (>= 0.9), beside real images' share (higher is better)")
