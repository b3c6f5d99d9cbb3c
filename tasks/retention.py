"""Retention stage: which managed collections garbage collection keeps or drops, and why.

The decision (:func:`decide`) is a pure function of facts about each collection, so it is
tested table-driven; :func:`gather` reads those facts from Milvus and the Prefect API, and
:func:`apply` drops what the decision allows after checking each one again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from indexpair.errors import PairNotFound
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata, PairState, is_managed
from indexpair.settings import Settings

log = logging.getLogger(__name__)
UNFINISHED = {PairState.BUILDING, PairState.VALIDATED, PairState.AWAITING_APPROVAL}
FAILED = {PairState.FAILED, PairState.REJECTED}


class RetentionPolicy(BaseModel):
    """What garbage collection keeps. Rendered as a form in the Prefect UI."""

    keep_previous: int = Field(
        1, ge=1, description="Previous pairs kept per alias for rollback (never less than 1)"
    )
    max_age_days: float = Field(
        7, ge=0, description="Other unaliased pairs are dropped once created longer ago than this"
    )
    abandoned_after_hours: float = Field(
        6,
        ge=0,
        description="Failed builds, and builds whose flow run ended, are dropped after this",
    )


class CollectionFacts(BaseModel):
    """What the retention decision needs to know about one collection."""

    name: str
    managed: bool
    state: str = ""
    group: str = Field("", description="alias the pair serves, else its model name")
    model_version: str = ""
    aliases: list[str] = []
    created_at: datetime | None = None
    retired_at: datetime | None = None
    run_active: bool = False
    run_state: str = ""
    rows: int | None = None
    damaged: str = ""


class Verdict(BaseModel):
    """Keep or drop one collection, with the reason; ``outcome`` once applied."""

    name: str
    state: str
    group: str
    age_hours: float | None
    rows: int | None
    action: Literal["keep", "drop"]
    reason: str
    outcome: str = ""


def _age_hours(facts: CollectionFacts, now: datetime) -> float | None:
    if facts.created_at is None:
        return None
    return (now - facts.created_at).total_seconds() / 3600


def _previous_rank(facts: list[CollectionFacts]) -> dict[str, int]:
    """1-based rank of each ``previous`` pair within its group, most recently retired first."""
    floor = datetime.min.replace(tzinfo=UTC)
    ranks: dict[str, int] = {}
    groups = {f.group for f in facts if f.state == PairState.PREVIOUS}
    for group in groups:
        members = [f for f in facts if f.state == PairState.PREVIOUS and f.group == group]
        members.sort(key=lambda f: (f.retired_at or f.created_at or floor, f.name), reverse=True)
        ranks.update({f.name: i for i, f in enumerate(members, 1)})
    return ranks


def _rule(
    facts: CollectionFacts, age: float | None, rank: int | None, policy: RetentionPolicy
) -> tuple[Literal["keep", "drop"], str]:
    """The first rule that applies to one collection."""
    hours = policy.abandoned_after_hours
    if not facts.managed:
        return "keep", "not created by indexpair (no pair metadata)"
    if facts.aliases:
        return "keep", "alias " + ", ".join(facts.aliases) + " points at it"
    if facts.damaged:
        return "keep", f"damaged pair metadata, left for a person: {facts.damaged}"
    if age is None:
        return "keep", "no creation time recorded"
    if facts.state == PairState.LIVE:
        return "keep", "marked live but no alias points at it; left for a person"
    if facts.state in UNFINISHED:
        if facts.run_active:
            return "keep", f"build in flight: flow run is {facts.run_state}"
        if age <= hours:
            return "keep", f"unfinished build younger than {hours:g} h ({facts.run_state})"
        return "drop", f"abandoned build older than {hours:g} h: flow run {facts.run_state}"
    if facts.state in FAILED:
        if age <= hours:
            return "keep", f"{facts.state} build younger than {hours:g} h"
        return "drop", f"{facts.state} build older than {hours:g} h"
    if facts.state == PairState.PREVIOUS and rank is not None:
        if rank <= policy.keep_previous:
            return "keep", f"rollback target {rank} of {policy.keep_previous} for {facts.group}"
        if age <= policy.max_age_days * 24:
            return "keep", f"previous pair younger than {policy.max_age_days:g} days"
        return "drop", (
            f"previous pair beyond the {policy.keep_previous} kept for {facts.group}, "
            f"older than {policy.max_age_days:g} days"
        )
    return "keep", f"unknown state {facts.state!r}"


def decide(facts: list[CollectionFacts], policy: RetentionPolicy, now: datetime) -> list[Verdict]:
    """Keep or drop every collection under ``policy`` at time ``now``.

    Never drops a collection that is not managed, is aliased, has damaged metadata, is
    marked live, or whose build is still running or waiting for approval.
    """
    ranks = _previous_rank(facts)
    verdicts = []
    for f in facts:
        age = _age_hours(f, now)
        action, reason = _rule(f, age, ranks.get(f.name), policy)
        verdicts.append(
            Verdict(
                name=f.name,
                state=f.state or "foreign",
                group=f.group,
                age_hours=None if age is None else round(age, 2),
                rows=f.rows,
                action=action,
                reason=reason,
            )
        )
    return verdicts


def _stamp(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def facts_of(
    gateway: MilvusGateway, name: str, props: dict[str, str], aliases: list[str]
) -> CollectionFacts:
    """Facts about one collection; asks the Prefect API about unfinished builds.

    Must run inside :func:`indexpair.gateways.prefect.prefect_api` when any build is
    unfinished; an unreachable Prefect API raises rather than counting a build abandoned.
    """
    if not is_managed(props):
        return CollectionFacts(name=name, managed=False, aliases=aliases)
    try:
        pair = PairMetadata.from_properties(name, props)
    except PairNotFound as exc:
        return CollectionFacts(name=name, managed=True, aliases=aliases, damaged=str(exc)[:200])
    facts = CollectionFacts(
        name=name,
        managed=True,
        state=pair.state.value,
        group=pair.alias or pair.model_name,
        model_version=pair.model_version,
        aliases=aliases,
        created_at=_stamp(pair.created_at),
        retired_at=_stamp(pair.previous_since),
        rows=gateway.row_count(name),
    )
    if pair.state in UNFINISHED:
        if pair.flow_run_id:
            facts.run_active, facts.run_state = prefect_api.run_is_active(pair.flow_run_id)
        else:
            facts.run_state = "not recorded"
    return facts


def gather(settings: Settings) -> list[CollectionFacts]:
    """Facts about every collection in Milvus, managed or not, oldest first."""
    gateway = MilvusGateway(settings)
    try:
        targets = gateway.alias_targets()
        return [
            facts_of(gateway, name, props, sorted(a for a, t in targets.items() if t == name))
            for name, props in sorted(gateway.collections().items())
        ]
    finally:
        gateway.close()


def plan(settings: Settings, policy: RetentionPolicy) -> list[Verdict]:
    """What garbage collection would do now (reads only)."""
    return decide(gather(settings), policy, datetime.now(UTC))


def _drop_one(gateway: MilvusGateway, verdict: Verdict) -> str:
    """Check one collection again and drop it; the outcome for the table."""
    if not gateway.exists(verdict.name):
        return "already gone"
    props = gateway.properties(verdict.name)
    again = facts_of(gateway, verdict.name, props, gateway.aliases_of(verdict.name))
    if again.aliases:
        return "kept: an alias points at it now"
    if again.run_active:
        return f"kept: its flow run is {again.run_state} now"
    if again.state != verdict.state or again.damaged:
        return f"kept: state changed to {again.state or 'damaged'} since planned"
    return "dropped" if gateway.drop(verdict.name) else "already gone"


def apply(settings: Settings, verdicts: list[Verdict], dry_run: bool) -> list[Verdict]:
    """Drop every collection the plan says to drop, unless ``dry_run``.

    Each drop happens under the lock of the alias the pair served, after the facts are
    read again, so a rollback or promotion racing with garbage collection wins.
    """
    gateway = MilvusGateway(settings)
    try:
        for verdict in verdicts:
            if verdict.action != "drop":
                verdict.outcome = "kept"
            elif dry_run:
                verdict.outcome = "would drop (dry run)"
            else:
                with prefect_api.alias_lock(settings.lock_name(verdict.group)):
                    verdict.outcome = _drop_one(gateway, verdict)
                log.info("garbage collection: %s %s", verdict.name, verdict.outcome)
    finally:
        gateway.close()
    return verdicts


@task(name="plan-retention")
def plan_retention(settings: Settings, policy: RetentionPolicy) -> list[Verdict]:
    """Task wrapper of :func:`plan`."""
    verdicts = plan(settings, policy)
    drops = sum(v.action == "drop" for v in verdicts)
    get_run_logger().info("%d collections, %d to drop", len(verdicts), drops)
    return verdicts


@task(name="apply-retention")
def apply_retention(settings: Settings, verdicts: list[Verdict], dry_run: bool) -> list[Verdict]:
    """Task wrapper of :func:`apply`."""
    return apply(settings, verdicts, dry_run)


@task(name="publish-retention")
def publish_retention(verdicts: list[Verdict], policy: RetentionPolicy, dry_run: bool) -> None:
    """A table artifact: each collection, keep or drop, and why."""
    create_table_artifact(
        key="garbage-collection",
        table=[v.model_dump() for v in verdicts],
        description=(
            f"{'Dry run' if dry_run else 'Garbage collection'}: keep {policy.keep_previous} "
            f"previous per alias, drop others after {policy.max_age_days:g} days, failed or "
            f"abandoned builds after {policy.abandoned_after_hours:g} h"
        ),
    )
