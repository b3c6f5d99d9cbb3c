"""Rollback stage: choose and check the pair to go back to, then switch the alias to it.

The switch is the same locked compare-and-swap as a promotion
(:func:`tasks.promotion.switch_alias`): a rollback racing a promotion of the same alias
is serialized, and the loser is refused rather than silently overwritten.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from indexpair import roles
from indexpair.errors import PairNotFound, RollbackRefused
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.pair import PairMetadata, PairState, check_name, now_iso
from indexpair.settings import Settings
from tasks.promotion import switch_alias, sync_registry

log = logging.getLogger(__name__)


class RollbackPlan(BaseModel):
    """The live pair behind an alias and the checked pair to switch back to."""

    alias: str
    live: str
    live_pair: PairMetadata
    target: str
    target_pair: PairMetadata
    loaded_now: bool


class RollbackResult(BaseModel):
    """What one rollback did."""

    alias: str
    collection: str
    model_name: str
    model_version: str
    rolled_back_from: str
    from_model_version: str
    switch_ms: float
    loaded_now: bool
    warnings: list[str] = []

    def summary(self) -> str:
        """One line for people: from which pair to which, and how long the switch took."""
        return (
            f"{self.alias}: {self.rolled_back_from} (v{self.from_model_version}) → "
            f"{self.collection} ({self.model_name} v{self.model_version}); "
            f"alias switch {self.switch_ms:.1f} ms"
        )


def _latest_previous(gateway: MilvusGateway, alias: str, live: str) -> str:
    """The default target: the most recently retired rollback target of ``alias``.

    Uses the one shared rule (:func:`indexpair.roles.rollback_targets`), so garbage
    collection keeps exactly the pairs a rollback would pick. The target may hold another
    model version or model name than the live pair: every pair carries its own model.

    Raises:
        RollbackRefused: naming the alias, when no pair other than the live one qualifies.
    """
    targets = [name for name in roles.rollback_targets(gateway.list_pairs(), alias) if name != live]
    if not targets:
        raise RollbackRefused(
            f"alias {alias!r} has no previous pair to roll back to (live: {live!r}); "
            "garbage collection keeps at least one, so none was ever retired, or name "
            "one with --to"
        )
    return targets[0]


# States a person may name with --to: a pair that served before, or one rolled back from
# (never a default target, but restoring it on purpose is a person's call).
_EXPLICIT_STATES = frozenset({PairState.PREVIOUS, PairState.ROLLED_BACK})


def _check_target(alias: str, target: str, pair: PairMetadata) -> None:
    """Refuse a target that never served ``alias`` or whose state cannot serve again.

    Raises:
        RollbackRefused: naming the target, and the alias or state at fault.
    """
    served = roles.group_of(pair)
    if served != alias:
        raise RollbackRefused(f"{target!r} served alias {served!r}, not {alias!r}")
    if pair.state not in _EXPLICIT_STATES:
        raise RollbackRefused(
            f"{target!r} is {pair.state.value}; only a pair that served alias {alias!r} "
            "before (state previous or rolled_back) can be rolled back to"
        )


def prepare(settings: Settings, alias: str, target: str | None = None) -> RollbackPlan:
    """Find the pair to roll back to and make it ready: metadata intact, loaded, rows right.

    Args:
        settings: where Milvus is.
        alias: the production alias to move back.
        target: a named managed collection that served ``alias`` (state ``previous`` or
            ``rolled_back``); default the most recently retired ``previous`` pair of
            ``alias``, of any model name or version.

    Raises:
        PairNotFound: the alias or the target is missing, or the target is not managed.
        RollbackRefused: no previous pair, or the target never served this alias, is in
            a state that cannot serve, or is damaged.
    """
    check_name(alias, "alias name")
    with MilvusGateway(settings) as milvus:
        live = milvus.alias_target(alias)
        if live is None:
            raise PairNotFound(f"alias {alias!r} does not exist; there is nothing to roll back")
        live_pair = milvus.read_pair(live)
        if target is None:
            target = _latest_previous(milvus, alias, live)
        check_name(target, "rollback target")
        if target == live:
            raise RollbackRefused(f"{target!r} is already live behind alias {alias!r}")
        pair = milvus.read_pair(target)
        _check_target(alias, target, pair)
        loaded_now = milvus.ensure_loaded(target)
        rows = milvus.row_count(target)
        if rows != pair.source_rows:
            raise RollbackRefused(
                f"{target!r} holds {rows} rows but was built from {pair.source_rows}; "
                "it is damaged and cannot serve"
            )
    return RollbackPlan(
        alias=alias,
        live=live,
        live_pair=live_pair,
        target=target,
        target_pair=pair,
        loaded_now=loaded_now,
    )


def _mirror_in_registry(settings: Settings, plan: RollbackPlan, reason: str) -> str:
    """Move the MLflow ``production`` alias back and tag both versions; retried.

    Returns:
        "" when done, else why not (the alias has moved already: a warning).
    """
    old, new = plan.live_pair, plan.target_pair
    stamp = now_iso()
    old_ref = ModelVersionRef(name=old.model_name, version=old.model_version, uri=old.model_uri)
    new_ref = ModelVersionRef(name=new.model_name, version=new.model_version, uri=new.model_uri)
    if (old.model_name, old.model_version) != (new.model_name, new.model_version):
        try:
            with MlflowRegistry(settings) as registry:
                registry.set_tags(old_ref, {"status": "rolled_back", "rolled_back_at": stamp})
        except MlflowException as exc:
            log.warning(
                "could not tag %s v%s rolled back: %s", old.model_name, old.model_version, exc
            )
    tags = {"status": "live", "collection": plan.target, "restored_at": stamp}
    return sync_registry(settings, new_ref, tags | {"restore_reason": reason[:4000]})


def roll_back(settings: Settings, plan: RollbackPlan, reason: str = "") -> RollbackResult:
    """Switch the alias back (locked compare-and-swap), then mirror it in MLflow.

    The pair rolled back from becomes ``rolled_back``: never a default target again.

    Raises:
        PromotionConflict: the alias moved after the plan was made.
    """
    switched = switch_alias(settings, plan.alias, plan.target, plan.live, kind="rollback")
    failed = _mirror_in_registry(settings, plan, reason)
    warnings = []
    if failed:
        warnings.append(
            f"alias {plan.alias!r} serves {plan.target!r}, but MLflow at "
            f"{settings.mlflow_tracking_uri} was not updated ({failed}); "
            f"`indexpair reconcile --alias {plan.alias} --apply` finishes it"
        )
        log.warning(warnings[-1])
    return RollbackResult(
        alias=plan.alias,
        collection=plan.target,
        model_name=plan.target_pair.model_name,
        model_version=plan.target_pair.model_version,
        rolled_back_from=plan.live,
        from_model_version=plan.live_pair.model_version,
        switch_ms=switched.switch_ms,
        loaded_now=plan.loaded_now,
        warnings=warnings,
    )


@task(name="prepare-rollback")
def prepare_rollback(settings: Settings, alias: str, target: str | None) -> RollbackPlan:
    """Task wrapper of :func:`prepare`."""
    plan = prepare(settings, alias, target)
    get_run_logger().info(
        "rolling %s back from %s (v%s) to %s (v%s)%s",
        alias,
        plan.live,
        plan.live_pair.model_version,
        plan.target,
        plan.target_pair.model_version,
        "; loaded it first" if plan.loaded_now else "",
    )
    return plan


@task(name="switch-back")
def switch_back(settings: Settings, plan: RollbackPlan, reason: str) -> RollbackResult:
    """Task wrapper of :func:`roll_back`."""
    return roll_back(settings, plan, reason or f"rollback at {datetime.now(UTC):%Y-%m-%d %H:%M}Z")
