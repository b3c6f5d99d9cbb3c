"""Promotion stage: the locked compare-and-swap of the alias, and the clean-up of losers."""

from __future__ import annotations

import logging
import time

from mlflow.exceptions import MlflowException
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from indexpair.errors import BuildError, PromotionConflict
from indexpair.gateways import mlflow as registry
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.pair import PairState, now_iso
from indexpair.settings import Settings

log = logging.getLogger(__name__)
UNFINISHED = {PairState.BUILDING, PairState.VALIDATED, PairState.AWAITING_APPROVAL}


class SwitchResult(BaseModel):
    """What one alias switch did."""

    alias: str
    collection: str
    previous: str | None
    switch_ms: float
    already_done: bool = False


def cas_decision(current: str | None, expected: str | None, candidate: str) -> str:
    """Compare-and-swap verdict: ``switch``, ``done`` (a repeated call) or ``conflict``."""
    if current == candidate:
        return "done"
    if current == expected:
        return "switch"
    return "conflict"


def switch_alias(
    settings: Settings, alias: str, candidate: str, expected_live: str | None
) -> SwitchResult:
    """Re-point ``alias`` to ``candidate`` if it still points at ``expected_live``.

    Holds the per-alias global concurrency limit for the whole check-and-switch, then
    records the states: candidate ``live``, the old target ``previous``.

    Raises:
        PromotionConflict: the alias moved since validation compared against it.
        BuildError: the candidate is missing, not loaded, or has the wrong row count.
    """
    gateway = MilvusGateway(settings)
    try:
        with prefect_api.alias_lock(settings.lock_name(alias)):
            current = gateway.alias_target(alias)
            verdict = cas_decision(current, expected_live, candidate)
            if verdict == "conflict":
                raise PromotionConflict(
                    f"alias {alias!r} now points at {current!r}, but {candidate!r} was "
                    f"validated against {expected_live!r}; promote again to compare "
                    "against the new live pair"
                )
            pair = gateway.read_pair(candidate)
            if verdict == "switch":
                if not gateway.is_loaded(candidate):
                    raise BuildError(f"candidate {candidate!r} is not loaded")
                rows = gateway.row_count(candidate)
                if rows != pair.source_rows:
                    raise BuildError(
                        f"candidate {candidate!r} holds {rows} rows, expected {pair.source_rows}"
                    )
            started = time.perf_counter()
            if verdict == "switch":
                gateway.point_alias(alias, candidate)
            switch_ms = (time.perf_counter() - started) * 1000
            stamp = now_iso()
            gateway.update_pair(candidate, state=PairState.LIVE.value, live_since=stamp)
            if current and current != candidate:
                gateway.update_pair(current, state=PairState.PREVIOUS.value, previous_since=stamp)
    finally:
        gateway.close()
    return SwitchResult(
        alias=alias,
        collection=candidate,
        previous=current if current != candidate else None,
        switch_ms=switch_ms,
        already_done=verdict == "done",
    )


@task(name="switch-alias", persist_result=True)
def promote_pair(
    settings: Settings,
    alias: str,
    candidate: str,
    expected_live: str | None,
    ref: ModelVersionRef,
    approver: str,
    comment: str,
) -> SwitchResult:
    """Switch the production alias, then mirror it in MLflow (alias and tags)."""
    logger = get_run_logger()
    result = switch_alias(settings, alias, candidate, expected_live)
    logger.info(
        "alias %s -> %s (was %s) in %.1f ms", alias, candidate, result.previous, result.switch_ms
    )
    registry.set_alias(settings, ref, settings.production_model_alias)
    registry.set_tags(
        settings,
        ref,
        {
            "status": "live",
            "collection": candidate,
            "approved_by": approver,
            "approval_comment": comment,
            "approved_at": now_iso(),
        },
    )
    return result


def reject(settings: Settings, collection: str, ref: ModelVersionRef | None, reason: str) -> bool:
    """Mark a failed build ``rejected``, drop it, and tag the model version with why.

    Never touches an aliased collection. Returns True when the collection was dropped.
    """
    gateway = MilvusGateway(settings)
    dropped = False
    try:
        if gateway.exists(collection):
            if gateway.aliases_of(collection):
                log.warning("not rejecting %s: an alias points at it", collection)
                return False
            gateway.set_state(collection, PairState.REJECTED, reason)
            dropped = gateway.drop(collection)
    finally:
        gateway.close()
    if ref is not None:
        tags = {
            "status": "rejected",
            "collection": collection,
            "rejected_collection": collection,
            "reject_reason": reason[:4000],
            "rejected_at": now_iso(),
        }
        try:
            registry.set_build_tags(settings, ref, tags)
        except MlflowException as exc:
            # The build is already gone; an unreachable registry must not hide the reason
            # the build failed behind an error about tagging it.
            log.error("could not tag %s v%s as rejected: %s", ref.name, ref.version, exc)
    return dropped


@task(name="reject-build", persist_result=True)
def reject_build(
    settings: Settings, collection: str, ref: ModelVersionRef | None, reason: str
) -> bool:
    """Task wrapper of :func:`reject`."""
    dropped = reject(settings, collection, ref, reason)
    get_run_logger().warning(
        "build %s rejected (%s): %s",
        collection,
        "dropped" if dropped else "nothing to drop",
        reason,
    )
    return dropped


def reap_abandoned(settings: Settings, current_run: str = "") -> list[str]:
    """Reject unfinished builds whose flow run ended without finishing them.

    A suspend that times out fails the run on the server, and no code of the run is
    left to clean up; this is where its candidate goes. A build whose run still runs
    or waits for approval is left alone.
    """
    gateway = MilvusGateway(settings)
    try:
        pairs = [(n, p) for n, p in gateway.list_pairs() if p.state in UNFINISHED]
    finally:
        gateway.close()
    reaped = []
    for name, pair in pairs:
        if not pair.flow_run_id or pair.flow_run_id == current_run:
            continue
        active, state = prefect_api.run_is_active(pair.flow_run_id)
        if active:
            continue
        ref = ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)
        reason = f"abandoned: flow run {pair.flow_run_id} ended ({state.strip(': ')})"
        reject(settings, name, ref, reason)
        reaped.append(name)
    return reaped


@task(name="reap-abandoned-builds")
def reap_abandoned_builds(settings: Settings, current_run: str) -> list[str]:
    """Task wrapper of :func:`reap_abandoned`."""
    reaped = reap_abandoned(settings, current_run)
    if reaped:
        get_run_logger().info("cleaned up abandoned builds: %s", ", ".join(reaped))
    return reaped
