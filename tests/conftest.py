"""Shared fixtures: an isolated cache, tiny real MNIST data, and recipe files."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomli_w

# One OpenMP thread in the test process and every run it starts, before torch is imported:
# torch's "auto" thread count follows the machine's load, and two runs a test compares
# exactly must not differ because the machine was busier when one of them started.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
BUNDLED_MNIST = REPO / "plugins" / "data" / "mnist"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache, so nothing leaks between tests or from the user."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GANKIT_CACHE", str(cache))
    return cache


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = {3: 2051, 1: 2049}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def gankit(*args, **kwargs) -> subprocess.Popen:
    """``gankit ARGS`` in a process of its own, stdout and stderr together as text."""
    return subprocess.Popen([sys.executable, "-m", "gankit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


PATIENCE = 1800
"""Seconds a test waits for a process before it gives up: never a judgement of the machine's
speed (a test waits on what the process does: its files, its output, its exit), only a
bound for a process that hangs, generous enough for a machine many times slower than ours."""


def wait_for(predicate, process: subprocess.Popen, seconds: float = PATIENCE) -> None:
    """Poll ``predicate`` until it holds; fail with the process's output if the process
    ends first, or if it is still going after ``seconds`` (a hang, not a slow machine)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, process.communicate()[0]
        if time.monotonic() >= deadline:
            process.kill()
            raise AssertionError(f"still waiting after {seconds:.0f} s; the process said: {process.communicate()[0]}")
        time.sleep(0.05)


