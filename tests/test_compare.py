"""Seeds as a dimension and the ranking of configurations: runs that differ only in their
seed are grouped, scored as mean ± sd with a 95 % interval, and tested against the best."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomli_w

from conftest import cli, recipe_dict
from gankit.compare import compare, holm, welch_p

# Welch's t-test, the textbook example (Wikipedia's "Welch's t-test", example 1): t = -2.46,
# 24.99 degrees of freedom, two-sided p = 0.021.
WELCH_A = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WELCH_B = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]


def test_welch_gives_the_textbook_answer():
    assert welch_p(WELCH_A, WELCH_B) == pytest.approx(0.021, abs=5e-4)
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0 and welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0
    assert welch_p([1.0], [2.0, 3.0]) is None, "one seed cannot be tested"


def test_holm_multiplies_by_the_remaining_count_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def synthetic_run(root: Path, number: int, name: str, seed: int, score: float, lr: float = 2e-4,
                  status: str = "completed") -> Path:
    """A finished run directory as gankit leaves one, with ``score`` as its last fid."""
    run_dir = root / f"{number:05d}-{name}"
    run_dir.mkdir(parents=True)
    recipe = {"name": name, "seed": seed, "train": {"steps": 10, "lr_g": lr}, "eval": {"metrics": ["fid"]},
              "gankit": {"sweep": {"train.lr_g": lr, "seed": seed}}}
    (run_dir / "recipe.toml").write_text(tomli_w.dumps(recipe))
    (run_dir / "summary.json").write_text(json.dumps({"status": status}))
    scores = {"step": 10, "scores": {"fid": score}}
    (run_dir / "eval.json").write_text(json.dumps({"during_training": {
        "best_by": "fid, lower is better", "last": scores, "best": scores}}))
    return run_dir


def test_runs_group_by_configuration_and_rank_by_mean(tmp_path):
    a, b = WELCH_A[:5], WELCH_B[:5]
    for seed, (x, y) in enumerate(zip(a, b)):
        synthetic_run(tmp_path, 2 * seed, f"lr1-seed{seed}", seed, x, lr=1e-4)
        synthetic_run(tmp_path, 2 * seed + 1, f"lr2-seed{seed}", seed, y, lr=2e-4)
    synthetic_run(tmp_path, 99, "lr3-seed0", 0, 1.0, lr=3e-4, status="interrupted")
    comparison = compare([tmp_path])
    first, second = comparison.ranked
    assert first.settings == {"train.lr_g": 1e-4} and first.values == a and first.rank == 1
    assert first.mean == pytest.approx(sum(a) / 5)
    mean = sum(a) / 5
    assert first.sd == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in a) / 4))
    low, high = first.interval
    assert low < first.mean < high and high - first.mean == pytest.approx(2.776 * first.sd / math.sqrt(5), rel=1e-3)
    assert second.p_value == pytest.approx(welch_p(a, b)) and second.significant is (welch_p(a, b) < 0.05)
    assert [r.why for r in comparison.unscored] == ["it is interrupted, not completed"]

    result = cli("compare", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["configurations"]
    assert [c["n"] for c in shown] == [5, 5] and shown[0]["seeds"] == [0, 1, 2, 3, 4]


def test_compare_without_eval_or_runs_is_one_line(tmp_path):
    run_dir = synthetic_run(tmp_path, 0, "plain", 0, 1.0)
    (run_dir / "recipe.toml").write_text(tomli_w.dumps({"name": "plain", "seed": 0}))
    result = cli("compare", tmp_path)
    assert result.exit_code == 2 and "has no [eval] table" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    result = cli("compare", tmp_path / "nowhere")
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.parametrize("seeds, expected", [("0-2", [0, 1, 2]), ("0,3,5-6", [0, 3, 5, 6])])
def test_seeds_parse(seeds, expected):
    from gankit.recipe import parse_seeds

    assert parse_seeds(seeds) == expected


@pytest.mark.parametrize("seeds, expected", [("2-0", "runs the wrong way"), ("a", "is not a seed"), (",", "no seeds")])
def test_bad_seeds_are_one_line(tmp_path, tiny_mnist, seeds, expected):
    recipe = tmp_path / "r.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist)))
    result = cli("run", recipe, "--seeds", seeds, "--dry-run")
    assert result.exit_code == 2 and expected in result.output, result.output


def test_a_batch_over_seeds_ranks_its_configurations(tmp_path, tiny_mnist, scorer_installed):
    """eval_seed scores each run by its eval.seed: two configurations (eval.seed 1 and 5),
    three seeds each, constant within a configuration."""
    recipe = recipe_dict(tiny_mnist, train={"steps": 2, "checkpoint_every": 0},
                         eval={"every": 2, "metrics": ["eval_seed"], "features": "pixels", "n": 8},
                         export=[{"use": "png", "every": 100}], sweep={"eval.seed": [5, 1]})
    path = tmp_path / "seeded.toml"
    path.write_text(tomli_w.dumps(recipe))
    result = cli("run", path, "--seeds", "0-2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "runs").iterdir())) == 6
    assert "configurations: eval_seed" in result.output and "worse, p=0" in result.output
    first, second = compare([tmp_path / "runs"]).ranked
    assert (first.settings, first.values, second.values) == ({"eval.seed": 1}, [1.0] * 3, [5.0] * 3)
    assert second.significant is True and first.seeds == [0, 1, 2]
