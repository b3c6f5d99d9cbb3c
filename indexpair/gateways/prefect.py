"""The Prefect API gateway: start runs, watch their state, resume them, hold locks."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from indexpair.errors import IndexPairError
from indexpair.settings import Settings

log = logging.getLogger(__name__)
# States in which a promotion run still owns its candidate collection.
ACTIVE_STATES = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}
WAITING_NAMES = {"Suspended", "Paused"}


class RunSnapshot(dict[str, Any]):
    """State of a flow run: id, name, state type and name, message, url."""

    @property
    def awaiting_approval(self) -> bool:
        """True when the run is suspended for the approval form."""
        return self["state_type"] == "PAUSED"

    @property
    def final(self) -> bool:
        """True when the run will not change state by itself any more."""
        return self["state_type"] not in ACTIVE_STATES


@contextmanager
def prefect_api(settings: Settings) -> Iterator[None]:
    """Point Prefect's client at ``settings.prefect_api_url`` for the duration."""
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: settings.prefect_api_url}
    if settings.prefect_api_key:
        updates[PREFECT_API_KEY] = settings.prefect_api_key.get_secret_value()
    if all(setting.value() == value for setting, value in updates.items()):
        yield  # already so (a worker, the service): skip rebuilding Prefect's settings
        return
    with temporary_settings(updates=updates):
        yield


def require_api(settings: Settings) -> None:
    """Fail fast, with the URL, when the Prefect API does not answer.

    Raises:
        IndexPairError: the API is unreachable or unhealthy.
    """
    import httpx

    url = settings.prefect_api_url.rstrip("/") + "/health"
    try:
        ok = httpx.get(url, timeout=httpx.Timeout(10.0, connect=3.0)).status_code == 200
    except httpx.HTTPError as exc:
        raise IndexPairError(
            f"Prefect API at {settings.prefect_api_url} is unreachable "
            f"({type(exc).__name__}); is the stack up (`indexpair stack "
            "up`) or PREFECT_API_URL right?"
        ) from exc
    if not ok:
        raise IndexPairError(f"Prefect API at {settings.prefect_api_url} is not healthy")


def run_id(value: str | UUID) -> UUID:
    """A flow-run id, or a clear error naming the value."""
    try:
        return UUID(str(value))
    except ValueError:
        raise IndexPairError(
            f"{value!r} is not a flow-run id (a UUID such as "
            "'4f759fe4-cb81-424d-bcba-ad25b06a059b')"
        ) from None


def snapshot(settings: Settings, flow_run_id: str | UUID) -> RunSnapshot:
    """Read one flow run's current state."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id(flow_run_id))
    except ObjectNotFound as exc:
        raise IndexPairError(
            f"flow run {flow_run_id} does not exist on {settings.prefect_api_url}"
        ) from exc
    state = run.state
    return RunSnapshot(
        id=str(run.id),
        name=run.name,
        deployment_id=str(run.deployment_id),
        state_type=state.type.value if state else "UNKNOWN",
        state_name=state.name if state else "Unknown",
        message=(state.message or "") if state else "",
        parameters=dict(run.parameters),
        url=settings.flow_run_url(str(run.id)),
    )


def start_deployment(
    settings: Settings, parameters: dict[str, Any], deployment: str | None = None
) -> RunSnapshot:
    """Create a flow run of the promote deployment and return at once."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = deployment or settings.deployment_name
    require_api(settings)
    try:
        run = run_deployment(name, parameters=parameters, timeout=0, as_subflow=False)
    except ObjectNotFound as exc:
        raise IndexPairError(
            f"deployment {name!r} not found on {settings.prefect_api_url}; "
            "is the stack up (`indexpair stack up`)?"
        ) from exc
    return snapshot(settings, run.id)  # type: ignore[union-attr]  # sync call here


def wait(
    settings: Settings,
    flow_run_id: str,
    timeout_s: float,
    until_paused: bool = True,
    poll_s: float = 1.0,
) -> RunSnapshot:
    """Poll a run until it is awaiting approval (if asked) or final, or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        snap = snapshot(settings, flow_run_id)
        if snap.final or (until_paused and snap.awaiting_approval):
            return snap
        if time.monotonic() >= deadline:
            return snap
        time.sleep(poll_s)


def resume(settings: Settings, flow_run_id: str, run_input: dict[str, Any]) -> None:
    """Resume a suspended run with the approval form's input (what the UI does)."""
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    target = run_id(flow_run_id)
    require_api(settings)
    try:
        resume_flow_run(target, run_input=run_input)
    except ObjectNotFound as exc:
        raise IndexPairError(f"flow run {flow_run_id} does not exist") from exc
    except Exception as exc:
        if type(exc).__name__ == "NotPausedError":
            state = snapshot(settings, flow_run_id)
            raise IndexPairError(
                f"flow run {flow_run_id} is not awaiting approval; it is {state['state_name']}"
            ) from exc
        raise


