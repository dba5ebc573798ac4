"""gankit-example-plugin's own tests: gankit's conformance checks (gankit.testing), then what
this plugin promises beyond them. Install the package first: pip install -e ".[test]"."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from gankit.cli import main
from gankit.data import DataSpec
from gankit.testing import check_architecture, check_dataset, check_exporter, installed_backends

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


def test_the_recipe_is_valid():
    result = CliRunner().invoke(main, ["run", str(RECIPE), "--dry-run"])
    assert result.exit_code == 0, result.output
