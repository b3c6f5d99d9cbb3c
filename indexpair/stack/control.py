"""Start, stop and report the local stack: PostgreSQL (on the postgres profile), Milvus,
MLflow, the Prefect server and worker.

Each service is a real process in a session of its own, with ``STATE/pids/NAME.pid`` and
``STATE/logs/NAME.log``; `down` stops its process group and every descendant (the worker
starts each flow run in a separate session). A pid file records
the pid, the kernel start time of that pid and the command line, so a pid the kernel has
reused for something else is never taken for ours, let alone killed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from indexpair import notifications
from indexpair.errors import StackError
from indexpair.settings import Settings
from indexpair.stack import database, postgres, procs
from indexpair.stack.specs import (
    ALL_SERVICES,
    HEALTH_TIMEOUT,
    PROCESS_SERVICES,
    ServiceSpec,
    build_spec,
    executable,
    http_ok,
    port_in_use,
    profile_services,
    service_env,
    worker_env,
)

__all__ = ["ALL_SERVICES", "ServiceStatus", "down", "service_env", "status", "up"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0
DEPLOY_TIMEOUT_S = 300.0
LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` and `up` report for one service."""

    name: str
    pid: int | None
    running: bool
    healthy: bool
    url: str
    log: Path
    rss_mb: float | None = None
    database: str = ""


@dataclass(frozen=True)
class _Record:
    pid: int
    start_ticks: int
    started_at: float
    argv: list[str]


def _pid_path(settings: Settings, name: str) -> Path:
    return settings.state_dir / "pids" / f"{name}.pid"


def _log_path(settings: Settings, name: str) -> Path:
    return settings.state_dir / "logs" / f"{name}.log"


def _is_ours(record: _Record) -> bool:
    return procs.runs(record.pid, record.start_ticks, record.argv)


