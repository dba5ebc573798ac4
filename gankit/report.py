"""``gankit report``: one self-contained HTML page for one run or many, and for searches.

A sortable table of the runs (status, steps, time, final losses, best and last scores,
the recipe values that differ between them), then a section per run with its latest
sample grid, curves and GIF, and its full resolved recipe. Images are embedded as base64,
so the file opens anywhere with no network; everything from a run is escaped by jinja2.

Above the runs: a section per search (``gankit.report_search``), whose trials and
confirmation runs are runs of the page too, and, when some configuration among the other
runs was run over several seeds, those configurations compared (``gankit.compare``).
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gankit import __version__
from gankit.backend import CheckpointError
from gankit.compare import TEST, CompareError, compare, read_score
from gankit.curves import draw_curves, read_metrics, run_title
from gankit.errors import GankitError
from gankit.files import write_text
from gankit.recipe import RecipeError, read_toml
from gankit.report_search import SearchReport, find_searches, read_search
from gankit.rundir import RunDir, read_meta

LOSSES = ("d_loss", "g_loss")


class ReportError(GankitError):
    """Nothing to report on; the message says why."""


@dataclass
class Image:
    kind: str  # samples, curves or progress
    caption: str
    data_uri: str = ""
    link: str = ""  # a relative path, for a file too big to embed
    animated: str = ""  # a GIF's data URI, played over its still (``data_uri``, the last frame)


@dataclass
class RunReport:
    path: Path
    recipe_text: str
    recipe: dict[str, Any]
    status: str
    message: str
    steps: int | None
    total_steps: int | None
    seconds: float | None
    losses: dict[str, float]
    scores: dict[str, dict[str, float]]  # score -> {"best": ..., "last": ...}
    images: list[Image] = field(default_factory=list)
    init_from: dict[str, Any] | None = None  # the checkpoint it started from (train.init_from) and its step
    protocol: dict[str, Any] | None = None  # how its [eval] scores were computed (Evaluator.protocol)
    floor: dict[str, float] = field(default_factory=dict)  # what two real samples score: a perfect generator's
    floor_how: str = ""

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ConfigurationRow:
    rank: int
    label: str
    settings: str
    runs: list[tuple[int, Path]]  # (seed, run directory) of each scored run
    mean: float
    mean_sd: str
    interval: str
    verdict: str
    verdict_kind: str  # best, worse, even or untested


@dataclass
class Configurations:
    """``gankit.compare``'s ranking of configurations over their seeds, ready for the page,
    or (``problem``) why the runs cannot be compared."""

    title: str
    rows: list[ConfigurationRow] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)
    problem: str = ""


def find_sources(paths: list[Path]) -> tuple[list[RunDir], list[Path]]:
    """The run directories and the searches ``paths`` stand for. A run is named directly
    or found one level inside a directory of runs; a search likewise, inside a folder of
    searches, and its trials and confirmation runs are runs too."""
    runs: list[RunDir] = []
    searches: list[Path] = []
    for path in paths:
        if RunDir(path).is_run():
            found, inside = [RunDir(path)], []
        elif path.is_dir():
            inside = find_searches(path)
            found = RunDir.found_in(path) + [run for search in inside for run in _search_runs(search)]
            if not found and not inside:
                raise ReportError(f"{path}: holds no run directories (none has a recipe.toml) "
                                  "and no searches (none has a search.json)")
        else:
            raise ReportError(f"{path}: not a run directory nor a directory of runs")
        runs += [r for r in found if r.path.resolve() not in {run.path.resolve() for run in runs}]
        searches += [s for s in inside if s.resolve() not in {search.resolve() for search in searches}]
    return runs, searches


def _search_runs(search: Path) -> list[RunDir]:
    return RunDir.found_in(search / "trials") + RunDir.found_in(search / "confirm")


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _status(run_dir: RunDir, summary: dict | None, total: Any) -> tuple[str, str]:
    if summary is not None:
        return str(summary.get("status", "unknown")), str(summary.get("message", ""))
    checkpoints = run_dir.list_checkpoints()
    if not checkpoints:
        return "no checkpoint", "no checkpoint yet: still starting, or stopped before its first checkpoint"
    try:
        last = read_meta(checkpoints[-1]).get("step")
    except CheckpointError:
        last = None
    if isinstance(total, int) and last == total:
        return "unfinished", (f"trained all {total} steps, but stopped before writing summary.json and "
                              f"progress.gif; finish it with: gankit run --resume {run_dir} (trains nothing)")
    return "unfinished", "no summary.json: still running, or stopped without writing one; resume it to go on"


def _scores(series: dict[str, dict[int, float]], evaluation: dict | None) -> dict[str, dict[str, float]]:
    """Each score of the run's evaluations during training (a recipe's ``[eval]``): its
    last value, and its value at the run's best checkpoint."""
    during = (evaluation or {}).get("during_training") or {}
    best = (during.get("best") or {}).get("scores") or {}
    last = (during.get("last") or {}).get("scores") or {}
    scores = {}
    for key in last:
        if not key.endswith("_std"):
            values = series.get(key)
            scores[key] = {"last": values[max(values)] if values else last[key]}
            if key in best:
                scores[key]["best"] = best[key]
    return scores


