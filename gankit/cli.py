"""The ``gankit`` command. Thin: each command parses options and calls into the core."""

from __future__ import annotations

import signal
import sys
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
  gankit list-plugins --kind architecture
  gankit sample runs/00000-dcgan_mnist -n 64 -o grid.png
"""


def fail(message: str) -> None:
    """A one-line error and exit code 2: bad input, nothing was run."""
    console.error(message)
    sys.exit(2)


@click.group(epilog=EXAMPLES)
@click.version_option(__version__, prog_name="gankit")
def main() -> None:
    """Train GANs from declarative TOML recipes."""


def _registry():
    from gankit.plugins import load_registry
    from gankit.registry import RegistryError

    try:
        return load_registry()
    except RegistryError as error:
        fail(str(error))


class StopFlag:
    """First Ctrl-C (or SIGTERM): finish the step, checkpoint, stop. Second: abort now."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        console.warn("stopping after this step (press Ctrl-C again to abort now)")

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)


@main.command()
@click.argument("recipes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. train.epochs=1.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and do nothing.")
@click.option("--runs-dir", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Where run directories are created.")
def run(recipes: tuple[Path, ...], overrides: tuple[str, ...], dry_run: bool, runs_dir: Path) -> None:
    """Train the GAN each RECIPE describes, one after another."""
    import tomli_w

    from gankit.data import DataContext
    from gankit.recipe import RecipeError, load_recipe
    from gankit.runner import RunError, run as run_recipe

    registry = _registry()
    try:
        loaded = [load_recipe(path, list(overrides), registry) for path in recipes]
    except RecipeError as error:
        fail(str(error))
    if dry_run:
        for recipe in loaded:
            console.show_toml(f"# {recipe.path}\n" + tomli_w.dumps(recipe.as_dict()))
        return
    stop = StopFlag()
    stop.install()
    context = DataContext(warn=console.warn)
    for recipe in loaded:
        progress = console.RunProgress(recipe.name)
        try:
            with progress:
                result = run_recipe(recipe, runs_root=runs_dir, context=context,
                                    listeners=[progress.handle], should_stop=stop)
        except RunError as error:
            fail(str(error))
        finished = result.finished
        if finished.status == "completed":
            console.info(f"done: {result.run_dir} ({finished.step} steps in {result.seconds:.0f}s)")
        elif finished.status == "interrupted":
            console.warn(f"{finished.message}; checkpoint saved in {result.run_dir / 'checkpoints'}")
            sys.exit(130)
        else:
            console.error(finished.message)
            sys.exit(1)


@main.command("list-plugins")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of component.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_plugins(kind: str | None, as_json: bool) -> None:
    """List the datasets, architectures, backends and exporters installed."""
    registry = _registry()
    if as_json:
        console.plugins_json(registry, kind)
    else:
        console.plugins_table(registry, kind)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("-n", "count", default=64, show_default=True, type=click.IntRange(1, 100_000), help="How many samples.")
@click.option("-o", "output", required=True, type=click.Path(path_type=Path), help="A .png grid or an .npz of uint8 arrays.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the noise.")
def sample(run_dir: Path, count: int, output: Path, seed: int) -> None:
    """Draw samples from a run's last checkpoint."""
    from gankit.recipe import RecipeError
    from gankit.runner import RunError
    from gankit.sampling import SampleError, sample_run

    if output.suffix.lower() not in (".png", ".npz"):
        fail(f"-o {output}: use a .png (grid) or .npz (raw uint8 arrays) file name")
    try:
        checkpoint = sample_run(_registry(), run_dir, count, seed, output)
    except (RecipeError, RunError, SampleError) as error:
        fail(str(error))
    console.info(f"wrote {count} samples from {checkpoint} to {output}")
