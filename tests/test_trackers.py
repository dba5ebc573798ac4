"""The mlflow and wandb exporters, read back through MLflow's own client (from its SQLite
store and from an ``mlflow server``) and W&B's own record format."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tomli_w

from conftest import PATIENCE, cli, gankit, install_outside_package, one_line, recipe_dict
from gankit import __version__

TRAIN = {"steps": 6, "log_every": 2, "checkpoint_every": 4, "keep_checkpoints": 3}
BACKEND = {"use": "torch", "device": "cpu", "threads": 1}
LOGGED = ("d_loss", "g_loss", "d_real", "d_fake")

GATE = """
import time
from pathlib import Path

from gankit import hookimpl
from gankit.events import StepLogged


class Gate:
    \"\"\"Holds the run at step 6 (after the checkpoint at 4) until the test opens the gate.\"\"\"

    sample_every = None

    def __init__(self, params, run_dir):
        self.folder = Path(run_dir).parent

    def handle(self, event):
        if isinstance(event, StepLogged) and event.step == 6 and not (self.folder / "open").exists():
            (self.folder / "reached").write_text("")
            while not (self.folder / "open").exists():
                time.sleep(0.05)


@hookimpl
def register_exporters(register):
    register("gate", Gate, description="holds a run at step 6 (a test's)")
"""


def logged_steps(run_dir: Path) -> dict[int, dict]:
    return {line["step"]: line for line in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def tiny_recipe(tmp_path: Path, tiny_mnist: Path, **sections) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(tomli_w.dumps(recipe_dict(tiny_mnist, **{"backend": BACKEND, "train": TRAIN, **sections})))
    return path


def resume_as_if_killed_before_the_last_checkpoint(run_dir: Path) -> None:
    """The process had logged and sent step 6 but died before its checkpoint was saved."""
    shutil.rmtree(run_dir / "checkpoints" / "step_00000006")
    result = cli("run", "--resume", run_dir, "--set", "train.steps=8")
    assert result.exit_code == 0, result.output


def wait_until(predicate, process: subprocess.Popen, what: str) -> None:
    """Poll ``predicate`` until it holds: a bound for a hang, never a judgement of speed."""
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        assert process.poll() is None, f"the process ended while waiting for {what}"
        assert time.monotonic() < deadline, f"still waiting for {what} after {PATIENCE} s"
        time.sleep(0.1)


# MLflow


def mlflow_run(tracking_uri: str):
    """The one run in the store, its client, and its metric histories by key."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run, {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                         for key in run.data.metrics}


def check_mlflow_run(tracking_uri: str, run_dir: Path, steps: list[int]) -> None:
    """Params, metrics (each step once, equal to metrics.jsonl), artifacts and tags."""
    client, run, history = mlflow_run(tracking_uri)
    params, tags = run.data.params, run.data.tags
    assert (params["dataset.use"], params["architecture.g_hidden"], params["train.betas"]) == ("mnist", "[32]", "[0.5, 0.999]")
    assert (tags["gankit.run_dir"], tags["gankit.version"]) == (str(run_dir.resolve()), __version__)
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    logged = logged_steps(run_dir)
    for key in LOGGED:
        assert [step for step, _ in history[f"train/{key}"]] == steps, key
        assert [value for _, value in history[f"train/{key}"]] == pytest.approx([logged[s][key] for s in steps]), key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "progress.gif", "samples"} <= artifacts
    grids = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert grids == [f"samples/step_{step:08d}.png" for step in (3, 6, 8)]
    local = client.download_artifacts(run.info.run_id, grids[-1], str(run_dir.parent.parent / "downloaded"))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_local_store_a_sweep_run_and_its_resume_each_step_once(tmp_path, tiny_mnist):
    pytest.importorskip("mlflow")
    runs = tmp_path / "runs"
    result = cli("run", tiny_recipe(tmp_path, tiny_mnist, sweep={"train.lr_g": [1e-4]}), "--runs-dir", runs,
                 "--set", "export.mlflow={}")
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    resume_as_if_killed_before_the_last_checkpoint(run_dir)

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # beside the runs folder
    check_mlflow_run(store, run_dir, [2, 4, 6, 8])
    client, run, _ = mlflow_run(store)
    assert client.get_experiment(run.info.experiment_id).name == str(runs.resolve())
    assert (run.data.params["train.lr_g"], run.data.params["train.steps"]) == ("0.0001", "6")
    assert run.data.tags["resumed.train.steps"] == "8"
    assert "warning" not in result.output