def _images(run_dir: RunDir, series, output_dir: Path, gif_max_bytes: int) -> list[Image]:
    images = []
    grids = run_dir.sample_images()
    if grids:
        step = grids[-1].stem.removeprefix("step_").lstrip("0") or "0"
        images.append(Image("samples", f"samples at step {step}", _data_uri(grids[-1].read_bytes(), "image/png")))
    curves = run_dir.curves
    if curves.is_file():
        images.append(Image("curves", "curves", _data_uri(curves.read_bytes(), "image/png")))
    elif series:
        images.append(Image("curves", "curves", _data_uri(draw_curves(series, run_title(run_dir)), "image/png")))
    gifs = run_dir.animations()
    if gifs:
        gif = gifs[0]
        data = gif.read_bytes()
        still = _last_frame(data)
        still_uri = _data_uri(still, "image/png") if still is not None else ""
        if len(data) <= gif_max_bytes:
            animated = _data_uri(data, "image/gif")
            if still is None:
                images.append(Image("progress", "progress", animated))
            else:
                images.append(Image("progress", "progress (the last frame; point at it to play)", still_uri,
                                    animated=animated))
        else:
            images.append(Image("progress", f"progress.gif ({len(data) // 1024:,} KB, not embedded)", still_uri,
                                link=os.path.relpath(gif, output_dir)))
    return images


def _last_frame(gif: bytes) -> bytes | None:
    """A GIF's last frame as a PNG (its first is the untrained generator's noise), or None
    if it does not read."""
    import imageio.v3 as iio

    try:
        frames = iio.imread(gif, index=None, extension=".gif")
        last = frames[-1] if frames.ndim == 4 else frames
        return iio.imwrite("<bytes>", last, extension=".png")
    except Exception:  # a damaged GIF: shown as it is
        return None


def read_run(run_dir: RunDir, output_dir: Path, gif_max_bytes: int) -> RunReport:
    try:
        recipe = read_toml(run_dir.recipe)
    except RecipeError as error:
        raise ReportError(str(error)) from None
    summary = _read_json(run_dir.summary)
    evaluation = _read_json(run_dir.eval)
    during = (evaluation or {}).get("during_training") or {}
    series = read_metrics(run_dir.metrics)
    status, message = _status(run_dir, summary, recipe.get("train", {}).get("steps"))
    logged_steps = [step for values in series.values() for step in values]
    final = (summary or {}).get("final") or {}
    losses = {key: final[key] if key in final else series[key][max(series[key])]
              for key in LOSSES if key in final or key in series}
    return RunReport(
        path=run_dir.path,
        recipe_text=run_dir.recipe.read_text(encoding="utf-8"),
        recipe=recipe,
        status=status,
        message=message,
        steps=(summary or {}).get("steps", max(logged_steps, default=None)),
        total_steps=(summary or {}).get("total_steps", recipe.get("train", {}).get("steps")),
        seconds=(summary or {}).get("seconds"),
        losses=losses,
        scores=_scores(series, evaluation),
        images=_images(run_dir, series, output_dir, gif_max_bytes),
        init_from=_source(summary, recipe),
        protocol=during.get("protocol"),
        floor=during.get("floor") or {},
        floor_how=during.get("floor_how") or "",
    )


def protocol_text(protocol: dict[str, Any] | None) -> str:
    """One line saying what a run's scores were computed on, for beside them."""
    if not protocol:
        return ""
    real = protocol.get("real_images")
    against = f" vs {real:,} real {protocol.get('split')} images" if isinstance(real, int) else ""
    weights = protocol.get("weights_sha256")
    return (f"scored on {protocol.get('generated_images', 0):,} generated{against}, {protocol.get('extractor')} features"
            f"{f' (weights sha256 {weights[:12]})' if weights else ''}, resize: {protocol.get('resize')}")


