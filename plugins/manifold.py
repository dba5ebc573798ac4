"""Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al.
2020): the real and the generated features' manifolds estimated by k-nearest-neighbour
balls, which tell apart the two failures FID adds into one number. Poor samples lower
precision and density (generated images away from the real ones); missing modes lower
recall and coverage (real images no generated one comes near).

Each real image x has a ball of radius r_k(x), the distance to its k-th nearest other real
image, and likewise each generated image y. With N real and M generated images:

- precision = share of the y inside at least one real ball: ||y - x|| <= r_k(x)
- recall    = share of the x inside at least one generated ball: ||x - y|| <= r_k(y)
- density   = (1 / kM) * the number of (y, x) pairs with ||y - x|| < r_k(x)
- coverage  = share of the x whose own ball holds a y: min_y ||x - y|| < r_k(x)


``<=`` for precision and recall as Kynkäänniemi et al.'s code, ``<`` for density and
coverage as Naeem et al.'s (so that identical sets have a density of 1). numpy only.
Squared distances are computed in float64 a block of rows at a time as
||a||^2 + ||b||^2 - 2 a.b (BLAS, as both papers' code), so 10k x 10k features need about
64 MB at once, not 800; the few within rounding of a radius are computed again as
||a - b||^2, so that ties (an image and its copy) compare exactly as the definitions say.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import Field

from gankit import hookimpl
from gankit.evaluation import EvalError
from gankit.params import Params

if TYPE_CHECKING:
    import numpy as np

    from gankit.evaluation import Features

BLOCK_BYTES = 64 * 2**20
"""The most memory one block of distances takes."""
ROUNDING = 1e-12
"""How far, relative to ||a||^2 + ||b||^2, a squared distance computed with a.b may be off
(float64 rounding is about 1e-16 of it): closer than that to a radius, it is computed again."""


class PrecisionParams(Params):
    k: int = Field(3, ge=1, le=1000, description="the k-th nearest neighbour's distance is each image's ball radius")


class CoverageParams(Params):
    k: int = Field(5, ge=1, le=1000, description="the k-th nearest neighbour's distance is each real image's ball radius")


def _direct(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a - b||^2 for paired rows (any leading shape), summed in the same order for every pair."""
    import numpy as np

    difference = a - b
    return np.einsum("...i,...i->...", difference, difference)


