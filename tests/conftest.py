"""Shared fixtures: a real local stack (Milvus Lite, MLflow, Prefect + worker) on loopback."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from indexpair.settings import Settings, load_settings
from tests.support.notify import NotifyReceiver, notify_receiver

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "demo" / "data"
MODEL_NAME = "product-embedder"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def notified() -> Iterator[NotifyReceiver]:
    """The webhook the stack's approval notifications go to (INDEXPAIR_NOTIFY_URL)."""
    with notify_receiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, notified: NotifyReceiver
) -> Iterator[Settings]:
    """Start the whole embedded stack once per session, on free ports; always stop it.

    Its promotions notify a local receiver (`notified`), as a team's Slack would be.
    """
    state = tmp_path_factory.mktemp("indexpair-state")
    with local_stack(state, INDEXPAIR_NOTIFY_URL=notified.url) as settings:
        yield settings


@contextmanager
def local_stack(state: Path, **extra_env: str) -> Iterator[Settings]:
    """The whole stack on free ports with its state in ``state``, the process environment
    pointed at it (``extra_env`` on top) while it runs; always stopped and restored."""
    from indexpair import stack

    env = {
        "INDEXPAIR_STATE_DIR": str(state),
        "MILVUS_URI": f"http://127.0.0.1:{free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # The MLflow server re-reads its webhook list after 1 s instead of 60 s.
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        # Crash points fire only when a test lists them in this file (none by default).
        "INDEXPAIR_CRASH_FILE": str(state / "crash-points"),
        **extra_env,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings = load_settings()
    try:
        stack.up(settings, PROJECT_DIR)
        _pause_schedules(settings)
        yield settings
    finally:
        stack.down(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _pause_schedules(settings: Settings) -> None:
    """Deactivate every deployment schedule (watcher, garbage collection, refresh) and drop
    the runs they already planned: tests start those flows themselves, and a scheduled
    run landing mid-test would change the state a test asserts on."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    from indexpair.gateways.prefect import prefect_api

    with prefect_api(settings), get_client(sync_client=True) as client:
        scheduled = [d for d in client.read_deployments() if d.schedules]
        for deployment in scheduled:
            for schedule in deployment.schedules:
                client.update_deployment_schedule(deployment.id, schedule.id, active=False)
        planned = client.read_flow_runs(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[d.id for d in scheduled])
            ),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
        for run in planned:
            client.delete_flow_run(run.id)


@pytest.fixture(scope="session")
def demo_versions(stack_settings: Settings) -> dict[str, str]:
    """The three demo model versions (TF-IDF, MiniLM, broken) registered in MLflow."""
    import mlflow
    import pandas as pd

    from demo.models import register_demo_models

    mlflow.set_tracking_uri(stack_settings.mlflow_tracking_uri)
    catalog = pd.read_parquet(DATA_DIR / "products.parquet")
    return register_demo_models(MODEL_NAME, catalog, stack_settings.state_dir / "demo-models")


BYO_MODEL = "byo-embedder"


@pytest.fixture(scope="session")
def byo_versions(stack_settings: Settings) -> dict[str, str]:
    """all-MiniLM-L6-v2 registered as each supported kind of user model (see
    ``tests/support/byo_models.py``): ``{flavor: version}``."""
    import mlflow

    from tests.support.byo_models import LOGGERS

    mlflow.set_tracking_uri(stack_settings.mlflow_tracking_uri)
    mlflow.set_experiment("indexpair-byo-models")
    versions = {}
    for flavor, log in LOGGERS.items():
        with mlflow.start_run(run_name=f"byo-{flavor}"):
            versions[flavor] = log(BYO_MODEL)
    return versions


@pytest.fixture(scope="session")
def s3_source(stack_settings: Settings) -> Iterator[object]:
    """A real S3 server (moto) on loopback with the small catalog as Parquet, CSV and JSONL;
    the stack's worker is restarted with its endpoint and keys, so flow runs can read it."""
    from indexpair import stack
    from indexpair.stack import procs
    from tests.support.s3 import environment, s3_server

    with (
        s3_server(free_port(), DATA_DIR / "products_small.parquet") as source,
        environment(source.env),
    ):
        (worker,) = stack.status(stack_settings, ["worker"])
        if worker.pid is not None:
            procs.terminate(worker.pid, 15)
            (stack_settings.state_dir / "pids" / "worker.pid").unlink(missing_ok=True)
        stack.up(stack_settings, PROJECT_DIR, services=["worker"])
        yield source


@pytest.fixture(scope="session")
def standalone_milvus(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """A real Milvus 2.3 standalone server (the `milvus` package), authentication on, started
    once per session on free ports, only when a test asks for it; always stopped. Yields
    the settings of a stack whose Milvus it is (its root password in their state dir)."""
    from indexpair import stack

    state = tmp_path_factory.mktemp("milvus-standalone-state")
    settings = stack_settings.model_copy(
        update={
            "state_dir": state,
            "milvus_backend": "standalone",
            "milvus_uri": f"http://127.0.0.1:{free_port()}",
        }
    )
    try:
        stack.up(settings, PROJECT_DIR, services=["milvus"])
        yield settings
    finally:
        stack.down(settings)


@pytest.fixture(params=["lite", "standalone"])
def milvus_backend(request: pytest.FixtureRequest, stack_settings: Settings) -> Settings:
    """The session's settings pointed at Milvus Lite (the stack's) or at the real server.

    Only ``milvus_uri`` and ``milvus_token`` differ; indexpair passes its settings to
    everything it starts (Ray actors included), so the whole test talks to that backend.
    """
    from pydantic import SecretStr

    from indexpair.gateways.milvus import auth_token

    if request.param == "lite":
        return stack_settings
    server: Settings = request.getfixturevalue("standalone_milvus")
    token = SecretStr(auth_token(server))
    return stack_settings.model_copy(
        update={"milvus_uri": server.milvus_uri, "milvus_token": token}
    )
