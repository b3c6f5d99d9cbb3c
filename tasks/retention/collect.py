"""Garbage collection's reads and drops: facts from Milvus and the Prefect API, checked drops.

:func:`gather` reads the facts :func:`tasks.retention.decision.decide` needs, and
:func:`apply` drops what the decision allows after checking each collection again under
the lock of the alias it served.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger

from indexpair import faults
from indexpair.errors import PairNotFound
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import UNFINISHED, PairMetadata, is_managed
from indexpair.settings import Settings
from tasks.retention.decision import CollectionFacts, RetentionPolicy, Verdict, decide

log = logging.getLogger(__name__)
# What prefect_api.run_is_active reports for a flow run the Prefect API does not know.
_RUN_MISSING = "missing"


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
    facts = CollectionFacts.of_pair(name, pair, aliases, gateway.row_count(name))
    if pair.state in UNFINISHED:
        if pair.flow_run_id:
            facts.run_active, facts.run_state = prefect_api.run_is_active(pair.flow_run_id)
            facts.run_known = facts.run_state != _RUN_MISSING
        else:
            facts.run_state = "not recorded"
    return facts


def gather(settings: Settings) -> list[CollectionFacts]:
    """Facts about every collection in Milvus, managed or not, oldest first."""
    with MilvusGateway(settings) as milvus:
        targets = milvus.alias_targets()
        return [
            facts_of(milvus, name, props, sorted(a for a, t in targets.items() if t == name))
            for name, props in sorted(milvus.collections().items())
        ]


def plan(settings: Settings, policy: RetentionPolicy) -> list[Verdict]:
    """What garbage collection would do now (reads only)."""
    return decide(gather(settings), policy, datetime.now(UTC))


def recheck(gateway: MilvusGateway, verdict: Verdict) -> str:
    """Read one collection again before dropping it; ``""`` when the drop still holds.

    Returns:
        The outcome for the table when the collection must stay (or is gone), else "".
    """
    if not gateway.exists(verdict.name):
        return "already gone"
    props = gateway.properties(verdict.name)
    again = facts_of(gateway, verdict.name, props, gateway.aliases_of(verdict.name))
    if again.aliases:
        return "kept: an alias points at it now"
    if again.run_active:
        return f"kept: its flow run is {again.run_state} now"
    if not again.run_known:
        return "kept: its flow run is unknown to the Prefect API now"
    if again.state != verdict.state or again.damaged:
        return f"kept: state changed to {again.state or 'damaged'} since planned"
    return ""


def _drop_one(gateway: MilvusGateway, verdict: Verdict) -> str:
    """Check one collection again and drop it; the outcome for the table."""
    return recheck(gateway, verdict) or (
        "dropped" if gateway.drop(verdict.name) else "already gone"
    )


def apply(settings: Settings, verdicts: list[Verdict], dry_run: bool) -> list[Verdict]:
    """Drop every collection the plan says to drop, unless ``dry_run``.

    Each drop happens under the lock of the alias the pair served, after the facts are
    read again, so a rollback or promotion racing with garbage collection wins.
    """
    if not dry_run:
        faults.crash_point("gc.planned")
    with MilvusGateway(settings) as milvus:
        for verdict in verdicts:
            if verdict.action != "drop":
                verdict.outcome = "kept"
            elif dry_run:
                verdict.outcome = "would drop (dry run)"
            else:
                with prefect_api.alias_lock(settings.lock_name(verdict.group)):
                    verdict.outcome = _drop_one(milvus, verdict)
                log.info("garbage collection: %s %s", verdict.name, verdict.outcome)
                faults.crash_point("gc.dropped")
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