def _read_record(settings: Settings, name: str) -> _Record | None:
    """The live record of our process for ``name``; a stale pid file is removed."""
    path = _pid_path(settings, name)
    try:
        record = _Record(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        logger.warning("removing unreadable pid file %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None
    if _is_ours(record):
        return record
    logger.warning("removing stale pid file %s (pid %d is not ours any more)", path, record.pid)
    path.unlink(missing_ok=True)
    return None


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _start(settings: Settings, spec: ServiceSpec) -> _Record:
    if spec.port is not None and port_in_use(spec.port):
        raise StackError(
            f"{spec.name}: port {spec.port} is already taken by a process indexpair did not start"
            f" (see `ss -ltnp 'sport = :{spec.port}'`); stop it or choose another port"
        )
    log_path = _log_path(settings, spec.name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _pid_path(settings, spec.name).parent.mkdir(parents=True, exist_ok=True)
    env = spec.make_env()
    uid, gid = spec.run_as or (None, None)
    with log_path.open("ab") as log:
        log.write(f"\n=== indexpair starts {spec.name} at {time.ctime()} ===\n".encode())
        log.flush()
        proc = subprocess.Popen(  # noqa: S603 - argv is built by us, no shell
            spec.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.state_dir,
            user=uid,
            group=gid,
            extra_groups=None if uid is None else [],
        )
    procs.children[proc.pid] = proc
    ticks = procs.start_ticks(proc.pid)
    if ticks is None or not procs.wait_exec(proc.pid):
        raise StackError(f"{spec.name} exited at once; log {log_path}:\n{_log_tail(log_path)}")
    record = _Record(proc.pid, ticks, time.time(), spec.argv)
    _pid_path(settings, spec.name).write_text(json.dumps(record.__dict__), encoding="utf-8")
    logger.info("started %s (pid %d, log %s)", spec.name, proc.pid, log_path)
    return record


def _wait_healthy(settings: Settings, spec: ServiceSpec, record: _Record) -> None:
    log_path = _log_path(settings, spec.name)
    where = f"port {spec.port}" if spec.port is not None else spec.url
    deadline = time.monotonic() + spec.startup_timeout_s
    while True:
        if not _is_ours(record):
            raise StackError(
                f"{spec.name} (pid {record.pid}, {where}) exited during startup;"
                f" last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        if spec.healthy(record.started_at):
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"{spec.name} (pid {record.pid}, {where}, {spec.url}) not healthy after"
                f" {spec.startup_timeout_s:.0f} s; last lines of {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.5)


def _run_step(settings: Settings, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run a one-shot command for the deployments step, logging to deployments.log."""
    log_path = _log_path(settings, "deployments")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== {' '.join(argv[1:])} (in {cwd}) at {time.ctime()} ===\n".encode())
        log.flush()
        try:
            code = subprocess.run(  # noqa: S603 - argv is built by us, no shell
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, timeout=DEPLOY_TIMEOUT_S, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"`{' '.join(argv[1:])}` timed out; see {log_path}") from exc
    if code != 0:
        raise StackError(
            f"`{' '.join(argv[1:])}` exited {code}; see {log_path}:\n{_log_tail(log_path)}"
        )


def _deployment_exists(settings: Settings) -> bool:
    api = settings.prefect_api_url.rstrip("/")
    return http_ok(f"{api}/deployments/name/{settings.deployment_name}")


def _deploy(settings: Settings, project_dir: Path) -> None:
    """Create the work pool if missing, then (re)apply every deployment of prefect.yaml."""
    project_dir = project_dir.resolve()
    if not (project_dir / "prefect.yaml").is_file():
        raise StackError(f"no prefect.yaml in {project_dir}; cannot create the deployments")
    env = worker_env(settings, project_dir)
    prefect = executable("prefect")
    pool_url = f"{settings.prefect_api_url.rstrip('/')}/work_pools/{settings.work_pool}"
    try:
        pool_missing = httpx.get(pool_url, timeout=HEALTH_TIMEOUT).status_code == 404
    except httpx.HTTPError as exc:
        raise StackError(f"Prefect API {settings.prefect_api_url} unreachable: {exc}") from exc
    if pool_missing:
        argv = [prefect, "work-pool", "create", settings.work_pool, "--type", "process"]
        _run_step(settings, argv, project_dir, env)
    _run_step(settings, [prefect, "--no-prompt", "deploy", "--all"], project_dir, env)
    if not _deployment_exists(settings):
        raise StackError(
            f"deployment {settings.deployment_name!r} missing after `prefect deploy --all` in"
            f" {project_dir}; check its prefect.yaml"
        )
    logger.info("deployments applied from %s", project_dir / "prefect.yaml")
    notifications.apply(settings)  # automations that post to INDEXPAIR_NOTIFY_URL, if set


def _running(settings: Settings) -> bool:
    return any(_read_record(settings, name) for name in PROCESS_SERVICES)


def _require_prefect(settings: Settings, needed_by: str) -> None:
    url = f"{settings.prefect_api_url.rstrip('/')}/health"
    if not http_ok(url):
        raise StackError(f"{needed_by} needs the Prefect API, but {url} is not healthy")


def _ordered(settings: Settings, services: Sequence[str] | None) -> list[str]:
    known = profile_services(settings)
    wanted = list(known if services is None else services)
    unknown = sorted(set(wanted) - set(known))
    if unknown == ["postgres"]:
        raise StackError(
            f"postgres runs only on the postgres profile (INDEXPAIR_DATABASE={settings.database!r})"
        )
    if unknown:
        raise StackError(f"unknown service(s) {unknown}; known: {list(known)}")
    return [name for name in known if name in wanted]


def up(
    settings: Settings, project_dir: Path, services: Sequence[str] | None = None
) -> list[ServiceStatus]:
    """Start the stack (or the named subset), in order, and wait until each is healthy.

    Idempotent: a live process of ours is left alone (only its health is awaited); a stale
    pid file is removed. ``deployments`` is re-applied on every call.

    Args:
        settings: Where the services listen and where their state lives.
        project_dir: Project root holding ``prefect.yaml`` (used by ``deployments``).
        services: Subset of `profile_services` (postgres first on that profile); all of
            them when None.

    Returns:
        The status of each requested service.

    Raises:
        StackError: A port is taken by a foreign process, a service exited or was not
            healthy in time (the message names the port and quotes its log), or the
            deployments could not be applied.
    """
    settings = database.as_running(settings, explicit_wins=True)
    names = _ordered(settings, services)
    database.record_profile(settings, running=_running(settings))
    for name in names:
        if name in {"deployments", "worker"}:
            _require_prefect(settings, name)
        if name == "deployments":
            _deploy(settings, project_dir)
            continue
        record = _read_record(settings, name)
        if name == "postgres" and record is None:
            postgres.initialize(settings)  # before its spec: it may create the user to run as
        spec = build_spec(name, settings, project_dir)
        if record is not None:
            logger.info("%s already running (pid %d); leaving it alone", name, record.pid)
            _wait_healthy(settings, spec, record)
            continue
        started = time.monotonic()
        record = _start(settings, spec)
        try:
            _wait_healthy(settings, spec, record)
        except StackError:
            # Leave nothing half-started behind: the next `up` starts it afresh.
            procs.terminate(record.pid, STOP_TIMEOUT_S)
            _pid_path(settings, name).unlink(missing_ok=True)
            raise
        logger.info("%s healthy after %.1f s at %s", name, time.monotonic() - started, spec.url)
        if name == "milvus":
            _load_live_pairs(settings)
        if name == "postgres":
            postgres.ensure_databases(settings)
    return status(settings, names, project_dir)


def _load_live_pairs(settings: Settings) -> None:
    """Milvus Lite comes back with every collection released: load the aliased pairs now,
    so the first query after a restart finds production ready."""
    from indexpair.gateways.milvus import MilvusGateway

    with MilvusGateway(settings) as milvus:
        loaded = milvus.load_aliased()
    if loaded:
        logger.info("loaded the aliased pairs after the restart: %s", ", ".join(loaded))


def down(settings: Settings) -> list[str]:
    """Stop exactly the processes `up` started, in reverse start order. Idempotent.

    Returns:
        Names of the services that were running and are now stopped.
    """
    stopped = []
    for name in reversed(PROCESS_SERVICES):
        record = _read_record(settings, name)
        if record is None:
            continue
        logger.info("stopping %s (pid %d)", name, record.pid)
        procs.terminate(record.pid, STOP_TIMEOUT_S)
        _pid_path(settings, name).unlink(missing_ok=True)
        stopped.append(name)
    return stopped


def status(
    settings: Settings, services: Sequence[str] | None = None, project_dir: Path | None = None
) -> list[ServiceStatus]:
    """Report each service: pid, whether it runs (as ours), health, URL, log, memory and the
    database it uses (password redacted), on the profile the stack was brought up with."""
    settings = database.as_running(settings)
    result = []
    for name in _ordered(settings, services):
        log = _log_path(settings, name)
        if name == "deployments":
            url = f"{settings.prefect_ui_url}/deployments"
            healthy = _deployment_exists(settings)
            result.append(ServiceStatus(name, None, healthy, healthy, url, log))
            continue
        spec = build_spec(name, settings, project_dir or Path.cwd())
        record = _read_record(settings, name)
        running = record is not None
        healthy = record is not None and spec.healthy(record.started_at)
        rss = procs.group_rss_mb(record.pid) if record is not None else None
        pid = record.pid if record is not None else None
        result.append(ServiceStatus(name, pid, running, healthy, spec.url, log, rss, spec.database))
    return result