class Blocks:
    """The squared distances from the rows of ``a`` to those of ``b``, a block of rows at a time."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        import numpy as np

        self.a, self.b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        self.squared_a, self.squared_b = (np.einsum("ij,ij->i", x, x) for x in (self.a, self.b))
        self.step = max(1, BLOCK_BYTES // (8 * max(1, len(self.b))))

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        """(rows, block): block[i, j] is the squared distance from a[rows][i] to b[j]."""
        for start in range(0, len(self.a), self.step):
            rows = slice(start, start + self.step)
            block = self.a[rows] @ self.b.T
            block *= -2
            block += self.squared_a[rows, None]
            block += self.squared_b[None, :]
            yield rows, block

    def settled(self, rows: slice, block: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """``block`` with its entries within rounding of ``thresholds`` (broadcast to it) computed directly."""
        import numpy as np

        slack = ROUNDING * (self.squared_a[rows].max(initial=0) + self.squared_b.max(initial=0))
        i, j = np.nonzero(np.abs(block - thresholds) <= slack)
        block[i, j] = _direct(self.a[rows][i], self.b[j])
        return block


def squared_radii(features: np.ndarray, k: int, what: str) -> np.ndarray:
    """Each row's squared distance to its k-th nearest other row (the (k+1)-th smallest,
    itself first), computed directly for the k + 1 nearest that the blocks find."""
    import numpy as np

    if len(features) <= k:
        raise EvalError(f"k = {k} needs more than {k} {what} images (got {len(features)}); lower k or score more images")
    blocks = Blocks(features, features)
    result = np.empty(len(features))
    for rows, block in blocks:
        nearest = np.argpartition(block, k, axis=1)[:, :k + 1]
        result[rows] = _direct(blocks.a[rows][:, None, :], blocks.a[nearest]).max(axis=1)
    return result


def _share_inside(points: np.ndarray, manifold: np.ndarray, k: int, what: str) -> float:
    """The share of ``points`` within the k-NN ball (<=) of at least one row of ``manifold``."""
    import numpy as np

    radii = squared_radii(manifold, k, what)[None, :]
    blocks = Blocks(points, manifold)
    inside = np.zeros(len(points), dtype=bool)
    for rows, block in blocks:
        inside[rows] = (blocks.settled(rows, block, radii) <= radii).any(axis=1)
    return float(inside.mean())


def precision(fake: np.ndarray, real: np.ndarray, k: int = 3) -> float:
    """The share of generated features inside the real manifold."""
    return _share_inside(fake, real, k, "real")


def recall(fake: np.ndarray, real: np.ndarray, k: int = 3) -> float:
    """The share of real features inside the generated manifold."""
    return _share_inside(real, fake, k, "generated")


def density(fake: np.ndarray, real: np.ndarray, k: int = 5) -> float:
    """How many real balls hold each generated feature, on average, over k."""
    radii = squared_radii(real, k, "real")[None, :]
    blocks = Blocks(fake, real)
    count = sum(int((blocks.settled(rows, block, radii) < radii).sum()) for rows, block in blocks)
    return count / (k * len(fake))


def coverage(fake: np.ndarray, real: np.ndarray, k: int = 5) -> float:
    """The share of real features whose own ball holds a generated one."""
    import numpy as np

    radii = squared_radii(real, k, "real")[:, None]
    blocks = Blocks(real, fake)
    covered = np.zeros(len(real), dtype=bool)
    for rows, block in blocks:
        covered[rows] = (blocks.settled(rows, block, radii[rows]) < radii[rows]).any(axis=1)
    return float(covered.mean())


KYNKAANNIEMI = "Kynkäänniemi et al. 2019, Improved Precision and Recall Metric for Assessing Generative Models"
NAEEM = "Naeem et al. 2020, Reliable Fidelity and Diversity Metrics for Generative Models"


@dataclass(frozen=True)
class Definition:
    """One of the four metrics: its score, where it is defined, the rule in words, and what it tells."""

    function: Callable[[np.ndarray, np.ndarray, int], float]
    """(fake features, real features, k) -> the score."""
    reference: str
    rule: str
    description: str
    params: type[Params]


DEFINITIONS = {
    "precision": Definition(precision, KYNKAANNIEMI,
                            "share of generated images within the k-NN ball (<=) of some real image",
                            "share of generated images near the real ones: sample quality (k = 3; higher is better)",
                            PrecisionParams),
    "recall": Definition(recall, KYNKAANNIEMI,
                         "share of real images within the k-NN ball (<=) of some generated image",
                         "share of real images near the generated ones: missing modes lower it (k = 3; higher is better)",
                         PrecisionParams),
    "density": Definition(density, NAEEM,
                          "real k-NN balls (<) holding each generated image, averaged and divided by k",
                          "like precision, robust to outlying real images; 1 for real-like samples, can exceed it (k = 5)",
                          CoverageParams),
    "coverage": Definition(coverage, NAEEM,
                           "share of real images whose k-NN ball (<) holds some generated image",
                           "share of real images with a generated one in their own neighbourhood (k = 5; higher is better)",
                           CoverageParams),
}


class ManifoldMetric:
    """Any of the four, named by ``name``."""

    uses_real = True
    higher_is_better = True

    def __init__(self, name: str, params: PrecisionParams | CoverageParams):
        self.name, self.definition, self.params = name, DEFINITIONS[name], params
        self.scores = (name,)

    def describe(self) -> dict[str, Any]:
        import numpy as np

        return {"library": f"numpy {np.__version__}", "function": self.definition.rule,
                "reference": self.definition.reference, "distance": "Euclidean, float64", **self.params.model_dump()}

    def compute(self, fake: Features, real: Features | None, seed: int) -> dict[str, float]:
        return {self.name: self.definition.function(fake.features, real.features, self.params.k)}


@hookimpl
def register_metrics(register):
    for name, definition in DEFINITIONS.items():
        register(name, partial(ManifoldMetric, name), params=definition.params, description=definition.description)
