"""gankit-example-plugin's own tests: gankit's conformance checks (gankit.testing), then what
this plugin promises beyond them. Install the package first: pip install -e ".[test]"."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from gankit.data import DataSpec
from gankit.testing import check_architecture, check_dataset, check_exporter, check_metric, installed_backends

RECIPE = Path(__file__).resolve().parent.parent / "recipe.toml"


def test_the_architecture_builds_fits_the_data_and_trains_on_every_installed_backend():
    counts = check_architecture("example-plugin", {"width": 16}, spec=DataSpec(16, 16, 1))
    assert all(count["generator"] > 0 for count in counts.values())


def test_the_architecture_fits_colour_images_too():
    check_architecture("example-plugin", {"width": 16, "latent_dim": 8}, spec=DataSpec(8, 8, 3),
                       backends=installed_backends()[:1])


def test_the_dataset_loads_what_gankit_expects():
    loaded = check_dataset("example-plugin", {"count": 64}, splits=("train", "test"))
    assert loaded["train"].images.shape == (64, 16, 16, 1) and len(loaded["test"].images) == 16
    assert set(loaded["train"].labels.tolist()) <= {0, 1, 2, 3}
    again = check_dataset("example-plugin", {"count": 64})
    assert (again["train"].images == loaded["train"].images).all(), "the same seed makes the same images"


def test_the_exporter_survives_a_run_and_a_resume_without_repeating_a_step(tmp_path):
    run_dir = check_exporter("example-plugin", tmp_path, steps=4)
    with (run_dir / "losses.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    assert all(float(row["d_loss"]) > 0 for row in rows)


def test_the_metric_scores_identical_features_0_and_disjoint_ones_more():
    scores = check_metric("example-plugin", scores=["example-plugin"])
    assert scores["identical"]["example-plugin"] == 0 and scores["disjoint"]["example-plugin"] > 1


def test_the_norm_order_reaches_the_metric():
    taxicab = check_metric("example-plugin", {"order": 1})["disjoint"]["example-plugin"]
    euclidean = check_metric("example-plugin", {"order": 2})["disjoint"]["example-plugin"]
    assert taxicab > euclidean, "a gap along every axis is longer measured along each axis in turn"


def test_the_recipe_is_valid():
    result = subprocess.run([sys.executable, "-m", "gankit", "run", str(RECIPE), "--dry-run"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
