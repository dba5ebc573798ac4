"""The ``gankit`` command. Thin: each command parses options and calls into the core."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from gankit import __version__, console
from gankit.registry import KINDS

EXAMPLES = """
\b
Examples:
  gankit run recipes/dcgan_mnist.toml
  gankit run recipes/dcgan_mnist.toml --set train.epochs=1 --set backend.device=cpu
  gankit run recipes/dcgan_mnist.toml --dry-run
  gankit run recipes/*.toml --keep-going
  gankit run --resume latest
  gankit list-plugins --kind architecture
  gankit sample runs/00000-dcgan_mnist -n 64 -o grid.png
  gankit evaluate runs/00000-dcgan_mnist --metric fid,kid
  gankit report runs -o report.html
  gankit compare runs
  gankit export runs/00000-dcgan_mnist --format onnx
  gankit new-plugin wide-mlp --kind architecture
"""


def fail(message: str) -> None:
    """A one-line error and exit code 2: bad input, nothing was run."""
    console.error(message)
    sys.exit(2)


@contextmanager
def failing_in_one_line(output: Path):
    """Inside the block, an OSError ends the command with ``-o OUTPUT: cannot write it``:
    for the commands that write one output."""
    try:
        yield
    except OSError as error:
        fail(f"-o {output}: cannot write it ({error.strerror or error})")


class Commands(click.Group):
    """Every command's ``GankitError`` is its one line and exit code 2: the one place
    the command line catches gankit's errors."""

    def invoke(self, ctx: click.Context):
        from gankit.errors import GankitError

        try:
            return super().invoke(ctx)
        except GankitError as error:
            fail(str(error))


@click.group(cls=Commands, epilog=EXAMPLES)
@click.version_option(__version__, prog_name="gankit")
def main() -> None:
    """Train GANs from declarative TOML recipes."""


def _registry(warn: bool = True):
    """The installed plugins' components. Broken or conflicting plugins are one warning
    (``list-plugins`` shows why, so it passes ``warn=False``); with GANKIT_STRICT_PLUGINS=1
    they are one error line each and exit code 2."""
    from gankit.plugins import load_registry
    from gankit.registry import RegistryError

    try:
        registry = load_registry()
    except RegistryError as error:
        for line in str(error).splitlines():
            console.error(line)
        sys.exit(2)
    names = [b.name for b in registry.broken] + [c.what for c in registry.conflicts.values()]
    if warn and names:
        console.warn(f"ignoring broken or conflicting plugins ({', '.join(names)}); `gankit list-plugins` says why")
    return registry


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Ctrl-C, a kill, and a closed terminal or SSH session all stop a run the same way."""


def _detach_from_terminal(descriptors: list[int]) -> None:
    """After a hang-up the terminal is gone and every write to it fails: from now on what
    went to it (``descriptors``) goes to /dev/null, so that the run can still stop with a
    checkpoint. Output to a file or a pipe is left as it is."""
    null = os.open(os.devnull, os.O_WRONLY)
    for descriptor in descriptors:
        os.dup2(null, descriptor)
    os.close(null)


class StopFlag:
    """First Ctrl-C (or SIGTERM, SIGHUP): finish the step, checkpoint, stop. Second: abort now."""

    def __init__(self):
        self.requested = False
        self.terminal: list[int] = []

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if signum == getattr(signal, "SIGHUP", None):
            _detach_from_terminal(self.terminal)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        console.warn("stopping at the next step (press Ctrl-C again to abort now)")

    @contextmanager
    def installed(self):
        """Handle STOP_SIGNALS inside the block; the previous handlers come back after."""
        self.terminal = [descriptor for descriptor in (1, 2) if os.isatty(descriptor)]
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def recipe_key_hint(option: str, args: list[str]) -> str | None:
    """The ``--set`` that does what an unknown option of ``gankit run`` looks meant to do
    (``--backend tensorflow``: ``--set backend.use=tensorflow``), or None."""
    from gankit.recipe import SECTIONS
    from gankit.train_config import TrainConfig

    value = "VALUE"
    for index, arg in enumerate(args):
        if arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        elif arg == option and index + 1 < len(args) and not args[index + 1].startswith("-"):
            value = args[index + 1]
    key = option.lstrip("-").replace("-", "_")
    if key in SECTIONS:
        return f"--set {key}.use={value}"
    if key == "name":
        return f"--set name={value}"
    if key == "seed":
        return f"--set seed={value} (or --seeds {value}, a list or range of seeds to run each configuration with)"
    if key in TrainConfig.model_fields:
        return f"--set train.{key}={value}"
    return None


class RunCommand(click.Command):
    """``gankit run``, whose unknown options that name a recipe key say which --set to use."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))
        except click.NoSuchOption as error:
            hint = recipe_key_hint(error.option_name, args)
            if hint is None:
                raise
            raise click.UsageError(f"No such option: {error.option_name}; recipe keys are set with --set, "
                                   f"here: {hint}", ctx) from None


def _run_to_resume(resume_from: str, runs_dir: Path):
    """The run directory ``--resume`` names (``latest``: the highest-numbered one in ``runs_dir``)."""
    from gankit.rundir import RunDir

    run_dir = RunDir.latest(runs_dir) if resume_from == "latest" else RunDir(Path(resume_from))
    if run_dir is None:
        fail(f"--resume latest: no runs in {runs_dir}; pass a run directory or --runs-dir")
    if run_dir.is_empty():
        fail(f"--resume {resume_from}: {run_dir} is empty (the run was stopped before it began); "
             f"remove it with: rm -r {run_dir}")
    if run_dir.path.is_file() and run_dir.path.suffix == ".toml":
        fail(f"--resume {resume_from}: {run_dir} is a recipe file; --resume takes a run directory: to start it, "
             f"gankit run {run_dir}")
    if problem := run_dir.not_a_run(runs_dir):
        fail(f"--resume {resume_from}: {problem}")
    return run_dir.path


@main.command(cls=RunCommand)
@click.argument("recipes", nargs=-1, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. train.epochs=1.")
@click.option("--seeds", metavar="0-2|0,1,2", help="Run every configuration once per seed (the recipe's seeds key).")
@click.option("--minutes", type=float, metavar="M",
              help="Train for M minutes of training steps (on train.clock, CPU time by default), then end completed "
                   "with a checkpoint: --set train.max_seconds=M*60. With --resume, the whole run's budget.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe(s) and do nothing.")
@click.option("--keep-going", is_flag=True, help="After a failed or invalid recipe, run the rest anyway.")
@click.option("--resume", "resume_from", metavar="RUN_DIR|latest", help="Continue a run from its last checkpoint.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where run directories are created.")
@click.option("--max-runs", default=10_000, show_default=True, type=click.IntRange(1),
              help="Refuse recipes and sweeps that expand to more runs than this.")
@click.option("--jobs", "processes", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="Train up to N runs of the batch at once, each in a process of its own.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", envvar="GANKIT_RAY_ADDRESS", metavar="[ADDRESS]",
              help="Run each run of the batch as a task on a Ray cluster (default: the one `ray start` made here or "
                   "RAY_ADDRESS names; 'local': a Ray of its own on this machine). Also $GANKIT_RAY_ADDRESS.")
@click.option("--cpus-per-run", type=click.FloatRange(0, min_open=True),
              help="With --ray: CPU cores each run reserves (default: the recipe's resources.cpus, else 1).")
@click.option("--gpus-per-run", type=click.FloatRange(0),
              help="With --ray: GPUs each run reserves (default: the recipe's resources.gpus, else 0).")
@click.option("--gpus", type=click.IntRange(1, 1024),
              help="Train one run on K GPUs of this machine, on K processes that the backend starts.")
@click.option("--searches-dir", type=click.Path(path_type=Path), default=Path("searches"), show_default=True,
              help="Where a recipe with [search] makes its search directory.")
@click.option("--storage", metavar="URL",
              help="A search's Optuna storage (e.g. postgresql://...; default: study.db in the search directory).")
def run(recipes: tuple[Path, ...], overrides: tuple[str, ...], seeds: str | None, minutes: float | None,
        dry_run: bool, keep_going: bool,
        resume_from: str | None, runs_dir: Path, max_runs: int, processes: int, ray_address: str | None,
        cpus_per_run: float | None, gpus_per_run: float | None, gpus: int | None, searches_dir: Path,
        storage: str | None) -> None:
    """Train the GAN each RECIPE describes, one after another (a [sweep] table expands into
    one run per combination), several at once with --jobs or --ray, or continue a stopped
    run with --resume."""
    import tomli_w

    from gankit.batch import load_all
    from gankit.data import DataContext
    from gankit.runner import resume
    from gankit.runner import run as start_run

    if seeds is not None:
        from gankit.recipe import parse_seeds

        try:
            overrides += (f"seeds={parse_seeds(seeds)}",)
        except ValueError as error:
            fail(f"--seeds {seeds}: {error}")
    if minutes is not None:
        if not minutes > 0 or minutes == float("inf"):
            fail(f"--minutes {minutes}: give a number of minutes above 0, e.g. --minutes 2 or --minutes 0.5")
        overrides += (f"train.max_seconds={minutes * 60:.12g}",)
    from_environment = click.get_current_context().get_parameter_source("ray_address")
    if resume_from is not None and from_environment == click.core.ParameterSource.ENVIRONMENT:
        ray_address = None  # $GANKIT_RAY_ADDRESS is for batches; a resume continues one run here
    parallel = processes > 1 or bool(ray_address)
    if gpus is not None:
        _start_processes(gpus, recipes, overrides, resume_from, runs_dir, parallel or dry_run)
    registry = _registry()
    world = _distributed_world(registry, recipes, overrides, resume_from, runs_dir, parallel)
    context = DataContext(warn=console.warn, info=console.info)
    from gankit.search import has_search_table, is_search

    if resume_from is not None and is_search(Path(resume_from)) or any(map(has_search_table, recipes)):
        if world is not None or gpus is not None:
            fail("a search trains its trials as a batch does: leave out --gpus and the launcher of several processes")
        _search(recipes, list(overrides), Path(resume_from) if resume_from else None, searches_dir, storage, registry,
                context.cache_dir, processes, ray_address, (cpus_per_run, gpus_per_run), dry_run)
        return
    stop = StopFlag()
    should_stop = stop if world is None else world.stop_together(stop)

    def start_new(recipe):
        with console.RunProgress(recipe.name) as progress:
            return start_run(recipe, runs_root=runs_dir, context=context, listeners=[progress.handle],
                             should_stop=should_stop, world=world)

    if resume_from is not None:
        if recipes:
            fail("--resume continues one run: give no recipe files with it")
        if parallel:
            fail("--resume continues one run here: leave out --jobs and --ray")
        run_dir = _run_to_resume(resume_from, runs_dir)

        def continue_run(_no_recipe):
            with console.RunProgress(run_dir.name) as progress:
                return resume(run_dir, registry, overrides=list(overrides), context=context,
                              listeners=[progress.handle], should_stop=should_stop, world=world)

        jobs, invalid, start = [None], [], continue_run
    else:
        if not recipes:
            fail("name at least one recipe file, e.g. gankit run recipes/dcgan_mnist.toml")
        jobs, invalid = load_all(recipes, list(overrides), registry, max_runs)
        if invalid and not keep_going:
            fail(invalid[0].message)
        for outcome in invalid:  # the batch goes on without them: each says why, once, before anything runs
            console.error(outcome.message)
        if dry_run:
            for recipe in jobs:
                console.show_toml(f"# {recipe.path} ({recipe.name}); {recipe.train.length()}\n"
                                  + tomli_w.dumps(recipe.as_dict()))
            return
        start = start_new

    with stop.installed():
        if parallel:
            outcomes = _run_in_parallel(jobs, invalid, runs_dir, context.cache_dir, processes, ray_address,
                                        (cpus_per_run, gpus_per_run), keep_going, stop)
        else:
            outcomes = _run_jobs(jobs, invalid, start, keep_going, stop)
    if len(outcomes) > 1:
        _rank_batch(outcomes)
    if any(o.status == "interrupted" for o in outcomes):
        sys.exit(130)
    if not all(o.succeeded for o in outcomes):
        sys.exit(1)


def _search(recipes, overrides, resume_dir, searches_dir, storage, registry, cache_dir, processes, ray_address,
            resources, dry_run) -> None:
    """A new search of ``recipes[0]``, or the one in ``resume_dir`` continued."""
    import tomli_w

    from gankit.safekeeping import writable_root
    from gankit.search import Search
    from gankit.search_runs import SearchRun

    if resume_dir is not None:
        if recipes or overrides or storage:
            fail("--resume continues a search as it was made: give no recipe, --set or --storage with it")
        search = Search.open(resume_dir, registry)
    else:
        if len(recipes) > 1:
            fail(f"{recipes[0]}: a recipe with [search] runs on its own; give it alone")
        if dry_run:
            data, config, metric, _ = Search.prepare(recipes[0], overrides, registry)
            console.show_toml(f"# {recipes[0]}: {config.trials} trials scored by {metric}\n"
                              + tomli_w.dumps({**data, "search": config.as_table()}))
            return
        writable_root(searches_dir, "--searches-dir")
        search = Search.create(recipes[0], overrides, registry, searches_dir, storage)
    engine = _engine(search.root, processes, ray_address)
    session = SearchRun(search, registry, cache_dir, lambda level, text: getattr(console, level)(text), resources)
    console.info(f"search {search.root}: {search.config.trials} trials, scored by {search.metric}; "
                 f"resume with: gankit run --resume {search.root}")
    stop = StopFlag()
    try:
        with stop.installed():
            stopped = session.trials(engine, stop) or (
                search.config.confirm_top and session.confirm(engine, stop))
    except KeyboardInterrupt:
        console.error(f"aborted at once; resume with: gankit run --resume {search.root}")
        sys.exit(130)
    finally:
        engine.close()
    recorded = session.record()
    console.search_summary(search, session.study, recorded)
    if stopped:
        console.warn(f"the search stopped early; resume with: gankit run --resume {search.root}")
        sys.exit(130)
    if "best" not in recorded:
        sys.exit(1)


def _engine(root: Path, processes: int, ray_address: str | None):
    from gankit.parallel import LocalEngine

    if ray_address:
        from gankit.ray_batch import RayEngine

        return RayEngine(ray_address, root)
    return LocalEngine(processes)


def _rank_batch(outcomes) -> None:
    """After a batch that ran some configuration more than once (seeds): its ranking."""
    from gankit.compare import CompareError, compare

    run_dirs = [o.run_dir for o in outcomes if o.run_dir is not None and o.succeeded]
    if len(run_dirs) < 2:
        return
    try:
        comparison = compare(run_dirs)
    except CompareError as error:
        if any("seed" in o.sweep for o in outcomes):
            console.warn(f"the batch cannot rank its configurations: {error}")
        return
    if any(len(c.values) > 1 for c in comparison.ranked):
        console.comparison_table(comparison)


def _run_jobs(jobs, invalid, start, keep_going, stop):
    from gankit.batch import Outcome, run_all

    try:
        if len(jobs) == 1 and not invalid:
            outcomes = [Outcome.of(start(jobs[0]))]
            _report(outcomes[0])
        else:
            outcomes = invalid + run_all(jobs, start, keep_going=keep_going, stop_requested=stop, report=_report)
            console.batch_table(outcomes)
    except KeyboardInterrupt as error:
        console.error(str(error) or "aborted at once; every file written so far is complete")
        sys.exit(130)
    return outcomes


def _chosen_backend(registry, recipes, overrides, resumed: Path | None):
    """The name and the backend object of the run these arguments start (the first recipe's)
    or resume (``resumed``: its run directory); a RecipeError when its recipe cannot be read."""
    from gankit.recipe import build_recipe, load_recipes, read_toml
    from gankit.rundir import RunDir

    if resumed is not None:
        path = RunDir(resumed).recipe
        recipe = build_recipe(read_toml(path), path, registry)
    else:
        recipe = load_recipes(recipes[0], list(overrides), registry)[0]
    return recipe.backend.name, recipe.backend.component.factory(recipe.backend.params)


def _distributed_world(registry, recipes, overrides, resume_from, runs_dir: Path, parallel: bool):
    """This process's place in a run its backend started on several processes (None when
    alone, and when the recipe or its backend cannot be made: the run then says why). Ranks
    other than 0 train silently; rank 0 shows progress and writes the run."""
    from gankit.distributed import join
    from gankit.rundir import RunDir

    resumed = None
    if resume_from is not None:
        run_dir = RunDir.latest(runs_dir) if resume_from == "latest" else RunDir(Path(resume_from))
        if run_dir is None or not run_dir.recipe.is_file():
            return None
        resumed = run_dir.path
    elif not recipes:
        return None
    try:
        _, backend = _chosen_backend(registry, recipes, overrides, resumed)
    except Exception:  # noqa: BLE001 -- the run builds the same recipe and backend next, and reports it in one line
        return None
    world = join(backend)
    if world is None:
        return None
    if parallel or len(recipes) > 1:
        fail("on several processes gankit trains one run on every process: give one recipe, without --jobs or --ray")
    if not world.writer:
        console.silence_output()
    return world


def _start_processes(gpus: int, recipes, overrides, resume_from, runs_dir: Path, refused: bool) -> None:
    """``gankit run --gpus K``: this same command on K processes, as the run's backend starts them."""
    import subprocess

    from gankit.backend import BackendError
    from gankit.distributed import join, launch_command

    if refused or len(recipes) > 1:
        fail("--gpus trains one run on several GPUs: give one recipe, without --jobs, --ray or --dry-run")
    if not recipes and resume_from is None:
        fail("name the recipe to train on several GPUs, e.g. gankit run recipes/dcgan_mnist.toml --gpus 2")
    resumed = _run_to_resume(resume_from, runs_dir) if resume_from is not None else None
    name, backend = _chosen_backend(_registry(), recipes, overrides, resumed)
    if join(backend) is not None:
        fail("--gpus starts the processes itself: leave it out when a launcher started this one")
    arguments = ["run", *map(str, recipes), *[f"--set={o}" for o in overrides], f"--runs-dir={runs_dir}"]
    arguments += [f"--resume={resume_from}"] if resume_from else []
    try:
        command = launch_command(backend, name, gpus, arguments)
    except BackendError as error:
        fail(f"--gpus {gpus}: {error}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches every process of the run; the launcher ends them
    sys.exit(subprocess.call(command))


def _run_in_parallel(recipes, invalid, runs_dir: Path, cache_dir: Path, processes: int, ray_address: str | None,
                     resources: tuple[float | None, float | None], keep_going: bool, stop: StopFlag):
    """The batch on ``processes`` local processes, or on Ray; the same report and table."""
    from gankit.parallel import LocalEngine, make_jobs, run_parallel
    from gankit.safekeeping import writable_root

    writable_root(runs_dir)
    if ray_address:
        from gankit.ray_batch import RayEngine

        engine = RayEngine(ray_address, runs_dir)
    else:
        engine = LocalEngine(processes)
    jobs = make_jobs(recipes, runs_dir, cache_dir, *resources)
    try:
        with console.BatchProgress([job.run_dir.name for job in jobs]) as display:
            outcomes = invalid + run_parallel(jobs, engine, keep_going=keep_going, stop_requested=stop,
                                              display=display, report=_report)
    except KeyboardInterrupt:
        console.error("aborted at once; every file written so far is complete, and each run can be resumed")
        sys.exit(130)
    console.batch_table(outcomes)
    return outcomes


def _report(outcome) -> None:
    if outcome.status == "completed":
        console.info(f"done: {outcome.run_dir} ({outcome.steps} steps in {outcome.seconds:.0f}s)")
    elif outcome.status == "interrupted":
        console.warn(f"{outcome.message}; checkpoint saved. Resume with: gankit run --resume {outcome.run_dir}")
    else:
        console.error(outcome.message)


@main.command("list-plugins")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of component.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(kind: str | None, as_json: bool) -> None:
    """List the installed plugins' components: datasets, architectures, backends, exporters,
    metrics and feature extractors."""
    registry = _registry(warn=False)
    if as_json:
        console.plugins_json(registry, kind)
    else:
        console.plugins_table(registry, kind)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-n", "count", type=int, help="How many samples (1 to 100,000; default 64).")
@click.option("-o", "output", required=True, type=click.Path(path_type=Path), help="A .png grid or an .npz of uint8 arrays.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the noise (0 to 2**32 - 1).")
@click.option("--seeds", metavar="0-35,100", help="One image per seed, the same on every call and backend (instead of -n).")
@click.option("--latent", "latent_file", type=click.Path(path_type=Path, dir_okay=False),
              help="Draw the latents of an .npz that gankit sample or gankit project wrote.")
@click.option("--truncation", "psi", default=1.0, show_default=True, type=float, metavar="PSI",
              help="Scale the noise toward its mean by PSI (0 < PSI <= 1): less variety, more typical images.")
@click.option("--checkpoint", help="A checkpoint of the run (best, step_00000500) or a path; default: the last.")
@click.option("--raw", is_flag=True, help="Use the trained generator, not its EMA (for runs with train.ema).")
@click.option("--class", "classes", multiple=True, metavar="CLASS",
              help="Conditional runs: draw this class (a name or an index; repeatable). Default: every class evenly.")
def sample(run_dir: Path, count: int | None, output: Path, seed: int, seeds: str | None, latent_file: Path | None,
           psi: float, checkpoint: str | None, raw: bool, classes: tuple[str, ...]) -> None:
    """Draw samples from a run's checkpoint (the last, unless --checkpoint names one)."""
    from gankit.latents import check_truncation, parse_seeds
    from gankit.safekeeping import writable_root
    from gankit.sampling import Latents, sample_run

    if sum(option is not None for option in (count, seeds, latent_file)) > 1:
        fail("-n, --seeds and --latent each say which noise to draw; give one of them")
    if count is not None and not 1 <= count <= 100_000:
        fail(f"-n {count}: draw from 1 to 100,000 samples")
    if not 0 <= seed < 2**32:
        fail(f"--seed {seed}: the seed of the noise is a whole number from 0 to {2**32 - 1}")
    if output.suffix.lower() not in (".png", ".npz"):
        fail(f"-o {output}: use a .png (grid) or .npz (raw uint8 arrays) file name")
    try:
        check_truncation(psi)
        chosen = parse_seeds(seeds) if seeds is not None else None
    except ValueError as error:
        fail(str(error))
    if latent_file is not None and not latent_file.is_file():
        fail(f"--latent {latent_file}: no such file; give an .npz written by gankit sample -o X.npz or gankit project")
    latents = Latents(count=count or 64, seed=seed, seeds=chosen, latent_file=latent_file, truncation=psi)
    with failing_in_one_line(output):
        writable_root(output.parent, "-o")
        used, drawn = sample_run(_registry(), run_dir, latents, output, checkpoint, raw=raw, classes=classes)
    console.info(f"wrote {drawn} samples from {used} to {output}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-o", "output", required=True, type=click.Path(path_type=Path), help="A .gif, or an .mp4 (gankit[video]).")
@click.option("--seeds", metavar="1,7,42", help="The seeds each walk visits, in order (default: 3 per walk from 0).")
@click.option("--frames", default=60, show_default=True, type=click.IntRange(2, 10_000), help="Frames of the whole walk.")
@click.option("--fps", default=20, show_default=True, type=click.IntRange(1, 60), help="Frames per second.")
@click.option("--linear", is_flag=True, help="Interpolate in straight lines, not along great circles (slerp).")
@click.option("--grid", "shape", default="1x1", show_default=True, metavar="COLUMNSxROWS",
              help="Several walks at once; the seeds are shared out among them in order.")
@click.option("--truncation", "psi", default=1.0, show_default=True, type=float, metavar="PSI",
              help="Scale the noise toward its mean by PSI (0 < PSI <= 1).")
@click.option("--scale", default=0, type=click.IntRange(0, 64), help="Enlarge each frame; default: to 256 pixels wide.")
@click.option("--class", "class_name", metavar="CLASS",
              help="Conditional runs: every walk draws this class (default: walk k draws class k).")
@click.option("--classes", "class_walk", metavar="3,8",
              help="Conditional runs: walk from class to class (names or indices, in order), each walk holding one "
                   "seed's latent (--seeds: one per walk).")
@click.option("--checkpoint", help="A checkpoint of the run (best, step_00000500) or a path; default: the last.")
@click.option("--raw", is_flag=True, help="Use the trained generator, not its EMA (for runs with train.ema).")
def interpolate(run_dir: Path, output: Path, seeds: str | None, frames: int, fps: int, linear: bool, shape: str,
                psi: float, scale: int, class_name: str | None, class_walk: str | None, checkpoint: str | None,
                raw: bool) -> None:
    """Write a walk between seeds' images, or between classes, as a GIF or an MP4."""
    import re

    from gankit.interpolation import Walk, interpolate_run
    from gankit.latents import check_truncation, parse_seeds
    from gankit.safekeeping import writable_root

    if output.suffix.lower() not in (".gif", ".mp4"):
        fail(f"-o {output}: use a .gif or .mp4 file name")
    if not (match := re.fullmatch(r"([1-9]\d*)x([1-9]\d*)", shape)) or int(match[1]) * int(match[2]) > 256:
        fail(f"--grid {shape}: write COLUMNSxROWS, e.g. 4x2, at most 256 walks")
    try:
        check_truncation(psi)
        walked = tuple(name.strip() for name in class_walk.split(",")) if class_walk is not None else ()
        plan = Walk(parse_seeds(seeds) if seeds is not None else None, frames, fps, not linear,
                    int(match[1]), int(match[2]), psi, scale, walked)
        plan.keyframe_seeds()
    except ValueError as error:
        fail(str(error))
    with failing_in_one_line(output):
        writable_root(output.parent, "-o")
        used, written = interpolate_run(_registry(), run_dir, plan, output, checkpoint, raw=raw, class_name=class_name)
    console.info(f"wrote {written} frames of {plan.walks} walk{'s' * (plan.walks > 1)} from {used} to {output}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="The latent's .npz; the reconstruction (.png) and the optimisation (.gif) go beside it. "
                   "Default: RUN_DIR/projections/IMAGE.npz.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1, 100_000), help="Optimisation steps.")
@click.option("--class", "class_name", metavar="CLASS",
              help="Conditional runs: project onto this class (a name or an index). Default: try every class.")
@click.option("--resize", is_flag=True, help="Resize and convert an image that is not the run's size and colours.")
@click.option("--feature-weight", type=click.FloatRange(min=0), metavar="W",
              help="Weight of the feature loss (0: pixels alone). Default: 0.1 where the features are "
                   "differentiable on the run's backend, else 0.")
@click.option("--features",
              help="Feature extractor of the feature loss, with any parameters, as in gankit evaluate "
                   "(domain:steps=300). Default: the one the plugins mark as default (bundled: domain).")
@click.option("--checkpoint", help="A checkpoint of the run (best, step_00000500) or a path; default: the last.")
@click.option("--raw", is_flag=True, help="Use the trained generator, not its EMA (for runs with train.ema).")
def project(run_dir: Path, image: Path, output: Path | None, steps: int, class_name: str | None, resize: bool,
            feature_weight: float | None, features: str, checkpoint: str | None, raw: bool) -> None:
    """Find the latent (and class) whose generated image best matches IMAGE."""
    from gankit.projection import ProjectPlan, project_run
    from gankit.safekeeping import writable_root

    output = output or run_dir / "projections" / f"{image.stem}.npz"
    if output.suffix.lower() != ".npz":
        fail(f"-o {output}: use an .npz file name (the .png and .gif are written beside it)")
    plan = ProjectPlan(steps=steps, class_name=class_name, resize=resize, raw=raw, feature_weight=feature_weight,
                      features=_features_option(features) if features else None)
    with failing_in_one_line(output):
        writable_root(output.parent, "-o")
        projected = project_run(_registry(), run_dir, image, output, plan, checkpoint, info=console.info)
    chosen = f", class {projected.label}" if projected.label is not None else ""
    console.info(f"projected {image} onto {projected.checkpoint}{chosen}: mean absolute error "
                 f"{projected.error:.2f} of 255 (from {projected.start_error:.2f}); wrote {output} and its .png and .gif")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--metric", "metrics", multiple=True,
              help="Comma-separated metrics, each with any parameters: fid,precision:k=5,kid:subsets=50,subset_size=500. "
                   "Repeatable. Default: every metric the plugins mark as default (bundled: fid, kid, is).")
@click.option("--features",
              help="Feature extractor, with any parameters: domain (trained on the run's data, no download; "
                   "domain:steps=300) or inception (the standard FID one; inception:weights=PATH). "
                   "Default: the one the plugins mark as default (bundled: domain).")
@click.option("-n", "count", default=10_000, show_default=True, type=click.IntRange(2, 1_000_000),
              help="Generated images; as many real ones, at most the whole split.")
@click.option("--reference", type=click.Path(path_type=Path, dir_okay=False),
              help="Reference statistics (gankit stats) to compare against instead of the split's images.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="The real images compared against.")
@click.option("--checkpoint", help="A checkpoint of the run (best, step_00000500) or a path; default: the last.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seed of the generator's noise and of the real subset.")
@click.option("--raw", is_flag=True, help="Score the trained generator, not its EMA (for runs with train.ema).")
def evaluate(run_dir: Path, metrics: tuple[str, ...], features: str, count: int, reference: Path | None, split: str,
             checkpoint: str | None, seed: int, raw: bool) -> None:
    """Score a run's generator (FID, KID, IS; precision, recall, density, coverage; any
    metric plugin) and record how in RUN_DIR/eval.json."""
    from gankit.eval_config import EvalConfig, parse_metric_option
    from gankit.rundir import RunDir
    from gankit.sampling import UnsavedScores, evaluate_run

    try:
        entries = parse_metric_option(metrics) if metrics else None
    except ValueError as error:
        fail(f"--metric: {error}")
    registry = _registry()
    config = EvalConfig(metrics=entries, features=_features_option(features) if features else None, n=count,
                        seed=seed, split=split, reference=str(reference) if reference else None)
    config = config.with_defaults(registry, all_metrics=True)
    try:
        with console.work_progress() as progress:
            record = evaluate_run(registry, run_dir, config, checkpoint=checkpoint, raw=raw,
                                  info=console.info, warn=console.warn, progress=progress)
    except UnsavedScores as unsaved:
        console.eval_table(unsaved.record)
        console.error(str(unsaved))
        sys.exit(1)
    console.eval_table(record)
    console.info(f"recorded in {RunDir(run_dir).eval}")


def _features_option(text: str):
    from gankit.eval_config import parse_features_option

    try:
        return parse_features_option(text)
    except ValueError as error:
        fail(f"--features: {error}")


@main.command()
@click.argument("recipe", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The reference file to write (.npz).")
@click.option("--features",
              help="Feature extractor, with any parameters, as in gankit evaluate (domain:steps=300). "
                   "Default: the one the plugins mark as default (bundled: domain).")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("-n", "count", default=10_000, show_default=True, type=click.IntRange(2, 1_000_000),
              help="Real images, at most the whole split (and as many more for the floor).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seed of the real subset.")
def stats(recipe: Path, output: Path, features: str, split: str, count: int, seed: int) -> None:
    """Compute the real side of evaluations once, from RECIPE's dataset: features, their mean
    and covariance, labels and a floor sample, for gankit evaluate --reference or [eval] reference."""
    from gankit.eval_config import EvalConfig
    from gankit.recipe import load_recipe
    from gankit.sampling import write_stats

    config = EvalConfig(features=_features_option(features) if features else None, n=count, seed=seed, split=split)
    with failing_in_one_line(output):
        registry = _registry()
        with console.work_progress() as progress:
            meta = write_stats(registry, load_recipe(recipe, [], registry), config, output,
                               info=console.info, warn=console.warn, progress=progress)
    floor = meta["floor"].get("how") or f"no floor sample: {meta['floor']['why_not']}"
    console.info(f"wrote {meta['count']:,} {meta['split']} images' {meta['extractor']['name']} features to {output}; {floor}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-o", "output", default=Path("report.html"), show_default=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The HTML file to write.")
@click.option("--gif-max-kb", type=click.IntRange(0),
              help="Embed a run's progress.gif only up to this size (0: never); bigger ones are linked. "
                   "Default: 1024, or an equal share of 20 MB among the runs if less.")
def report(paths: tuple[Path, ...], output: Path, gif_max_kb: int | None) -> None:
    """Write one self-contained HTML page about runs: a sortable table, each run's latest
    samples, curves and GIF, and its resolved recipe; configurations run over several seeds,
    ranked; and each search's trials, best configuration and pictures. PATHS are run
    directories, directories of runs (a batch's --runs-dir), or searches (searches/NNNNN-name)."""
    from gankit.report import write_report
    from gankit.safekeeping import writable_root

    left_out: list[str] = []
    with failing_in_one_line(output):
        writable_root(output.parent, "-o")
        runs = write_report(list(paths), output, gif_max_bytes=None if gif_max_kb is None else gif_max_kb * 1024,
                            left_out=left_out)
    for reason in left_out:
        console.warn(f"left out of the report: {reason}")
    console.info(f"wrote {output} ({len(runs)} run{'s' if len(runs) != 1 else ''}, {output.stat().st_size // 1024:,} KB)")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--at", type=click.Choice(("last", "best")), default="last", show_default=True,
              help="Score each run at its last evaluation or at its best checkpoint.")
@click.option("--metric", help="Rank by this [eval] score (default: each recipe's first metric).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(paths: tuple[Path, ...], at: str, metric: str | None, as_json: bool) -> None:
    """Which configuration is better, and is the difference real: the runs in PATHS (run
    directories, or folders of them), grouped into configurations that differ only in their
    seed, each scored as mean ± sd over its seeds and ranked, with Welch's t-test against
    the best."""
    import json

    from gankit.compare import compare as compare_runs

    comparison = compare_runs(paths, at, metric)
    if as_json:
        click.echo(json.dumps(comparison.as_dict(), indent=2))
    else:
        console.comparison_table(comparison)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--format", "format_", required=True, metavar="FORMAT",
              help="onnx, torchscript (torch runs), savedmodel (TensorFlow runs), or web: a page that draws "
                   "samples in a browser.")
@click.option("-o", "output", type=click.Path(path_type=Path), help="The folder to write; default: RUN_DIR/export/FORMAT.")
@click.option("--checkpoint", help="A checkpoint of the run (best, step_00000500) or a path; default: the last.")
@click.option("--raw", is_flag=True, help="Export the trained generator, not its EMA (for runs with train.ema).")
@click.option("--onnxruntime-web", "onnxruntime_web", type=click.Path(path_type=Path), envvar="GANKIT_ONNXRUNTIME_WEB",
              help="--format web: a local onnxruntime-web tarball (npm pack) instead of the download.")
def export(run_dir: Path, format_: str, output: Path | None, checkpoint: str | None, raw: bool,
           onnxruntime_web: Path | None) -> None:
    """Export a run's generator as one standalone model, with export.json beside it."""
    from gankit.export import default_folder, export_run
    from gankit.safekeeping import writable_root

    folder = output or default_folder(run_dir, format_)
    with failing_in_one_line(folder):
        writable_root(folder, "-o")
        described = export_run(_registry(), run_dir, format_, folder, raw=raw, checkpoint=checkpoint,
                               onnxruntime_web=onnxruntime_web)
    shown = "index.html" if format_ == "web" else described["file"]
    console.info(f"wrote {folder / shown} ({format_}, the {described['generator']} generator of step "
                 f"{described['step']}) and {folder / 'export.json'}")


@main.group()
def search() -> None:
    """What a search (a recipe with [search], run by gankit run) found."""


@search.command("best")
@click.argument("search_dir", type=click.Path(path_type=Path))
@click.option("-o", "output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The recipe file to write.")
@click.option("--rank", default=1, show_default=True, type=click.IntRange(1),
              help="Write the configuration at this rank instead (2: the runner-up).")
def search_best(search_dir: Path, output: Path, rank: int) -> None:
    """Write the best configuration SEARCH_DIR found as an ordinary recipe (without [search])."""
    from gankit.search import best_recipe

    if not (search_dir / "search.json").is_file():
        fail(f"{search_dir}: not a search directory (no search.json); searches are in searches/ by default")
    with failing_in_one_line(output):
        text, trial = best_recipe(search_dir, _registry(), rank)
        output.write_text(text)
    console.info(f"wrote {output}: trial {trial.number}, {trial.value:.4g}; run it with: gankit run {output}")


@main.command("new-plugin")
@click.argument("name")
@click.option("--kind", "kinds", multiple=True, required=True,
              type=click.Choice(("architecture", "dataset", "exporter", "metric")),
              help="What the plugin provides; repeat for more than one.")
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True,
              help="Where to write the package's folder, gankit-NAME.")
def new_plugin(name: str, kinds: tuple[str, ...], output: Path) -> None:
    """Write a ready plugin package, gankit-NAME: a pyproject with the entry point, the
    components (each named NAME), a recipe and tests that use gankit.testing."""
    from gankit.scaffold import write_plugin

    folder = write_plugin(name, list(kinds), output)
    shown = folder if folder.is_absolute() else f"./{folder}"
    console.info(f"wrote {shown}; next: pip install -e '{shown}[test]' && python -m pytest {shown}")