@pytest.fixture
def mlflow_server(tmp_path):
    """``mlflow server`` on a free port of 127.0.0.1, waited for on its health endpoint;
    yields its URI and a function that stops it."""
    pytest.importorskip("mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", tmp_path / "served"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def stop() -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and the uvicorn process it started
            process.wait(PATIENCE)

    try:
        wait_until(healthy, process, f"mlflow server's health endpoint (log: {tmp_path / 'server.log'})")
        yield uri, stop
    finally:
        stop()
        log.close()


@pytest.fixture
def gate(tmp_path, monkeypatch):
    """The ``gate`` exporter installed for the processes the test starts."""
    site = install_outside_package(tmp_path / "site", "gate-gankit", "gate_gankit", GATE, {"gate": "gate_gankit"})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(site))


def sent_steps(uri: str) -> list[int]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/d_loss")] if runs else []


def start_gated_run(tmp_path, tiny_mnist, uri: str, *extra: str):
    recipe = tiny_recipe(tmp_path, tiny_mnist, train={**TRAIN, "steps": 8})
    runs = tmp_path / "runs"
    process = gankit("run", recipe, "--runs-dir", runs, "--set", "export.gate={}",
                     "--set", f'export.mlflow.tracking_uri="{uri}"', *extra)
    wait_until((runs / "reached").exists, process, "the run to reach step 6")
    state = runs / "00000-tiny" / "mlflow.json"
    wait_until(lambda: state.is_file() and json.loads(state.read_text())["sent_through"] == 4, process,
               "the exporter to have delivered what came before the checkpoint at step 4")
    assert sent_steps(uri) == [2, 4]
    return process, runs


def test_mlflow_server_a_killed_run_resumes_the_same_run_with_each_step_once(tmp_path, tiny_mnist, mlflow_server, gate):
    uri, _ = mlflow_server
    process, runs = start_gated_run(tmp_path, tiny_mnist, uri)
    process.kill()  # at step 6: logged past the checkpoint at 4
    process.communicate(timeout=PATIENCE)
    (runs / "open").write_text("")
    (run_dir,) = runs.glob("0*")
    assert not (run_dir / "summary.json").exists()

    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    check_mlflow_run(uri, run_dir, [2, 4, 6, 8])


def test_a_tracking_server_stopped_mid_run_leaves_the_run_completed_and_one_warning(tmp_path, tiny_mnist,
                                                                                     mlflow_server, gate):
    uri, stop = mlflow_server
    process, runs = start_gated_run(tmp_path, tiny_mnist, uri, "--set", "export.mlflow.timeout=5")
    stop()
    (runs / "open").write_text("")
    output = process.communicate(timeout=PATIENCE)[0]
    assert process.returncode == 0, output
    (run_dir,) = runs.glob("0*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["steps"]) == ("completed", 8)
    warnings = [line for line in output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: exporter 'mlflow' failed at step"), output


def test_a_server_that_never_answers_holds_the_run_no_longer_than_the_timeout(write_recipe, tmp_path):
    pytest.importorskip("mlflow")
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = cli("run", write_recipe(backend=BACKEND), "--runs-dir", tmp_path / "runs",
                     "--set", f'export.mlflow={{tracking_uri = "{uri}", timeout = 2}}')
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "runs" / "00000-tiny" / "summary.json").read_text())["status"] == "completed"
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "exporter 'mlflow'" in warnings[0] and "timeout of 2 s" in warnings[0], result.output


@pytest.mark.parametrize("uri", ["localhost:5000:x", "http://", "http://host:port", "nowhere"])
def test_a_bad_tracking_uri_is_one_line_before_anything_runs(write_recipe, tmp_path, uri):
    result = cli("run", write_recipe(), "--runs-dir", tmp_path / "runs", "--set", f'export.mlflow.tracking_uri="{uri}"')
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "export.2.tracking_uri" in result.output, result.output
    assert "expected a tracking URI" in one_line(result.output)
    assert not (tmp_path / "runs").exists()


# Weights & Biases


