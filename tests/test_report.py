"""``gankit report``: the HTML page of a batch, read as a file and as a person sees it in
headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from browser import Browser, find_chromium
from conftest import recipe_dict
from gankit.cli import main
from gankit.data import DataContext
from gankit.plugins import load_registry
from gankit.recipe import load_recipe
from gankit.report import write_report
from gankit.runner import run

SWEPT = [1e-4, 2e-4, 5e-4]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_mnist) -> Path:
    """A batch as it can be found on disk: a sweep of three completed runs, a diverged run,
    an interrupted one, one killed after its first checkpoint and one killed before it."""
    root = tmp_path_factory.mktemp("report")
    runs = root / "runs"

    def recipe(name, **sections):
        path = root / f"{name}.toml"
        exports = [{"use": "png", "every": 2}, {"use": "gif"}]
        path.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, name=name, export=exports, **sections)))
        return path

    short = {"steps": 4, "log_every": 2, "checkpoint_every": 2}
    assert cli("run", recipe("sweep", train=short, sweep={"train.lr_g": SWEPT}), "--runs-dir", runs).exit_code == 0
    assert cli("run", recipe("diverging", train={**short, "max_loss": 1e-3}), "--runs-dir", runs).exit_code == 1
    asked = iter([False])  # no stop before the run begins (that writes nothing), then one at its first step
    run(load_recipe(recipe("stopped", train=short), [], load_registry()), runs_root=runs,
        context=DataContext(), should_stop=lambda: next(asked, True))
    for name, kept in (("killed", "checkpoints"), ("starting", None)):
        assert cli("run", recipe(name, train=short), "--runs-dir", runs).exit_code == 0
        run_dir = next(runs.glob(f"*-{name}"))
        for left_behind in ("summary.json", "progress.gif", "curves.png", "checkpoints"):
            if left_behind != kept:
                shutil.rmtree(run_dir / left_behind) if left_behind == "checkpoints" else (run_dir / left_behind).unlink()
    return runs


STATUSES = {"sweep-lr_g0.0001": "completed", "sweep-lr_g0.0002": "completed", "sweep-lr_g0.0005": "completed",
            "diverging": "diverged", "stopped": "interrupted", "killed": "unfinished", "starting": "no checkpoint"}


def test_every_run_appears_with_its_status_and_the_settings_that_differ(runs, tmp_path):
    output = tmp_path / "report.html"
    result = cli("report", runs, "-o", output)
    assert result.exit_code == 0 and "7 runs" in result.output, result.output
    reports = write_report([runs], tmp_path / "again.html")
    assert {r.name.split("-", 1)[1]: r.status for r in reports} == STATUSES
    assert all(r.message for r in reports if r.status != "completed")
    page = output.read_text()
    assert re.findall(r'<th title="([^"]+)"', page) == ["train.lr_g", "train.max_loss"]
    assert "diverged at step 2" in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page, "self-contained"
    assert page.count("data:image/gif") == 3, "the sweep's small GIFs are embedded"
    starting = next(r for r in reports if r.status == "no checkpoint")
    assert [image.kind for image in starting.images] == ["samples", "curves"], "curves drawn from metrics.jsonl"


def test_gifs_over_the_limit_are_linked_not_embedded(runs, tmp_path):
    output = tmp_path / "nested" / "report.html"
    assert cli("report", runs, "-o", output, "--gif-max-kb", 0).exit_code == 0
    page = output.read_text()
    assert "data:image/gif" not in page
    links = re.findall(r'href="([^"#]+progress\.gif)"', page)
    assert len(links) == 3 and all((output.parent / link).is_file() for link in links)


def test_everything_from_a_run_is_escaped(tmp_path):
    run_dir = tmp_path / "00000-odd"
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text('name = "odd"\n[dataset]\nroot = "</pre><script>alert(1)</script>"\n')
    (run_dir / "summary.json").write_text('{"status": "<img src=x onerror=alert(2)>", "message": "a < b"}')
    write_report([run_dir], tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a &lt; b" in page


def test_scores_during_training_show_best_and_last(tmp_path):
    run_dir = tmp_path / "00000-scored"
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text('name = "scored"\n')
    (run_dir / "metrics.jsonl").write_text('{"step": 10, "epoch": 0, "d_loss": 0.5, "g_loss": 1.5}\n'
                                           '{"step": 10, "epoch": 0, "fid": 40.0, "kid": 0.2, "kid_std": 0.01}\n'
                                           '{"step": 20, "epoch": 0, "fid": 45.0, "kid": 0.1, "kid_std": 0.01}\n')
    (run_dir / "eval.json").write_text('{"during_training": {"best": {"step": 10, "scores": {"fid": 40.0, "kid": 0.2}},'
                                       ' "last": {"step": 20, "scores": {"fid": 45.0, "kid": 0.1, "kid_std": 0.01}}}}')
    (report,) = write_report([run_dir], tmp_path / "report.html")
    assert report.scores == {"fid": {"best": 40.0, "last": 45.0}, "kid": {"best": 0.2, "last": 0.1}}
    assert report.losses == {"d_loss": 0.5, "g_loss": 1.5} and report.status == "no checkpoint"
    page = (tmp_path / "report.html").read_text()
    assert ">fid best<" in page and ">kid last<" in page and "kid_std" not in page.split("<section")[0]


def test_scores_show_what_they_were_computed_on(tmp_path):
    run_dir = tmp_path / "00000-scored"
    run_dir.mkdir()
    (run_dir / "recipe.toml").write_text('name = "scored"\n')
    (run_dir / "metrics.jsonl").write_text('{"step": 10, "epoch": 0, "fid": 40.0}\n')
    protocol = {"generated_images": 2000, "real_images": 1500, "split": "test", "extractor": "domain",
                "weights_sha256": "ab" * 32, "resize": "none: the data's own size"}
    (run_dir / "eval.json").write_text(json.dumps({"during_training": {"last": {"step": 10, "scores": {"fid": 40.0}},
                                                                       "protocol": protocol}}))
    (report,) = write_report([run_dir], tmp_path / "report.html")
    assert report.protocol == protocol
    line = ("scored on 2,000 generated vs 1,500 real test images, domain features (weights sha256 abababababab), "
            "resize: none: the data&#39;s own size")
    page = (tmp_path / "report.html").read_text()
    assert page.count(f'title="{line}"') == 2 and f'<p class="message">{line}</p>' in page


def test_a_directory_without_runs_is_a_one_line_error(tmp_path):
    result = cli("report", tmp_path)
    assert result.exit_code == 2 and "holds no run directories" in result.output
    assert len(result.output.strip().splitlines()) == 1


ROWS = "[...document.querySelectorAll('#runs tbody tr')]"


def column(browser: Browser, index: int) -> list[str]:
    return browser.evaluate(f"{ROWS}.map(row => row.cells[{index}].textContent.trim())")


@pytest.mark.skipif(find_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_in_a_browser_rows_sort_links_jump_and_images_load(runs, tmp_path):
    output = tmp_path / "report.html"
    assert cli("report", runs, "-o", output).exit_code == 0
    browser = Browser(find_chromium(), tmp_path / "profile")
    try:
        browser.open(output.as_uri())
        names = column(browser, 0)
        assert [name.split("-", 1)[1] for name in names] == list(STATUSES)
        assert [status for status in column(browser, 1)] == list(STATUSES.values())

        headings = browser.evaluate("[...document.querySelectorAll('#runs th')].map(h => h.textContent)")
        steps = headings.index("steps")
        before = [int(text.split(" /")[0]) for text in column(browser, steps)]
        browser.click(f"#runs th:nth-child({steps + 1}) button")
        after = [int(text.split(" /")[0]) for text in column(browser, steps)]
        assert before != sorted(before) and after == sorted(before)
        browser.click("#runs th:nth-child(1) button")
        browser.click("#runs th:nth-child(1) button")
        assert column(browser, 0) == sorted(names, reverse=True)
        assert browser.evaluate("document.querySelector('#runs th:nth-child(1)').getAttribute('aria-sort')") == "descending"

        images = browser.evaluate("[...document.images].map(image => [image.alt, image.complete, image.naturalWidth])")
        assert len(images) == 5 + 7 + 3, "grids (the diverged and stopped runs sampled none), curves, the sweep's GIFs"
        assert all(complete and width > 0 for _, complete, width in images), images

        browser.click("#runs tbody tr:nth-child(2) a")
        target = browser.evaluate("location.hash")
        top, height = browser.evaluate(f"[document.querySelector('{target}').getBoundingClientRect().top, innerHeight]")
        assert browser.evaluate("scrollY") > 0 and 0 <= top < height / 2, "the run's section is scrolled into view"
        assert browser.evaluate(f"document.querySelector('{target} h2').textContent").startswith(column(browser, 0)[1])

        browser.evaluate("window.scrollTo(0, 0)")
        screenshot = tmp_path / "report.png"
        browser.screenshot(screenshot)
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("GANKIT_TEST_ARTIFACTS"):
            shutil.copy(screenshot, Path(os.environ["GANKIT_TEST_ARTIFACTS"]) / "report.png")
    finally:
        browser.close()


def test_a_gifs_still_is_its_last_frame_not_its_noise(runs, tmp_path):
    import base64

    import imageio.v3 as iio
    import numpy as np

    output = tmp_path / "report.html"
    assert cli("report", runs, "-o", output).exit_code == 0
    page = output.read_text()
    stills = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+): progress[^"]*" data-still=', page)
    assert len(stills) == 3 and page.count('data-animated="data:image/gif;base64,') == 3
    for data, name in stills:
        frames = iio.imread(runs / name / "progress.gif", index=None, extension=".gif")
        still = iio.imread(base64.b64decode(data), extension=".png")
        assert np.array_equal(still, frames[-1]) and not np.array_equal(still, frames[0])
    linked = tmp_path / "linked.html"
    assert cli("report", runs, "-o", linked, "--gif-max-kb", 0).exit_code == 0
    assert len(re.findall(r'<img src="data:image/png;base64,[^"]+" alt="[^"]+: progress\.gif', linked.read_text())) == 3


def test_the_settings_of_a_list_of_tables_have_readable_headers(tmp_path, tiny_mnist):
    recipe = tmp_path / "every.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, name="every", train={"steps": 2, "log_every": 1},
                                                export=[{"use": "png"}], sweep={"export.0.every": [1, 2]})))
    assert cli("run", recipe, "--runs-dir", tmp_path / "runs").exit_code == 0
    output = tmp_path / "report.html"
    assert cli("report", tmp_path / "runs", "-o", output).exit_code == 0
    headers = re.findall(r'<th title="([^"]+)"><button type="button">([^<]+)</button>', output.read_text())
    assert headers == [("export.0.every", "export png every")]