def real_mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` real MNIST test images and labels, from the copy shipped in the package."""
    from gankit_plugins.idx import read_idx

    images = read_idx(BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz", 3)[:count]
    labels = read_idx(BUNDLED_MNIST / "t10k-labels-idx1-ubyte.gz", 1)[:count]
    return images, labels


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A directory holding 256 real MNIST images as official-format train and test files."""
    root = tmp_path_factory.mktemp("mnist")
    images, labels = real_mnist(256)
    for split in ("train", "t10k"):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def recipe_dict(mnist_root: Path, **sections) -> dict:
    """A small, fast recipe on ``mnist_root``. A keyword argument extends that table, or
    replaces it when it names another component (``use``) or is not a table."""
    recipe = {
        "name": "tiny",
        "seed": 0,
        "dataset": {"use": "mnist", "root": str(mnist_root), "download": False},
        "architecture": {"use": "mlp", "g_hidden": [32], "d_hidden": [32]},
        "backend": {"use": "torch", "device": "cpu"},
        "train": {"steps": 6, "batch_size": 32, "log_every": 2, "checkpoint_every": 4},
        "export": [{"use": "png", "every": 3}, {"use": "gif"}],
    }
    for key, value in sections.items():
        current = recipe.get(key, {}).get("use") if isinstance(recipe.get(key), dict) else None
        same_component = isinstance(value, dict) and value.get("use", current) == current
        if same_component and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


@pytest.fixture
def write_recipe(tmp_path, tiny_mnist):
    def write(filename: str = "tiny.toml", **sections) -> Path:
        path = tmp_path / filename
        path.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, **sections)))
        return path

    return write


def overwrite_4kb(path: Path) -> None:
    """The damage from issue 12: 4 KB in the middle of a file overwritten by 0xff; the file
    still parses, so only its checksum can tell."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = b"\xff" * min(4096, len(data) - middle)
    path.write_bytes(bytes(data))


class Trained:
    """A backend's trainer on a recipe's data, stepped by the shared schedule, as a run steps it."""

    def __init__(self, recipe_path: Path):
        from gankit.data import DataContext
        from gankit.plugins import load_registry
        from gankit.recipe import load_recipe
        from gankit.runner import build_trainer, load_data
        from gankit.training import Schedule

        recipe = load_recipe(recipe_path, [], load_registry())
        data = load_data(recipe, DataContext(warn=lambda message: None))
        self.trainer = build_trainer(recipe, data.spec)
        self.trainer.set_data(data.images)
        self.schedule = Schedule(len(data.images), recipe.train.batch_size, recipe.train.d_steps, recipe.seed)

    def steps(self, start: int, stop: int) -> list[dict[str, float]]:
        return [{k: float(v) for k, v in self.trainer.train_step(self.schedule.batches(step), step).items()}
                for step in range(start, stop)]

    @classmethod
    def interrupted(cls, recipe_path: Path, stop: int, end: int, directory: Path):
        """Steps 0..stop, a checkpoint into ``directory``, a fresh trainer loading it, steps
        stop..end: every step's losses, and the resumed harness."""
        first = cls(recipe_path)
        head = first.steps(0, stop)
        first.trainer.save(directory)
        resumed = cls(recipe_path)
        resumed.trainer.load(directory)
        return head + resumed.steps(stop, end), resumed


def install_outside_package(root: Path, distribution: str, module: str, source: str, entry_points: dict[str, str]) -> Path:
    """An installed third-party distribution, as pip leaves one: ``module.py`` and its
    ``.dist-info`` (metadata and the ``gankit`` entry points) in a folder of its own under
    ``root``. Put that folder on ``sys.path`` to install it; take it off to uninstall it."""
    site = root / distribution
    info = site / f"{distribution.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[gankit]\n{lines}")
    (site / f"{module}.py").write_text(source)
    return site


OUTSIDE_PACKAGES = {
    # A hook whose name lacks its final "s": pluggy knows no such hook.
    "typo-gankit": ("typo_gankit", {"typo": "typo_gankit"}, """
from gankit import hookimpl, nn

@hookimpl
def register_architecture(register):
    register("typo-arch", lambda params, spec: None, description="never registered")
"""),
    # A second plugin registering the bundled `dcgan`, and a harmless exporter beside it.
    "clash-gankit": ("clash_gankit", {"clash": "clash_gankit"}, """
from gankit import hookimpl

@hookimpl
def register_architectures(register):
    register("dcgan", lambda params, spec: None, description="another dcgan")

@hookimpl
def register_exporters(register):
    register("clash-csv", lambda params, run_dir: None, description="a csv of the losses")
"""),
    # An entry point named like the bundled `png` plugin.
    "png-gankit": ("png_gankit", {"png": "png_gankit"}, """
from gankit import hookimpl

@hookimpl
def register_exporters(register):
    register("fancy-png", lambda params, run_dir: None, description="prettier grids")
"""),
    # A plugin written for a plugin API this gankit does not have.
    "future-gankit": ("future_gankit", {"future": "future_gankit"}, """
from gankit import hookimpl

GANKIT_API = ">=2,<3"

@hookimpl
def register_datasets(register):
    register("future-data", lambda params, context: None, description="from the future")
"""),
    # Parameters of every kind pydantic offers (a tuple, a path, an enum, a nested model,
    # gankit's Every with plain defaults),
    # and a dataset and an exporter whose factories fail in ways no one planned for.
    "fields-gankit": ("fields_gankit", {"fields": "fields_gankit"}, """
import enum
from pathlib import Path
from typing import Optional

from pydantic import Field

from gankit import hookimpl, nn
from gankit.params import Every, Params


class Activation(enum.Enum):
    RELU = "relu"
    LEAKY = "leaky"


class Head(Params):
    slope: float = Field(0.2, gt=0, lt=1)
    bias: bool = True


class FieldsParams(Params):
    hidden: tuple[int, ...] = (32,)
    activation: Activation = Activation.RELU
    head: Head = Head()
    notes: Optional[Path] = None
    refresh: Every = Field(500)
    window: Every = "2 epochs"


def build(params, spec):
    assert params.refresh.in_steps(10) == 500 and params.window.in_steps(10) == 20
    act = nn.ReLU() if params.activation is Activation.RELU else nn.LeakyReLU(params.head.slope)
    layers = tuple(layer for width in params.hidden for layer in (nn.Dense(width), act))
    generator = nn.Network((8,), (*layers, nn.Dense(spec.height * spec.width * spec.channels), nn.Tanh(),
                                  nn.Reshape(spec.shape)))
    discriminator = nn.Network(spec.shape, (nn.Flatten(), *layers, nn.LeakyReLU(params.head.slope),
                                            nn.Dense(1, bias=params.head.bias)))
    return nn.Architecture(8, generator, discriminator)


class Broken:
    def __init__(self, params, *rest):
        raise KeyError("no_such_column")


@hookimpl
def register_architectures(register):
    register("fields-mlp", build, params=FieldsParams, description="an MLP with parameters of every kind")


@hookimpl
def register_datasets(register):
    register("broken-data", Broken, description="fails with a KeyError")
    register("needs-module", Broken, requires=("no_such_module_xyz",), description="needs a missing module")


@hookimpl
def register_exporters(register):
    register("broken-export", Broken, description="fails with a KeyError")
"""),
}


@pytest.fixture(scope="session")
def outside_packages(tmp_path_factory) -> dict[str, Path]:
    """Each of OUTSIDE_PACKAGES installed into a folder of its own (not yet on sys.path)."""
    root = tmp_path_factory.mktemp("site")
    return {dist: install_outside_package(root, dist, module, source, eps)
            for dist, (module, eps, source) in OUTSIDE_PACKAGES.items()}


@pytest.fixture
def install(outside_packages, monkeypatch):
    """``install("clash-gankit", ...)``: those outside packages are installed for this test."""
    def install(*distributions: str) -> None:
        for distribution in distributions:
            monkeypatch.syspath_prepend(str(outside_packages[distribution]))

    return install


def cli(*args):
    """``gankit ARGS`` in this process (click's runner), exceptions left to propagate."""
    from click.testing import CliRunner

    from gankit.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def runs_made_on_first_use(tiny_mnist: Path, folders, prefix: str, **sections):
    """``run(backend)``: the directory of a tiny run of ``recipe_dict(tiny_mnist, **sections)``
    on ``backend`` (on the CPU), trained through the command line the first time it is
    asked for; ``folders`` is a ``tmp_path_factory``."""
    made = {}

    def run(backend: str) -> Path:
        if backend not in made:
            root = folders.mktemp(f"{prefix}-{backend}")
            recipe = root / "tiny.toml"
            recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, backend={"use": backend, "device": "cpu"},
                                                        **sections)))
            result = cli("run", recipe, "--runs-dir", root / "runs")
            assert result.exit_code == 0, result.output
            made[backend] = root / "runs" / "00000-tiny"
        return made[backend]

    return run


def one_line(output: str) -> str:
    return " ".join(output.split())


def checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}"


@pytest.fixture(scope="module")
def finished_run(tiny_mnist, tmp_path_factory) -> Path:
    """A completed 6-step run with checkpoints at steps 2, 4 and 6 (copied by each test)."""
    root = tmp_path_factory.mktemp("finished")
    recipe = root / "tiny.toml"
    recipe.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, train={"steps": 6, "checkpoint_every": 2})))
    result = cli("run", recipe, "--runs-dir", root / "runs")
    assert result.exit_code == 0, result.output
    return root / "runs" / "00000-tiny"


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    """A copy of ``finished_run`` for one test to change."""
    copy = tmp_path / "runs" / finished_run.name
    shutil.copytree(finished_run, copy)
    return copy


TEST_SCORER = """
import numpy as np

from gankit import hookimpl
from gankit.evaluation import Features


class Pixels:
    \"\"\"A feature extractor that costs nothing: the first pixels of each image.\"\"\"

    def __init__(self, params, context):
        pass

    def describe(self):
        return {"name": "pixels", "features": "the first 8 pixels"}

    def extract(self, images):
        flat = images.reshape(len(images), -1)[:, :8].astype(np.float32) / 255
        return Features(flat, np.zeros((len(images), 1), np.float32))


class EvalSeed:
    \"\"\"A score a test sets: the evaluation's seed (so a search of eval.seed knows every trial's score).\"\"\"

    uses_real, higher_is_better = False, False

    def __init__(self, params):
        pass

    def describe(self):
        return {"what": "the eval seed"}

    def compute(self, fake, real, seed):
        return {"eval_seed": float(seed)}


@hookimpl
def register_metrics(register):
    register("eval_seed", EvalSeed, description="the eval seed (a test's score)")
    register("eval_seed_elsewhere", EvalSeed, description="the eval seed, from a module not installed",
             requires=("gankit_no_such_module",))


@hookimpl
def register_feature_extractors(register):
    register("pixels", Pixels, description="the first pixels (a test's features)")
"""


@pytest.fixture(scope="session")
def test_scorer(tmp_path_factory) -> Path:
    """A folder that, on sys.path or PYTHONPATH, installs a plugin with a free feature
    extractor (``pixels``) and a metric whose score a test sets (``eval_seed``)."""
    folder = tmp_path_factory.mktemp("scorer")
    (folder / "gankit_test_scorer.py").write_text(TEST_SCORER)
    info = folder / "gankit_test_scorer-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gankit-test-scorer\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gankit]\ntest-scorer = gankit_test_scorer\n")
    return folder


def install_scorer(patch: pytest.MonkeyPatch, folder: Path) -> None:
    """The test scorer plugin in ``folder`` (``test_scorer``), importable here and in every
    process a test starts, for as long as ``patch`` lasts."""
    patch.syspath_prepend(str(folder))
    patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def scorer_installed(test_scorer, monkeypatch):
    """The test scorer plugin, here and in every process the test starts."""
    install_scorer(monkeypatch, test_scorer)


@pytest.fixture(scope="session")
def ray_cluster(test_scorer):
    """A Ray cluster on this machine: a head that runs nothing and two one-CPU workers
    (whose Python path has the test scorer plugin)."""
    import os

    cluster_utils = pytest.importorskip("ray.cluster_utils")
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(test_scorer), previous]))
    try:
        cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "object_store_memory": 80 * 2**20, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
        cluster.wait_for_nodes()
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = previous
    yield cluster.address
    cluster.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """For a module: torch on one thread. On a CPU shared with other jobs, torch's default
    threads spin and run many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