def answer_form(settings: Settings, flow_run_id: str, answer: dict[str, Any]) -> None:
    """Resume a waiting run with ``answer`` on top of the values its form shows.

    The fields the run filled in (the build the form is about) go back as shown, so the
    answer is bound to the build whose report is on screen now.
    """
    run_id(flow_run_id)  # a malformed id is named before any network call
    require_api(settings)
    resume(settings, flow_run_id, {**pending_form(flow_run_id), **answer})


def ensure_lock(name: str, client: Any = None) -> None:
    """Create the global concurrency limit of size 1 that serializes alias switches."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    # Another process may create it between the upsert's read and its create: same limit.
    with client or get_client(sync_client=True) as api, suppress(ObjectAlreadyExists):
        api.upsert_global_concurrency_limit_by_name(name, limit=1)


# The shortest lease Prefect grants. The holder renews it while alive; a process killed
# inside the lock frees it when the server's repossessor next runs (every 15 s), so a
# retry after a crash waits at most about 75 s instead of the default 5 minutes.
LOCK_LEASE_S = 60
RENEW_EVERY_S = LOCK_LEASE_S / 2


class LockTimeout(IndexPairError, TimeoutError):
    """The alias lock stayed taken for longer than the caller would wait."""


# One open Prefect client per process and API for the calls made again and again (the
# lock, the canary's report). A new client builds a TLS context (about 35 ms of CPU, even
# for an http:// API), and Prefect's own `concurrency()` made four per lock (create,
# acquire, renew, release): about 140 ms of CPU at every switch, on the cores the search
# service answers from.
_api_clients: dict[tuple[int, str, str], Any] = {}
_api_clients_guard = threading.Lock()


def api_client() -> Any:
    """The process's open Prefect client for the API Prefect's settings name now
    (created once per API URL and key; closed at exit). Not to be closed by callers."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api:
        raise IndexPairError("no Prefect API is set (PREFECT_API_URL is empty)")
    key = (os.getpid(), str(api), str(PREFECT_API_KEY.value() or ""))
    with _api_clients_guard:
        client = _api_clients.get(key)
        if client is None:
            client = SyncPrefectClient(
                api, auth_string=PREFECT_API_AUTH_STRING.value(), api_key=PREFECT_API_KEY.value()
            )
            client.__enter__()  # kept open; closed at exit
            _api_clients[key] = client
    return client


@atexit.register
def _close_api_clients() -> None:
    with _api_clients_guard:
        for (pid, *_), client in list(_api_clients.items()):
            if pid == os.getpid():
                with suppress(Exception):
                    client.__exit__(None, None, None)
        _api_clients.clear()


def _take_lease(client: Any, name: str, timeout_s: float) -> UUID:
    """Take the lock's one slot with a lease; wait while another holder has it."""
    import httpx

    deadline = time.monotonic() + timeout_s
    created = False
    while True:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=[name], slots=1, mode="concurrency", lease_duration=LOCK_LEASE_S
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:  # 423 Locked: held by someone else
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(
                    f"the lock {name!r} is still held by another run after {timeout_s:.0f} s"
                ) from None
            retry_after = float(exc.response.headers.get("Retry-After") or 1.0)
            time.sleep(min(max(retry_after, 0.05), left))
            continue
        body = response.json()
        if body.get("limits"):
            return UUID(str(body["lease_id"]))
        if created:  # strict: a missing limit is an error, never a free pass
            raise IndexPairError(f"the Prefect concurrency limit {name!r} is missing or inactive")
        ensure_lock(name, client)
        created = True


