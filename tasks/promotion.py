"""Promotion stage: the locked compare-and-swap of the alias, its records, the MLflow mirror,
and the clean-up of builds that failed before approval."""

from __future__ import annotations

import logging
import time
from typing import Literal

from mlflow.exceptions import MlflowException
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from indexpair import faults
from indexpair.errors import BuildError, PromotionConflict
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef, is_registry_error
from indexpair.pair import PairState, now_iso
from indexpair.reconcile import settle_alias
from indexpair.settings import Settings

log = logging.getLogger(__name__)


SwitchKind = Literal["promote", "rollback"]
REGISTRY_ATTEMPTS = 3


class SwitchResult(BaseModel):
    """What one alias switch did."""

    alias: str
    collection: str
    previous: str | None
    switch_ms: float
    already_done: bool = False
    repaired: list[str] = []


def cas_decision(current: str | None, expected: str | None, candidate: str) -> str:
    """Compare-and-swap verdict: ``switch``, ``done`` (a repeated call) or ``conflict``."""
    if current == candidate:
        return "done"
    if current == expected:
        return "switch"
    return "conflict"


def _check_ready(gateway: MilvusGateway, candidate: str, rows: int) -> None:
    """The candidate must be loaded and hold exactly the rows it was built from."""
    if not gateway.is_loaded(candidate):
        raise BuildError(f"candidate {candidate!r} is not loaded")
    found = gateway.row_count(candidate)
    if found != rows:
        raise BuildError(f"candidate {candidate!r} holds {found} rows, expected {rows}")


def switch_alias(
    settings: Settings,
    alias: str,
    candidate: str,
    expected_live: str | None,
    kind: SwitchKind = "promote",
) -> SwitchResult:
    """Re-point ``alias`` to ``candidate`` if it still points at ``expected_live``.

    Under the per-alias lock: repair the records an earlier cut-off switch left (the
    alias is the truth), compare and swap, record on the candidate what it replaces and
    how, move the alias (retried on transient errors), then write the states: the
    candidate ``live``, the replaced pair ``previous`` (``rolled_back`` after a rollback).
    Every step is idempotent: a retry after a crash anywhere converges.

    Raises:
        PromotionConflict: the alias moved since validation compared against it.
        BuildError: the candidate is missing, not loaded, or has the wrong row count.
    """
    with MilvusGateway(settings) as milvus, prefect_api.alias_lock(settings.lock_name(alias)):
        repaired = [f"{f.target}: {f.before} -> {f.after}" for f in settle_alias(milvus, alias)]
        current = milvus.alias_target(alias)
        verdict = cas_decision(current, expected_live, candidate)
        if verdict == "conflict":
            raise PromotionConflict(
                f"alias {alias!r} now points at {current!r}, but {candidate!r} was "
                f"validated against {expected_live!r}"
            )
        pair = milvus.read_pair(candidate)
        switch_ms = 0.0
        if verdict == "switch":
            _check_ready(milvus, candidate, pair.source_rows)
            milvus.update_pair(candidate, replaces=current or "", switch_kind=kind)
            faults.crash_point("switch.approved")
            started = time.perf_counter()
            milvus.point_alias(alias, candidate)
            switch_ms = (time.perf_counter() - started) * 1000
            faults.crash_point("switch.alias_moved")
            milvus.update_pair(candidate, state=PairState.LIVE.value, live_since=now_iso())
            faults.crash_point("switch.live_marked")
            settle_alias(milvus, alias)
    faults.crash_point("switch.done")
    return SwitchResult(
        alias=alias,
        collection=candidate,
        previous=current if verdict == "switch" else (pair.replaces or None),
        switch_ms=switch_ms,
        already_done=verdict == "done",
        repaired=repaired,
    )


def sync_registry(settings: Settings, ref: ModelVersionRef, tags: dict[str, str]) -> str:
    """Point MLflow's production alias at ``ref`` and tag it; retried with backoff.

    Returns:
        "" when done, else why not: the alias has moved already, so the caller reports it
        as a warning and `indexpair reconcile --apply` finishes it later.
    """
    for attempt in range(1, REGISTRY_ATTEMPTS + 1):
        try:
            with MlflowRegistry(settings) as registry:
                registry.set_alias(ref, settings.production_model_alias)
                registry.set_tags(ref, tags)
            faults.crash_point("registry.synced")
            return ""
        except Exception as exc:
            if not is_registry_error(exc):
                raise
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("MLflow update %d/%d failed: %s", attempt, REGISTRY_ATTEMPTS, reason)
            if attempt < REGISTRY_ATTEMPTS:
                time.sleep(2.0 * attempt)
    return reason


@task(name="switch-alias", cache_policy=NO_CACHE)
def promote_pair(
    settings: Settings,
    alias: str,
    candidate: str,
    expected_live: str | None,
    ref: ModelVersionRef,
    approver: str,
    comment: str,
) -> tuple[SwitchResult, str]:
    """Switch the production alias, then mirror it in MLflow (alias and tags).

    Returns:
        The switch, and a warning ("" if none) when MLflow could not be updated.
    """
    logger = get_run_logger()
    result = switch_alias(settings, alias, candidate, expected_live)
    logger.info(
        "alias %s -> %s (was %s) in %.1f ms", alias, candidate, result.previous, result.switch_ms
    )
    for line in result.repaired:
        logger.warning("repaired a record left by an earlier switch: %s", line)
    tags = {
        "status": "live",
        "collection": candidate,
        "approved_by": approver,
        "approval_comment": comment,
        "approved_at": now_iso(),
    }
    failed = sync_registry(settings, ref, tags)
    warning = ""
    if failed:
        warning = (
            f"{candidate} is live behind {alias!r}, but MLflow at "
            f"{settings.mlflow_tracking_uri} was not updated ({failed}); "
            f"`indexpair reconcile --alias {alias} --apply` finishes it"
        )
        logger.warning(warning)
    return result, warning


# A collection in one of these states was approved or has served: never rejected here.
KEPT_STATES = frozenset(
    {PairState.APPROVED, PairState.LIVE, PairState.PREVIOUS, PairState.ROLLED_BACK}
)


def reject(settings: Settings, collection: str, ref: ModelVersionRef | None, reason: str) -> bool:
    """Mark a failed build ``rejected``, drop it, and tag the model version with why.

    Never touches an aliased collection, nor one that was approved or has served (its
    state says so): those are kept, and their model version is not tagged rejected.
    Returns True when the collection was dropped.
    """
    with MilvusGateway(settings) as milvus:
        if milvus.exists(collection):
            state = milvus.read_pair(collection).state
            if milvus.aliases_of(collection) or state in KEPT_STATES:
                log.warning("not rejecting %s (%s): %s", collection, state.value, reason)
                return False
            milvus.set_state(collection, PairState.REJECTED, reason)
            dropped = milvus.drop(collection)
        else:
            dropped = False
    if ref is not None:
        tags = {
            "status": "rejected",
            "collection": collection,
            "rejected_collection": collection,
            "reject_reason": reason[:4000],
            "rejected_at": now_iso(),
        }
        try:
            with MlflowRegistry(settings) as registry:
                registry.set_build_tags(ref, tags)
        except MlflowException as exc:
            # The build is already gone; an unreachable registry must not hide the reason
            # the build failed behind an error about tagging it.
            log.error("could not tag %s v%s as rejected: %s", ref.name, ref.version, exc)
    return dropped


@task(name="reject-build", cache_policy=NO_CACHE)
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
