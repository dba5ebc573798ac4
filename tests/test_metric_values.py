"""The metrics give the papers' values: precision, recall, density and coverage on small
hand-made feature sets and against a literal transcription of their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from gankit.evaluation import EvalError, Features
from gankit.plugins import load_registry
from gankit_plugins import manifold
from gankit_plugins.manifold import coverage, density, precision, recall

SCORES = {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def scores(fake, real, k: int) -> dict[str, float]:
    return {name: score(np.asarray(fake, float), np.asarray(real, float), k) for name, score in SCORES.items()}


def column(*values) -> np.ndarray:
    return np.array(values, dtype=float)[:, None]


def test_identical_sets_score_one():
    real = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    for k in (1, 3, 5):
        assert scores(real, real, k) == pytest.approx({"precision": 1, "recall": 1, "density": 1, "coverage": 1},
                                                      abs=1e-9)


def test_far_apart_sets_score_zero():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) + 1000
    assert scores(fake, real, 3) == {"precision": 0, "recall": 0, "density": 0, "coverage": 0}


def test_fakes_from_half_the_modes_are_precise_but_recall_half():
    """Four tight real modes; the generated images are the real ones of two of them (a
    generator that dropped half the modes): every sample is good, half the data is missed."""
    rng = np.random.default_rng(2)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]])
    real = np.concatenate([centre + rng.normal(size=(50, 2)) for centre in centres])
    fake = real[:100]
    result = scores(fake, real, 3)
    assert result == pytest.approx({"precision": 1, "recall": 0.5, "density": 1, "coverage": 0.5}, abs=1e-9)


def test_one_dimensional_sets_match_hand_computation():
    """real 0, 1, 3, 7 and generated 1, 2, 12. k = 1: the real balls have radii 1, 1, 2, 4
    and the generated 1, 1, 10. 12 is in no real ball (precision 2/3), yet its wide ball
    holds 7 (recall 1: the outlier Naeem et al. meant density and coverage to resist).
    Density: 1 is strictly inside the ball of 1 only, 2 inside that of 3 only: 2 / (1 x 3).
    Coverage: 1 and 3 hold a generated point strictly inside their balls, 0 and 7 do not."""
    real, fake = column(0, 1, 3, 7), column(1, 2, 12)
    assert scores(fake, real, 1) == pytest.approx({"precision": 2 / 3, "recall": 1, "density": 2 / 3, "coverage": 0.5})
    # k = 2: real radii 3, 2, 3, 6. 1 is in the balls of 0, 1, 3 (not 7: 6 < 6 is false), 2 in
    # all four, 12 in that of 7: 8 / (2 x 3). Every real ball holds a generated point.
    assert scores(fake, real, 2) == pytest.approx({"precision": 1, "recall": 1, "density": 4 / 3, "coverage": 1})


def definitions(fake: np.ndarray, real: np.ndarray, k: int) -> dict[str, float]:
    """The papers' formulas, written out with whole distance matrices."""
    from scipy.spatial.distance import cdist

    def radius(points):
        return np.sort(cdist(points, points), axis=1)[:, k]

    between = cdist(fake, real)
    real_radii, fake_radii = radius(real), radius(fake)
    return {"precision": (between <= real_radii[None, :]).any(axis=1).mean(),
            "recall": (between.T <= fake_radii[None, :]).any(axis=1).mean(),
            "density": (between < real_radii[None, :]).sum() / (k * len(fake)),
            "coverage": (between.min(axis=0) < real_radii).mean()}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_block_by_block_distances_give_the_definitions(k, monkeypatch):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(k)
    real = rng.normal(size=(240, 16))
    fake = 0.8 * rng.normal(size=(170, 16)) + 0.3
    monkeypatch.setattr(manifold, "BLOCK_BYTES", 8 * 240 * 7)  # blocks of 7 rows, the last one shorter
    assert scores(fake, real, k) == pytest.approx(definitions(fake, real, k), abs=1e-12)


def test_the_four_are_bundled_metric_plugins_with_their_papers_k():
    registry = load_registry()
    rng = np.random.default_rng(3)
    real = Features(rng.normal(size=(60, 4)).astype(np.float32), np.zeros((60, 2), np.float32))
    fake = Features(rng.normal(size=(40, 4)).astype(np.float32), np.zeros((40, 2), np.float32))
    for name, k in (("precision", 3), ("recall", 3), ("density", 5), ("coverage", 5)):
        component = registry.get("metric", name)
        assert component.provider == "builtin" and component.requires == ()
        metric = component.factory(component.params())
        assert metric.uses_real and metric.higher_is_better and metric.describe()["k"] == k
        assert metric.compute(fake, real, 0) == {name: pytest.approx(SCORES[name](fake.features, real.features, k))}


def test_too_few_images_for_k_is_one_line():
    with pytest.raises(EvalError, match=r"^k = 5 needs more than 5 real images \(got 5\); lower k or score more"):
        density(np.zeros((10, 2)), np.random.default_rng(0).normal(size=(5, 2)), 5)
    with pytest.raises(EvalError, match="needs more than 3 generated images"):
        recall(np.zeros((3, 2)), np.zeros((10, 2)), 3)


@pytest.mark.parametrize("offset, spread", [(0.0, 1.0), (5.0, 1.0), (50.0, 3.0)])
def test_the_frechet_distance_equals_torchmetrics_and_the_sqrtm_formula(offset, spread):
    """On random features, near and far apart, with means near and far from 0 (where a
    float32 mean alone would be off by 2e-6 of the score)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_fidelity")
    pytest.importorskip("torchmetrics")
    from scipy import linalg
    from torchmetrics.image.fid import FrechetInceptionDistance

    from gankit_plugins.metrics import Fid

    class Identity(torch.nn.Module):
        num_features = 32

        def forward(self, features):
            return features

    rng = np.random.default_rng(int(offset))
    real = (offset + spread * rng.normal(size=(1500, 32))).astype(np.float32)
    for fake in [(offset + spread * rng.normal(size=(1200, 32))).astype(np.float32),
                 (offset + rng.normal(size=(1200, 32)) @ rng.normal(scale=0.4, size=(32, 32)) + 0.5).astype(np.float32)]:
        ours = Fid(None).compute(Features(fake, fake[:, :2]), Features(real, real[:, :2]), seed=0)["fid"]
        theirs = FrechetInceptionDistance(feature=Identity())
        theirs.update(torch.from_numpy(real).double(), real=True)
        theirs.update(torch.from_numpy(fake).double(), real=False)
        assert ours == pytest.approx(float(theirs.compute()), rel=1e-6)
        means = [x.astype(np.float64).mean(axis=0) for x in (fake, real)]
        covariances = [np.cov(x.astype(np.float64), rowvar=False) for x in (fake, real)]
        formula = (np.sum((means[0] - means[1]) ** 2) + np.trace(covariances[0]) + np.trace(covariances[1])
                   - 2 * np.trace(linalg.sqrtm(covariances[0] @ covariances[1]).real))
        assert ours == pytest.approx(formula, rel=1e-6)