def _keep_lease(client: Any, name: str, lease_id: UUID, stop: threading.Event) -> None:
    """Renew the lease every RENEW_EVERY_S until ``stop``; transient failures are retried."""
    while not stop.wait(RENEW_EVERY_S):
        for attempt in range(3):
            try:
                client.renew_concurrency_lease(lease_id=lease_id, lease_duration=LOCK_LEASE_S)
                break
            except Exception as exc:
                log.warning("renewing the lease on lock %r failed: %s", name, exc)
                if stop.wait(2.0**attempt):
                    return
        else:
            log.error(
                "the lease on lock %r could not be renewed; it lapses %d s after the last "
                "renewal and another run may then take the lock",
                name,
                LOCK_LEASE_S,
            )


@contextmanager
def alias_lock(name: str, timeout_s: float = 300) -> Iterator[None]:
    """Hold the per-alias lock: a Prefect global concurrency limit of one slot, held by
    a lease that is renewed while the holder lives (a killed holder's lease expires).

    A missing limit is created first (strict: never a free pass).

    Raises:
        LockTimeout: another holder kept it for over ``timeout_s`` (a ``TimeoutError``).
    """
    client = api_client()
    lease_id = _take_lease(client, name, timeout_s)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_keep_lease, args=(client, name, lease_id, stop), name=f"lease-{name}", daemon=True
    )
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=10)
        try:
            client.release_concurrency_slots_with_lease(lease_id=lease_id)
        except Exception as exc:  # the work is done; the lease lapses by itself
            log.warning(
                "releasing lock %r failed (%s); it frees itself within %d s",
                name,
                exc,
                LOCK_LEASE_S + 15,
            )


def pending_form(flow_run_id: str) -> dict[str, Any]:
    """The values the approval form of a waiting run shows (its fields' defaults).

    Raises:
        IndexPairError: the run is not waiting for input.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.input.actions import read_flow_run_input

    target = run_id(flow_run_id)
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(target).state
    except ObjectNotFound as exc:
        raise IndexPairError(f"flow run {flow_run_id} does not exist") from exc
    keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
    if not keyset:
        name = state.name if state else "unknown"
        raise IndexPairError(f"flow run {flow_run_id} is not awaiting approval; it is {name}")
    schema: Any = read_flow_run_input(keyset["schema"], flow_run_id=target) or {}
    fields = dict(schema).get("properties", {})
    return {name: spec["default"] for name, spec in fields.items() if "default" in spec}


def run_is_active(flow_run_id: str) -> tuple[bool, str]:
    """Whether a flow run still runs or waits; and its state name (``missing`` if gone)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
    except (ObjectNotFound, ValueError):
        return False, "missing"
    if run.state is None:
        return False, "unknown"
    return run.state.type.value in ACTIVE_STATES, f"{run.state.name}: {run.state.message or ''}"


def active_runs(flow_name: str) -> list[dict[str, Any]]:
    """Runs of flow ``flow_name`` that are scheduled, running, paused or suspended.

    Returns:
        One dict per run: ``id``, ``name``, ``state_type``, ``state_name``, ``parameters``.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    states = [StateType(value) for value in sorted(ACTIVE_STATES)]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states))
            ),
            limit=200,
        )
    return [
        {
            "id": str(run.id),
            "name": run.name,
            "state_type": run.state.type.value if run.state else "UNKNOWN",
            "state_name": run.state.name if run.state else "Unknown",
            "parameters": dict(run.parameters),
        }
        for run in runs
    ]


def import_report_client() -> None:
    """Import what :func:`latest_markdown` and :func:`publish_markdown` use, ahead of time.

    A long-running process (the search service) calls this while it starts: its first
    report update then costs no second of imports while it serves, and the modules are
    part of the heap it keeps out of the garbage collector's full passes.
    """
    import prefect.client.orchestration  # noqa: F401
    import prefect.client.schemas.actions  # noqa: F401
    import prefect.client.schemas.filters  # noqa: F401


def latest_markdown(key: str) -> str | None:
    """The newest version of the markdown artifact ``key``, or None when there is none."""
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    with api_client() as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key])),
            limit=1,
        )
    return str(found[0].data) if found and found[0].data is not None else None


def publish_markdown(key: str, markdown: str, description: str, flow_run_id: str = "") -> None:
    """Add a version of the markdown artifact ``key`` (shown under the flow run, if named)."""
    from prefect.client.schemas.actions import ArtifactCreate

    artifact = ArtifactCreate(
        key=key,
        type="markdown",
        data=markdown,
        description=description,
        flow_run_id=run_id(flow_run_id) if flow_run_id else None,
    )
    with api_client() as client:
        client.create_artifact(artifact)
