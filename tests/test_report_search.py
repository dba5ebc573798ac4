"""``gankit report`` of searches and of runs over seeds: a search's trials, best, pictures
and confirmation; the configurations a batch ran over several seeds, compared; and a
study that cannot be read, or runs that cannot be compared, as one line, not a failure."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from browser import Browser, find_chromium
from conftest import install_scorer, recipe_dict
from gankit.cli import main
from gankit.report import write_report

optuna = pytest.importorskip("optuna")
pytest.importorskip("scipy")

SEARCH = {"trials": 3, "sampler": "random", "seed": 3, "pruner": "none", "confirm": {"top": 1, "seeds": [0, 1]},
          "eval.seed": {"int": [1, 50]}, "train.lr_g": {"log_uniform": [1e-4, 1e-3]}}
"""eval.seed is the score (the test scorer's eval_seed), so every trial's score is known."""


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def said(result) -> str:
    """What a command printed, as one line (the console wraps long paths)."""
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def searches(tmp_path_factory, tiny_mnist, test_scorer) -> Path:
    """A folder holding one finished search: three trials of four steps, then the best and
    the recipe as written, each over seeds 0 and 1, in confirm/."""
    root = tmp_path_factory.mktemp("report_search")
    recipe = recipe_dict(tiny_mnist, name="tiny", backend={"use": "torch", "device": "cpu", "threads": 1},
                         train={"steps": 4, "log_every": 2, "checkpoint_every": 2}, export=[{"use": "png", "every": 1000}],
                         eval={"every": 2, "metrics": ["eval_seed"], "features": "pixels", "n": 16}, search=SEARCH)
    path = root / "search.toml"
    path.write_text(tomli_w.dumps(recipe))
    with pytest.MonkeyPatch.context() as patch:
        install_scorer(patch, test_scorer)
        result = cli("run", path, "--jobs", 2, "--searches-dir", root / "searches")
    assert result.exit_code == 0, result.output
    return root / "searches"


@pytest.fixture(scope="module")
def search_dir(searches) -> Path:
    (found,) = searches.iterdir()
    return found


def study_of(search_dir: Path):
    return optuna.load_study(study_name=search_dir.name, storage=f"sqlite:///{search_dir / 'study.db'}")


class Tables(HTMLParser):
    """Every table of a page by id: its heading and its rows, as the text of each cell."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", f"table-{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rows(page: str, table: str) -> list[dict[str, str]]:
    heading, *body = Tables(page).tables[table]
    return [dict(zip(heading, row)) for row in body]


def embedded_png(page: str, alt: str) -> tuple[int, int]:
    """The size of the PNG embedded with ``alt``, checked to be a PNG."""
    match = re.search(rf'<img src="data:image/png;base64,([^"]+)" alt="{re.escape(alt)}"', page)
    assert match, f"no embedded PNG {alt!r}"
    data = base64.b64decode(match[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_search_shows_its_trials_best_history_and_confirmation(search_dir, tmp_path):
    output = tmp_path / "report.html"
    result = cli("report", search_dir, "-o", output)
    assert result.exit_code == 0 and "7 runs" in said(result), result.output
    page = output.read_text()
    trials = study_of(search_dir).get_trials()
    best = min(trials, key=lambda t: t.value)

    shown = rows(page, "trials-1")
    assert [row["trial"] for row in shown] == [str(t.number) for t in trials]
    assert all(row["state"] == "complete" for row in shown)
    assert [float(row["eval_seed"]) for row in shown] == [float(t.params["eval.seed"]) for t in trials]
    assert [row["eval.seed"] for row in shown] == [str(t.params["eval.seed"]) for t in trials], "a column per searched key"
    assert [float(row["train.lr_g"]) for row in shown] == pytest.approx([t.params["train.lr_g"] for t in trials], rel=1e-3)
    assert [row["run"] for row in shown] == [t.user_attrs["run_dir"] for t in trials]
    assert f"best: trial {best.number}</strong>, eval_seed {best.value:.4g}" in page
    assert re.search(rf'<tr class="best-trial">\s*<td data-sort="{best.number}">', page), "the best trial's row stands out"

    width, height = embedded_png(page, f"{search_dir.name}: optimisation history")
    assert 400 <= width <= 1600 and 200 <= height <= 1000, (width, height)
    assert "parameter importances: left out (3 completed trials are too few; they need 5)" in page
    assert f"{search_dir.name}: parameter importances" not in page

    confirmed = rows(page, "confirmed-1")
    assert [row["vs best"] for row in confirmed] == ["best", "worse, p=0"]
    assert confirmed[0]["mean ± sd"] == "0 ± 0", "the recipe as written scores its eval.seed, 0"
    assert confirmed[1]["mean ± sd"] == f"{best.value:.4g} ± 0" and f"eval.seed={best.params['eval.seed']}" in page
    assert "vs best: Welch's two-sided t-test against the best, Holm-corrected" in html.unescape(page)

    runs = rows(page, "runs")
    assert len(runs) == 7, "the trials and the confirmation runs are runs of the report too"
    for trial in trials:
        anchor = re.search(rf'<a href="#(run-\d+)">{trial.user_attrs["run_dir"]}</a>', page.split('id="runs"')[0])
        assert anchor, "each trial links to its run's section"
        section = page.split(f'<section id="{anchor[1]}">')[1].split("</section>")[0]
        assert f"trial {trial.number} of the search {search_dir.name}" in section
    assert page.index('id="search-1"') < page.index('id="runs"')
    assert 'id="configurations-table"' not in page, "the confirmation is compared in the search's section only"


def test_a_folder_of_searches_is_reported_like_the_search(searches, search_dir, tmp_path):
    reports = write_report([searches], tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert len(reports) == 7 and f"<h2>search {search_dir.name}</h2>" in page
    assert "<title>gankit report: 1 search, 7 runs</title>" in page


def test_runs_over_two_seeds_show_their_configurations_above_the_runs(search_dir, tmp_path):
    """The confirmation runs as a plain folder of runs: the recipe as written and the best
    trial, each over seeds 0 and 1. The first scored eval_seed 0 at seed 0; its seed-1
    run is made to have scored 4, so its mean is 2 and its sd 2.83."""
    runs = tmp_path / "runs"
    shutil.copytree(search_dir / "confirm", runs)
    scored = next(runs.glob("*-baseline-seed1")) / "eval.json"
    record = json.loads(scored.read_text())
    record["during_training"]["last"]["scores"]["eval_seed"] = 4.0
    scored.write_text(json.dumps(record))
    best = min(study_of(search_dir).get_trials(), key=lambda t: t.value).params["eval.seed"]

    output = tmp_path / "report.html"
    assert cli("report", runs, "-o", output).exit_code == 0
    page = output.read_text()
    shown = rows(page, "configurations-table")
    baseline, trial = sorted(shown, key=lambda row: "eval.seed" in row["configuration"])
    assert baseline["mean ± sd"] == f"2 ± {8 ** 0.5:.3g}" and baseline["seeds"] == "0, 1"
    assert trial["mean ± sd"] == f"{best:.4g} ± 0" and trial["configuration"].startswith("tiny-t0")
    assert f"(eval.seed={best}, train.lr_g=" in trial["configuration"] and baseline["configuration"] == "tiny-baseline"
    assert (baseline if best >= 2 else trial)["vs best"] == "best" and shown[0]["#"] == "1"
    assert "configurations: eval_seed at the last evaluation (lower is better)" in page
    assert page.index('id="configurations-table"') < page.index('id="runs"')


def hand_made_run(folder: Path, name: str, seed: int, **tables) -> Path:
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.toml").write_text(tomli_w.dumps({"name": name.split("-", 1)[1], "seed": seed, **tables}))
    (run_dir / "summary.json").write_text('{"status": "completed", "message": "trained 4 steps", "steps": 4}')
    return run_dir


def test_seeds_without_an_eval_are_one_line_and_one_seed_each_is_no_table(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        hand_made_run(runs, f"0000{seed}-tiny-seed{seed}", seed, train={"steps": 4})
    page_path = tmp_path / "report.html"
    result = cli("report", runs, "-o", page_path)
    assert result.exit_code == 0, result.output
    page = page_path.read_text()
    (line,) = re.findall(r'<p class="message">configurations: not compared: [^<]*</p>', page)
    assert "its recipe has no [eval] table" in line and 'id="configurations-table"' not in page

    other = tmp_path / "sweep"
    for index, lr in enumerate((1e-4, 2e-4)):
        hand_made_run(other, f"0000{index}-sweep", 0, train={"lr_g": lr})
    write_report([other], tmp_path / "sweep.html")
    page = (tmp_path / "sweep.html").read_text()
    assert "not compared" not in page and "configurations-table" not in page, "no seed groups, nothing said"


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_study_that_cannot_be_read_is_said_in_its_section(search_dir, tmp_path, damage):
    copy = tmp_path / search_dir.name
    shutil.copytree(search_dir, copy)
    if damage == "missing":
        (copy / "study.db").unlink()
    else:
        (copy / "study.db").write_bytes(b"not a database, whatever it was")
    output = tmp_path / "report.html"
    result = cli("report", copy, "-o", output)
    assert result.exit_code == 0 and said(result).startswith("wrote ") and said(result).count("KB)") == 1, result.output
    page = output.read_text()
    (problem,) = re.findall(r'<p class="problem">([^<]*)</p>', page)
    expected = "study.db: missing" if damage == "missing" else "cannot read the study"
    assert expected in problem and "Traceback" not in page, problem
    assert (copy / "study.db").exists() == (damage == "garbage"), "the report reads; it makes no study"
    assert len(rows(page, "runs")) == 7 and "confirmed over seeds: eval_seed" in page


def synthetic_search(folder: Path, trials: int = 30) -> Path:
    """A search of 30 trials made with Optuna alone (no runs): a known fid, some trials
    pruned, one failed and the last still running."""
    root = folder / "00000-synthetic"
    root.mkdir(parents=True)
    table = {"trials": trials, "sampler": "random", "train.lr_g": {"log_uniform": [1e-5, 1e-3]},
             "train.loss": {"choice": ["bce", "hinge"]}, "architecture.width": {"int": [16, 128]}}
    (root / "search.json").write_text(json.dumps({"study": root.name, "storage": None, "metric": "fid",
                                                  "higher_is_better": False, "search": table}))
    study = optuna.create_study(study_name=root.name, storage=f"sqlite:///{root / 'study.db'}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    states = optuna.trial.TrialState
    for number in range(trials):
        trial = study.ask()
        lr = trial.suggest_float("train.lr_g", 1e-5, 1e-3, log=True)
        loss = trial.suggest_categorical("train.loss", ["bce", "hinge"])
        trial.suggest_int("architecture.width", 16, 128)
        trial.set_user_attr("run_dir", f"{number:05d}-synthetic-t{number:04d}")
        fid = 20 + 1e5 * abs(lr - 2e-4) + (15 if loss == "bce" else 0)
        if number % 9 == 8:
            trial.report(fid + 50, 100)
            study.tell(trial, state=states.PRUNED)
        elif number == 13:
            trial.set_user_attr("why", "diverged: a loss reached 1e+10 at step 40")
            study.tell(trial, state=states.FAIL)
        elif number < trials - 1:
            study.tell(trial, fid)
    return root


def test_a_long_search_draws_importances_and_shows_every_state(tmp_path):
    search = synthetic_search(tmp_path / "searches")
    output = tmp_path / "report.html"
    result = cli("report", search.parent, "-o", output)
    assert result.exit_code == 0 and "0 runs" in said(result), result.output
    page = output.read_text()
    shown = rows(page, "trials-1")
    assert len(shown) == 30 and {row["state"] for row in shown} == {"complete", "pruned", "fail", "running"}
    assert shown[13]["note"] == "diverged: a loss reached 1e+10 at step 40"
    assert shown[8]["note"].startswith("last reported fid") and shown[8]["fid"] == "-"
    assert "30 trials of 30: 25 complete, 3 pruned, 1 fail, 1 running;" in page
    width, height = embedded_png(page, "00000-synthetic: parameter importances")
    assert width >= 400 and height >= 150, (width, height)
    embedded_png(page, "00000-synthetic: optimisation history")
    assert "left out" not in page


def test_the_report_module_imports_neither_optuna_nor_matplotlib():
    code = "import sys, gankit.report; print(sorted(m for m in ('optuna', 'matplotlib', 'scipy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_in_a_browser_the_trials_sort_and_the_pictures_load(tmp_path):
    search = synthetic_search(tmp_path / "searches")
    output = tmp_path / "report.html"
    write_report([search], output)
    browser = Browser(find_chromium(), tmp_path / "profile")
    try:
        browser.open(output.as_uri())
        cells = "[...document.querySelectorAll('#trials-1 tbody tr')].map(row => row.cells[2].textContent.trim())"
        before = browser.evaluate(cells)
        browser.click("#trials-1 th:nth-child(3) button")
        after = browser.evaluate(cells)
        scores = [float(text) for text in before if text != "-"]
        assert after == [f"{value:.4g}" for value in sorted(scores)] + ["-"] * (len(before) - len(scores))
        images = browser.evaluate("[...document.images].map(image => [image.alt, image.complete, image.naturalWidth])")
        assert len(images) == 2 and all(complete and width > 0 for _, complete, width in images), images
        if os.environ.get("GANKIT_TEST_ARTIFACTS"):
            browser.screenshot(Path(os.environ["GANKIT_TEST_ARTIFACTS"]) / "report_search.png")
    finally:
        browser.close()