def wandb_records(path: Path):
    """The records of a ``.wandb`` file: W&B's own protobuf ``Record`` messages in LevelDB's
    log format (a 7-byte header ``:W&B``, 0xBEE1, version; then 32 KiB blocks of chunks,
    each a 4-byte checksum, a 2-byte little-endian length and a type: 1 whole, 2 first,
    3 middle, 4 last), as wandb's ``datastore`` writes and ``wandb sync`` reads them."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, position, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B", data[:7]
    while position + 7 <= len(data):
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        if block - position % block < 7 or kind == 0:  # the rest of the block is padding
            position += block - position % block
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            yield Record.FromString(pending)
            pending = b""


def wandb_sessions(run_dir: Path) -> list[dict]:
    """Each offline session of the run: its run id, config, history rows by step, and files."""
    sessions = []
    for file in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        session = {"id": None, "config": {}, "history": {}, "files": set()}
        for record in wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                session["id"] = record.run.run_id
                session["config"] = {item.key: json.loads(item.value_json) for item in record.run.config.update}
                session["group"] = record.run.run_group
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                assert row["_step"] not in session["history"], f"step {row['_step']} twice"
                session["history"][row["_step"]] = row
            elif kind == "files":
                session["files"] |= {file.path for file in record.files.files}
        sessions.append(session)
    return sessions


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """No W&B key, mode or settings of the user's: W&B runs offline."""
    pytest.importorskip("wandb")
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def test_wandb_offline_history_config_files_and_a_resume_each_step_once(tmp_path, tiny_mnist, wandb_offline):
    runs = tmp_path / "runs"
    result = cli("run", tiny_recipe(tmp_path, tiny_mnist, sweep={"train.lr_g": [1e-4]}), "--runs-dir", runs,
                 "--set", 'export.wandb={tags = ["tiny"]}')
    assert result.exit_code == 0, result.output
    (run_dir,) = runs.iterdir()
    resume_as_if_killed_before_the_last_checkpoint(run_dir)

    first, second = wandb_sessions(run_dir)
    assert first["id"] == second["id"] == json.loads((run_dir / "wandb.json").read_text())["run_id"]
    assert (first["config"]["train.lr_g"], first["config"]["dataset.use"]) == (1e-4, "mnist")
    assert first["config"]["gankit.run_dir"] == str(run_dir.resolve()) and first["group"] == str(runs.resolve())
    history = {**first["history"], **second["history"]}
    assert sorted(first["history"]) == [2, 3, 4, 6] and sorted(second["history"]) == [8]  # step 6 sent once
    logged = logged_steps(run_dir)
    for key in LOGGED:
        steps = [step for step, row in sorted(history.items()) if f"train/{key}" in row]
        assert steps == [2, 4, 6, 8], key
        assert [history[s][f"train/{key}"] for s in steps] == pytest.approx([logged[s][key] for s in steps]), key
    assert [step for step, row in sorted(history.items()) if row.get("samples/_type") == "image-file"] == [3, 6, 8]
    assert {"curves.png", "progress.gif"} <= second["files"]
    *_, last_gif = sorted(run_dir.glob("wandb/offline-run-*/files/progress.gif"))  # the resumed session's
    assert last_gif.read_bytes() == (run_dir / "progress.gif").read_bytes()


# Both


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_each_passes_the_exporter_conformance_check(name, tmp_path, request):
    pytest.importorskip(name)
    if name == "wandb":
        request.getfixturevalue("wandb_offline")
    from gankit.testing import check_exporter

    run_dir = check_exporter(name, tmp_path, with_exporters=[{"use": "png", "every": 1}, {"use": "gif"}])
    assert json.loads((run_dir / f"{name}.json").read_text())["sent_through"] == 4


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_without_the_module_the_run_does_not_start_and_says_what_to_install(name, write_recipe, tmp_path, monkeypatch):
    import gankit.registry

    installed = gankit.registry._installed
    monkeypatch.setattr(gankit.registry, "_installed", lambda module: module != name and installed(module))
    result = cli("run", write_recipe(export=[{"use": name}]), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")
    assert f"exporter {name!r} (builtin) needs the module {name!r}" in result.output
    assert f"pip install 'gankit[{name}]'" in result.output
    assert not (tmp_path / "runs").exists()
