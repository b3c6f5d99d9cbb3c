"""Start one promotion per model version, however many times the version is announced.

Every trigger — the CircleCI client, the MLflow webhook receiver, the registry watcher —
calls :func:`trigger_promotion`. Under a short Prefect global-concurrency lock per model
it checks whether a ``promote`` run for that version is already in flight (scheduled,
running, paused or suspended for approval) and whether Milvus already holds a live or
previous pair of it; only when neither is true does it start the ``promote``
deployment, with the explicit version (the deployment's default parameters give the
source and the golden queries).

Why a lock and not ``run_deployment(idempotency_key=...)``: Prefect keeps an idempotency
key for the deployment forever, so a build that was denied, rejected by validation or
failed could never be started again for that version. The lock makes "check, then
start" atomic across processes and machines while leaving every finished run out of the
decision. Its lease expires by itself (300 s) if the holder dies.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import BaseModel

from indexpair.errors import IndexPairError
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata, PairState
from indexpair.settings import Settings

log = logging.getLogger(__name__)
PROMOTE_FLOW = "promote"
# A pair in one of these states means the version is already promoted (or was, and can
# come back by rollback): building it again would only duplicate it.
DONE_STATES = {PairState.LIVE, PairState.PREVIOUS}
# Pairs whose build may still be going on (their run is checked before trusting them).
BUILD_STATES = {PairState.BUILDING, PairState.VALIDATED, PairState.AWAITING_APPROVAL}
LOCK_TIMEOUT_S = 60.0


class TriggerResult(BaseModel):
    """What one trigger did.

    Attributes:
        outcome: ``started`` (a new run), ``in_flight`` (a run for this version already
            runs or waits for approval) or ``exists`` (a live/previous pair of it exists).
        model_name: registered model.
        model_version: the version announced.
        run_id: the run started or found in flight.
        run_url: its Prefect UI link.
        collection: the existing pair, for ``exists``.
        message: one line for people.
    """

    outcome: Literal["started", "in_flight", "exists"]
    model_name: str
    model_version: str
    run_id: str | None = None
    run_url: str | None = None
    collection: str | None = None
    message: str


def trigger_lock_name(model_name: str) -> str:
    """Global concurrency limit that serializes triggers for one model."""
    return "indexpair-trigger-" + re.sub(r"[^A-Za-z0-9_.-]", "-", model_name)


def _pairs(settings: Settings) -> list[tuple[str, PairMetadata]]:
    with MilvusGateway(settings) as milvus:
        return milvus.list_pairs()


def run_in_flight(
    model_name: str, version: str, pairs: list[tuple[str, PairMetadata]]
) -> dict[str, Any] | None:
    """An active ``promote`` run building this model version, if any.

    A run started without an explicit version resolves the staging version itself: once
    it has created its collection, that collection's version decides; before (its first
    seconds), it counts as building this version too, to be safe.
    """
    built_by = {pair.flow_run_id: pair.model_version for _, pair in pairs if pair.flow_run_id}
    for run in prefect_api.active_runs(PROMOTE_FLOW):
        params = run["parameters"]
        if params.get("model_name") != model_name:
            continue
        wanted = params.get("model_version")
        if wanted is None:
            wanted = built_by.get(run["id"], version)
        if str(wanted) == version:
            return run
    return None


def pair_of_version(
    model_name: str, version: str, pairs: list[tuple[str, PairMetadata]]
) -> tuple[str, str] | None:
    """A collection of this version that makes a new build pointless.

    Returns:
        ``(collection, reason)`` for a live/previous pair, or a build whose run is still
        active; None otherwise (rejected builds are dropped, so they never block).
    """
    for name, pair in pairs:
        if pair.model_name != model_name or pair.model_version != version:
            continue
        if pair.state in DONE_STATES:
            return name, f"pair {name} of {model_name} v{version} is {pair.state.value}"
        if pair.state in BUILD_STATES and pair.flow_run_id:
            active, state = prefect_api.run_is_active(pair.flow_run_id)
            if active:
                return name, f"build {name} is in flight in run {pair.flow_run_id} ({state})"
    return None


def _decide(settings: Settings, model_name: str, version: str) -> TriggerResult | None:
    """The existing run or pair for this version, or None when a build must start."""
    pairs = _pairs(settings)
    run = run_in_flight(model_name, version, pairs)
    if run is not None:
        return TriggerResult(
            outcome="in_flight",
            model_name=model_name,
            model_version=version,
            run_id=run["id"],
            run_url=settings.flow_run_url(run["id"]),
            message=f"run {run['name']} ({run['id']}) for {model_name} v{version} is "
            f"already in flight ({run['state_name']})",
        )
    found = pair_of_version(model_name, version, pairs)
    if found is None:
        return None
    collection, reason = found
    return TriggerResult(
        outcome="exists",
        model_name=model_name,
        model_version=version,
        collection=collection,
        message=f"not starting another build: {reason}",
    )


def trigger_promotion(
    settings: Settings,
    model_name: str,
    version: str,
    parameters: dict[str, Any] | None = None,
) -> TriggerResult:
    """Start the promote deployment for one model version, unless it is already handled.

    Args:
        settings: where Prefect and Milvus are.
        model_name: registered model.
        version: the model version to build (explicit; the run does not re-resolve it).
        parameters: extra run parameters over the deployment's defaults.

    Returns:
        What happened: started, or the run/pair already in place.

    Raises:
        IndexPairError: the Prefect API is unreachable, the deployment is missing, or
            the lock stayed taken (nothing was started).
        MilvusUnavailable: Milvus does not answer (nothing was started).
    """
    version = str(version)
    with prefect_api.prefect_api(settings):
        prefect_api.require_api(settings)
        lock = trigger_lock_name(model_name)
        try:
            with prefect_api.alias_lock(lock, timeout_s=LOCK_TIMEOUT_S):
                existing = _decide(settings, model_name, version)
                if existing is not None:
                    log.info("%s", existing.message)
                    return existing
                params = {**(parameters or {}), "model_name": model_name, "model_version": version}
                run = prefect_api.start_deployment(settings, params)
        except TimeoutError:
            raise IndexPairError(
                f"another trigger held the lock {lock!r} for over {LOCK_TIMEOUT_S:.0f} s; "
                "nothing started, try again"
            ) from None
    log.info("started %s (%s) for %s v%s", run["name"], run["id"], model_name, version)
    return TriggerResult(
        outcome="started",
        model_name=model_name,
        model_version=version,
        run_id=run["id"],
        run_url=run["url"],
        message=f"started {run['name']} ({run['id']}) for {model_name} v{version}",
    )
