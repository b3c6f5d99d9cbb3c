"""What each service of the local stack runs, with which environment, and its health check.

The process handling (pid files, start, stop) lives in :mod:`indexpair.stack.control`; this module
only describes the services, so adding one means adding a spec here.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from pydantic import SecretStr

from indexpair.errors import StackError
from indexpair.settings import LIBRARY_ENV, Settings, loopback_port
from indexpair.stack import database, postgres
from indexpair.stack.procs import kept_secret
from indexpair.stack.service import ServiceSpec

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
PROCESS_SERVICES = ("postgres", "milvus", "mlflow", "prefect", "worker")
# "deployments" is a step, not a process: it runs once Prefect is healthy. "postgres" runs
# only on the postgres profile (`profile_services`), before its clients.
ALL_SERVICES = ("milvus", "mlflow", "prefect", "deployments", "worker")


def profile_services(settings: Settings) -> tuple[str, ...]:
    """The services of the stack on the settings' database profile, in start order."""
    return ("postgres", *ALL_SERVICES) if settings.database == "postgres" else ALL_SERVICES


def executable(name: str) -> str:
    """Path of a console script of this virtual environment (falls back to ``PATH``)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"executable {name!r} not found next to {sys.executable} nor on PATH")
    return found


def service_env(settings: Settings) -> dict[str, str]:
    """Environment variables that point a client (CLI, tests, flow runs) at the stack.

    Every setting is rendered under the variable it is read from (``MILVUS_URI``,
    ``PREFECT_API_URL``, ``INDEXPAIR_STATE_DIR`` ...), secrets included, so a child process
    rebuilds the same `Settings`. Unset optional settings are left out.
    """
    env: dict[str, str] = {}
    for field_name, field in Settings.model_fields.items():
        value = getattr(settings, field_name)
        if value is None:
            continue
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        var = str(choices[0]) if choices else f"INDEXPAIR_{field_name.upper()}"
        env[var] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


def mlflow_secret_key(state: Path) -> str:
    """The MLflow webhook encryption key, generated once and kept with mode 0600.

    The key must stay the same across restarts, or stored webhook secrets cannot be read.
    """
    from cryptography.fernet import Fernet

    return kept_secret(
        state / "mlflow" / "webhook_secret.key",
        lambda: Fernet.generate_key().decode("ascii"),
        "the MLflow webhook encryption key",
    )


def port_in_use(port: int) -> bool:
    """Whether something already listens on (or holds) the loopback ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    """Whether a GET of ``url`` answers 200 within `HEALTH_TIMEOUT`."""
    try:
        return httpx.get(url, timeout=HEALTH_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


def _milvus_healthy(settings: Settings, port: int) -> bool:
    if not _tcp_open(port):
        return False
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    from indexpair.gateways.milvus import auth_token

    token = auth_token(settings)
    try:
        client = MilvusClient(uri=settings.milvus_uri, token=token, timeout=5, dedicated=True)
        try:
            client.list_collections()
        finally:
            client.close()
    except MilvusException as exc:
        logger.debug("milvus not healthy yet: %s", exc)
        return False
    return True


def _worker_healthy(settings: Settings, worker_name: str, started_at: float) -> bool:
    """A worker of that name has sent a heartbeat since our process started."""
    api = settings.prefect_api_url.rstrip("/")
    url = f"{api}/work_pools/{settings.work_pool}/workers/filter"
    try:
        response = httpx.post(url, json={}, timeout=HEALTH_TIMEOUT)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    beats = [
        datetime.fromisoformat(w["last_heartbeat_time"].replace("Z", "+00:00")).timestamp()
        for w in response.json()
        if w.get("name") == worker_name and w.get("last_heartbeat_time")
    ]
    return any(beat >= started_at - 1 for beat in beats)


def _base_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _prefect_env(settings: Settings) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(settings.state_dir / "prefect"),
        "PREFECT_API_URL": settings.prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def _milvus(settings: Settings, project_dir: Path) -> ServiceSpec:
    port = loopback_port(settings.milvus_uri, "MILVUS_URI")
    if settings.milvus_backend == "standalone":
        # The real Milvus 2.3 server of the `milvus` package; the first start unpacks its
        # binaries (≈10 s). Its data lives apart from Milvus Lite's.
        argv = [
            sys.executable,
            "-m",
            "indexpair.stack.milvus_standalone",
            "--data",
            str(settings.state_dir / "milvus-standalone"),
            "--port",
            str(port),
            "--password-file",
            str(settings.milvus_password_path),
        ]  # fmt: skip
    else:
        argv = [
            executable("milvus-lite"),
            "server",
            "--data-dir",
            str(settings.state_dir / "milvus"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]  # fmt: skip
    return ServiceSpec(
        name="milvus",
        argv=argv,
        make_env=lambda: _base_env({}),
        port=port,
        url=settings.milvus_uri,
        startup_timeout_s=90 if settings.milvus_backend == "standalone" else 60,
        healthy=lambda _started: _milvus_healthy(settings, port),
    )


def _mlflow(settings: Settings, project_dir: Path) -> ServiceSpec:
    port = loopback_port(settings.mlflow_tracking_uri, "MLFLOW_TRACKING_URI")
    home = settings.state_dir / "mlflow"
    url = settings.mlflow_tracking_uri.rstrip("/")
    return ServiceSpec(
        name="mlflow",
        argv=[
            executable("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            database.mlflow_store_uri(settings),
            "--serve-artifacts",
            "--artifacts-destination",
            settings.mlflow_artifacts_destination or str(home / "artifacts"),
        ],  # fmt: skip
        make_env=lambda: _base_env(
            {
                **database.mlflow_env(settings),
                # One worker and no job runner: ~370 MB instead of ~2 GB.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": mlflow_secret_key(settings.state_dir),
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            }
        ),
        port=port,
        url=url,
        startup_timeout_s=90,
        healthy=lambda _started: http_ok(f"{url}/health"),
        database=database.redact(database.mlflow_store_uri(settings)),
    )


def _prefect(settings: Settings, project_dir: Path) -> ServiceSpec:
    port = loopback_port(settings.prefect_api_url, "PREFECT_API_URL")
    api = settings.prefect_api_url.rstrip("/")
    return ServiceSpec(
        name="prefect",
        argv=[
            executable("prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],  # fmt: skip
        make_env=lambda: _base_env(
            {
                **_prefect_env(settings),
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": database.prefect_url(settings),
                "PREFECT_SERVER_UI_API_URL": settings.prefect_api_url,
            }
        ),
        port=port,
        url=settings.prefect_ui_url,
        startup_timeout_s=120 if settings.database == "postgres" else 90,
        healthy=lambda _started: http_ok(f"{api}/health"),
        database=database.redact(database.prefect_url(settings)),
    )


def _worker(settings: Settings, project_dir: Path) -> ServiceSpec:
    loopback_port(settings.prefect_api_url, "PREFECT_API_URL")
    name = f"indexpair-worker-{settings.work_pool}"
    return ServiceSpec(
        name="worker",
        argv=[
            executable("prefect"),
            "worker",
            "start",
            "--pool",
            settings.work_pool,
            "--type",
            "process",
            "--name",
            name,
        ],  # fmt: skip
        make_env=lambda: worker_env(settings, project_dir),
        port=None,
        url=f"{settings.prefect_ui_url}/work-pools/work-pool/{settings.work_pool}",
        startup_timeout_s=60,
        healthy=lambda started: _worker_healthy(settings, name, started),
    )


_BUILDERS: dict[str, Callable[[Settings, Path], ServiceSpec]] = {
    "postgres": postgres.postgres_spec,
    "milvus": _milvus,
    "mlflow": _mlflow,
    "prefect": _prefect,
    "worker": _worker,
}


def build_spec(name: str, settings: Settings, project_dir: Path) -> ServiceSpec:
    """The spec of the process service ``name`` (one of `PROCESS_SERVICES`)."""
    return _BUILDERS[name](settings, project_dir)


def worker_env(settings: Settings, project_dir: Path) -> dict[str, str]:
    """Environment of the worker; the flow runs it starts inherit it.

    The current environment is passed through (``INDEXPAIR_*``, ``MILVUS_TOKEN``, ``AWS_*``,
    ``CUDA_VISIBLE_DEVICES`` ...), then the settings and the stack's own variables win.
    """
    return _base_env(
        {
            **service_env(settings),
            **_prefect_env(settings),
            "INDEXPAIR_PROJECT_DIR": str(project_dir.resolve()),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(settings.state_dir / "prefect" / "storage"),
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            **LIBRARY_ENV,
            # A local Ray advertises 127.0.0.1, never another interface (read when ray is
            # imported); a real cluster (RAY_ADDRESS) needs the node's reachable address.
            **({} if settings.ray_address else {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}),
        }
    )
