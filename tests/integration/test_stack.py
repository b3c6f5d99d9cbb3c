"""The local stack as real processes on free loopback ports, in a temporary state dir.

Starts Milvus Lite, MLflow, Prefect server, the deployments of a throwaway project and a
process worker; runs one flow through the worker; then checks idempotence, stale pid
files, a foreign port and a clean shutdown. Start times and memory are logged.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexpair import stack
from indexpair.errors import StackError
from indexpair.settings import Settings
from indexpair.stack import procs
from indexpair.stack.specs import executable

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

FLOW = """
import os
import time
from pathlib import Path

from prefect import flow


@flow
def promote() -> None:
    report = {"cwd": os.getcwd(), "state_dir": os.environ["INDEXPAIR_STATE_DIR"]}
    Path(os.environ["INDEXPAIR_STATE_DIR"], "flow_report.json").write_text(repr(report))


@flow
def hang() -> None:
    time.sleep(600)
"""

PREFECT_YAML = """
name: stack-test
prefect-version: 3.9.1
build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $INDEXPAIR_PROJECT_DIR }}"
deployments:
  - name: promote
    entrypoint: flows/promote.py:promote
    work_pool:
      name: indexpair-local
  - name: hang
    entrypoint: flows/promote.py:hang
    work_pool:
      name: indexpair-local
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(state_dir: Path) -> Settings:
    return Settings(
        milvus_uri=f"http://127.0.0.1:{_free_port()}",
        mlflow_tracking_uri=f"http://127.0.0.1:{_free_port()}",
        prefect_api_url=f"http://127.0.0.1:{_free_port()}/api",
        state_dir=state_dir,
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "flows").mkdir()
    (root / "flows" / "promote.py").write_text(FLOW)
    (root / "prefect.yaml").write_text(PREFECT_YAML)
    return root


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, project: Path
) -> Iterator[tuple[Settings, dict[str, stack.ServiceStatus]]]:
    settings = _settings(tmp_path_factory.mktemp("state"))
    try:
        for name in stack.ALL_SERVICES:
            started = time.monotonic()
            stack.up(settings, project, [name])
            logger.info("%s healthy in %.1f s", name, time.monotonic() - started)
        statuses = {s.name: s for s in stack.status(settings, project_dir=project)}
        for s in statuses.values():
            logger.info("%s pid=%s rss=%s MiB", s.name, s.pid, s.rss_mb and round(s.rss_mb))
        yield settings, statuses
    finally:
        stack.down(settings)


def test_every_service_is_running_and_healthy(
    running: tuple[Settings, dict[str, stack.ServiceStatus]],
) -> None:
    settings, statuses = running
    assert list(statuses) == list(stack.ALL_SERVICES)
    assert all(s.running and s.healthy for s in statuses.values()), statuses
    for name in ("milvus", "mlflow", "prefect", "worker"):
        assert (settings.state_dir / "pids" / f"{name}.pid").is_file()
        assert statuses[name].log.is_file()
    key = settings.state_dir / "mlflow" / "webhook_secret.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text() not in statuses["mlflow"].log.read_text()


def test_second_up_leaves_the_processes_alone(
    running: tuple[Settings, dict[str, stack.ServiceStatus]], project: Path
) -> None:
    settings, before = running
    after = {s.name: s for s in stack.up(settings, project)}
    assert {n: s.pid for n, s in after.items()} == {n: s.pid for n, s in before.items()}
    assert all(s.healthy for s in after.values())


def test_flow_run_runs_in_the_project_dir_with_the_stack_env(
    running: tuple[Settings, dict[str, stack.ServiceStatus]], project: Path
) -> None:
    settings, _ = running
    env = {**os.environ, **stack.service_env(settings)}
    argv = [executable("prefect"), "deployment", "run", settings.deployment_name, "--watch"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (settings.state_dir / "flow_report.json").read_text()
    assert repr(str(project)) in report and repr(str(settings.state_dir)) in report


def test_mlflow_serves_the_artifacts(
    running: tuple[Settings, dict[str, stack.ServiceStatus]],
) -> None:
    settings, _ = running
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment(client.create_experiment("stack-test"))
    assert experiment.artifact_location.startswith("mlflow-artifacts:")


def test_a_crashed_service_is_restarted(
    running: tuple[Settings, dict[str, stack.ServiceStatus]], project: Path
) -> None:
    settings, statuses = running
    old_pid = statuses["milvus"].pid
    assert old_pid is not None
    os.killpg(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _group_alive(old_pid) and time.monotonic() < deadline:
        procs.children[old_pid].poll()  # reap: the test process is its parent
        time.sleep(0.1)
    assert not stack.status(settings, ["milvus"])[0].running
    (restarted,) = stack.up(settings, project, ["milvus"])
    assert restarted.healthy and restarted.pid != old_pid


def test_stale_and_reused_pid_files_are_removed_and_nothing_is_killed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # a reused pid
    try:
        pids = tmp_path / "pids"
        pids.mkdir()
        fake = {"start_ticks": 1, "started_at": 0.0, "argv": ["milvus-lite", "server"]}
        (pids / "milvus.pid").write_text(json.dumps({"pid": stranger.pid, **fake}))
        (pids / "mlflow.pid").write_text(json.dumps({"pid": 2**22 + 1, **fake}))  # dead pid
        (pids / "prefect.pid").write_text("not json")
        assert not any(s.running for s in stack.status(settings, ["milvus", "mlflow"]))
        assert stack.down(settings) == []
        assert stranger.poll() is None
        assert not list(pids.iterdir())
    finally:
        stranger.kill()
        stranger.wait()


def test_a_port_taken_by_someone_else_is_refused(tmp_path: Path, project: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(milvus_uri=f"http://127.0.0.1:{port}", state_dir=tmp_path)
        with pytest.raises(StackError, match=f"port {port}"):
            stack.up(settings, project, ["milvus"])
    assert not (tmp_path / "pids" / "milvus.pid").exists()


def test_worker_without_prefect_fails_fast(tmp_path: Path, project: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(StackError, match="Prefect API"):
        stack.up(settings, project, ["worker"])


def test_down_stops_every_process_it_started(
    running: tuple[Settings, dict[str, stack.ServiceStatus]],
) -> None:
    settings, statuses = running
    env = {**os.environ, **stack.service_env(settings)}
    argv = [executable("prefect"), "deployment", "run", "hang/hang"]
    subprocess.run(argv, env=env, capture_output=True, timeout=60, check=True)
    worker = statuses["worker"].pid
    assert worker is not None
    deadline = time.monotonic() + 60
    while not (flow_runs := procs.descendants(worker)) and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker starts each flow run in a session of its own
    assert flow_runs, "the worker never started the flow run"
    pids = [s.pid for s in stack.status(settings) if s.pid is not None]
    started = time.monotonic()
    assert stack.down(settings) == ["worker", "prefect", "mlflow", "milvus"]
    logger.info("down took %.1f s", time.monotonic() - started)
    assert not any(_group_alive(pid) for pid in pids)
    assert not any(procs.start_ticks(pid) == ticks for pid, ticks in flow_runs.items())
    assert not list((settings.state_dir / "pids").iterdir())
    assert stack.down(settings) == []
    assert not any(s.running for s in stack.status(settings))