def _source(summary: dict | None, recipe: dict[str, Any]) -> dict[str, Any] | None:
    """Where the run started from: summary.json's record, else (a run still going) its recipe.toml's."""
    recorded = (summary or {}).get("init_from") or recipe.get("gankit", {}).get("init_from")
    return recorded if isinstance(recorded, dict) and "checkpoint" in recorded else None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return {k: v for index, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{index}.").items()}
    return {prefix.rstrip("."): value}


def recipe_settings(recipe: dict[str, Any]) -> dict[str, Any]:
    """A resolved recipe as dotted keys (``train.lr_g``, ``export.0.every``), name and
    provenance left out."""
    return _flatten({key: value for key, value in recipe.items() if key not in ("name", "gankit")})


def setting_header(key: str, recipes: list[dict[str, Any]]) -> str:
    """A readable column heading for a dotted recipe key: the table and key (``train.lr_g``),
    and for a list of tables the component each entry uses (``export.0.every`` is
    ``export png every``)."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[1].isdigit():
        index, uses = int(parts[1]), []
        for recipe in recipes:
            tables = recipe.get(parts[0])
            if isinstance(tables, list) and index < len(tables) and isinstance(tables[index], dict):
                uses.append(str(tables[index].get("use", parts[1])))
        return " ".join([parts[0], "/".join(dict.fromkeys(uses)) or parts[1], *parts[2:]])
    return ".".join(parts[-2:])


def differing_settings(settings: list[dict[str, Any]]) -> list[str]:
    """The dotted keys whose values are not the same in every run."""
    if len(settings) < 2:
        return []
    keys = list(dict.fromkeys(key for each in settings for key in each))
    return [key for key in keys if len({json.dumps(each.get(key), sort_keys=True) for each in settings}) > 1]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _parameter_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else _setting_text(value)


def _verdict(configuration) -> tuple[str, str]:
    """What ``gankit compare`` says of a configuration against the best, and its kind."""
    if configuration.rank == 1:
        return "best", "best"
    if configuration.p_value is None:
        return "untested (one seed)", "untested"
    if configuration.significant:
        return f"worse, p={configuration.p_value:.2g}", "worse"
    return f"not distinguishable, p={configuration.p_value:.2g}", "even"


def _row(configuration) -> ConfigurationRow:
    spread = f" ± {configuration.sd:.3g}" if configuration.sd is not None else ""
    interval = configuration.interval
    verdict, kind = _verdict(configuration)
    return ConfigurationRow(
        rank=configuration.rank,
        label=configuration.label,
        settings=", ".join(f"{key}={_parameter_text(value)}" for key, value in configuration.settings.items()),
        runs=[(run.seed, run.run_dir) for run in configuration.runs],
        mean=configuration.mean,
        mean_sd=f"{configuration.mean:.4g}{spread}",
        interval=f"{interval[0]:.3g} – {interval[1]:.3g}" if interval else "-",
        verdict=verdict,
        verdict_kind=kind,
    )


def compared(paths: list[Path], title: str) -> Configurations:
    """The configurations among the runs ``paths`` stand for, compared over their seeds;
    what stops a comparison is its one line in ``problem``, never an exception. scipy's
    warning that a configuration's scores are all equal is not printed: the page says so."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            comparison = compare(paths)
            rows = [_row(configuration) for configuration in comparison.ranked]
    except (CompareError, ValueError, TypeError) as error:
        return Configurations(title, problem=str(error))
    except ImportError as error:
        return Configurations(title, problem=f"comparing needs {error.name or 'scipy'}, which is not installed; "
                                             "pip install 'gankit[search]'")
    better = "higher" if comparison.higher_is_better else "lower"
    return Configurations(f"{title}: {comparison.metric} at the {comparison.at} evaluation ({better} is better)",
                          rows, [f"{run.run_dir.name}: {run.why}" for run in comparison.unscored])


def seed_groups(run_dirs: list[Path]) -> Configurations | None:
    """The configurations among ``run_dirs`` compared, when one of them ran with more
    than one seed (a batch's ``seeds = [...]``); otherwise None."""
    seeds: dict[str, set[int]] = {}
    try:
        for score in (read_score(path) for path in run_dirs):
            seeds.setdefault(score.configuration, set()).add(score.seed)
    except (ValueError, TypeError):  # a seed that is not a number: nothing to group
        return None
    if all(len(each) < 2 for each in seeds.values()):
        return None
    return compared(run_dirs, "configurations")


def _search_parts(runs: list[RunReport], searches: list[SearchReport]) -> list[tuple[str, str] | None]:
    """For each run that is a search's trial or confirmation run: the search's anchor on
    the page, and what the run is in it; None for the other runs."""
    places: dict[Path, tuple[str, str]] = {}
    for index, search in enumerate(searches, 1):
        numbers = {trial.run_dir.resolve(): trial.number for trial in search.trials if trial.run_dir}
        for run in _search_runs(search.path):
            number = numbers.get(run.path.resolve())
            role = "a confirmation run" if run.path.parent.name == "confirm" else (
                f"trial {number}" if number is not None else "a trial")
            places[run.path.resolve()] = (f"search-{index}", f"{role} of the search {search.name}")
    return [places.get(run.path.resolve()) for run in runs]


def _counted(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def render(runs: list[RunReport], searches: list[tuple[SearchReport, Configurations | None]] = (),
           configurations: Configurations | None = None) -> str:
    """The page: ``searches`` with their confirmations, ``configurations`` (the other
    runs' seed groups), then ``runs``."""
    from jinja2 import Environment, PackageLoader

    anchors = {run.path.resolve(): f"run-{index}" for index, run in enumerate(runs, 1)}
    environment = Environment(loader=PackageLoader("gankit", "templates"), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(duration=_duration, number=_number, setting=_setting_text, parameter=_parameter_text,
                               protocol=protocol_text,
                               anchor=lambda path: anchors.get(Path(path).resolve(), "") if path else "",
                               png=lambda data: _data_uri(data, "image/png"))
    settings = [recipe_settings(run.recipe) for run in runs]
    differing = differing_settings(settings)
    score_keys = list(dict.fromkeys(key for run in runs for key in run.scores))
    heading = _counted(len(runs), "run")
    if searches:
        heading = f"{_counted(len(searches), 'search', 'searches')}, {heading}"
    return environment.get_template("report.html").render(
        heading=heading,
        runs=runs,
        searches=searches,
        configurations=configurations,
        parts=_search_parts(runs, [search for search, _ in searches]),
        test=TEST,
        differing=differing,
        headers=[setting_header(key, [run.recipe for run in runs]) for key in differing],
        differing_values=[[each.get(key) for key in differing] for each in settings],
        score_keys=score_keys,
        losses=LOSSES,
        version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


GIF_BUDGET = 20 * 1024 * 1024
GIF_MAX = 1024 * 1024


def write_report(paths: list[Path], output: Path, *, gif_max_bytes: int | None = None,
                 left_out: list[str] | None = None) -> list[RunReport]:
    """Write the report of the runs and searches ``paths`` stand for to ``output``;
    returns the runs (a search's trials and confirmation runs among them).

    A run's GIF is embedded up to ``gif_max_bytes``, by default 1 MB or an equal share of
    20 MB, whichever is less, so that the report of a 50-run sweep still opens quickly;
    a bigger GIF is linked instead. A run that cannot be read (an invalid recipe.toml) is
    left out, its reason appended to ``left_out``; when every run is and there is no
    search, that is a ReportError."""
    run_dirs, search_dirs = find_sources(paths)
    if gif_max_bytes is None:
        gif_max_bytes = min(GIF_MAX, GIF_BUDGET // max(1, len(run_dirs)))
    runs, problems = [], []
    for run_dir in run_dirs:
        try:
            runs.append(read_run(run_dir, output.resolve().parent, gif_max_bytes))
        except ReportError as error:
            problems.append(str(error))
    if (not runs and not search_dirs) or (problems and left_out is None):
        raise ReportError(problems[0] if len(problems) == 1 else f"no run can be read: {'; '.join(problems)}")
    if left_out is not None:
        left_out += problems
    searches = [read_search(path) for path in search_dirs]
    confirmations = [compared([s.confirm_dir], "confirmed over seeds") if s.confirm_dir else None for s in searches]
    in_searches = {run.path.resolve() for path in search_dirs for run in _search_runs(path)}
    configurations = seed_groups([run.path for run in runs if run.path.resolve() not in in_searches])
    write_text(output, render(runs, list(zip(searches, confirmations)), configurations))
    return runs
