"""The retention decision: which managed collections garbage collection keeps or drops.

A pure function (:func:`decide`) of facts about each collection, tested table-driven. The
previous pairs kept per alias are the first rollback targets of
:func:`indexpair.roles.rollback_targets`, the rule rollback itself picks by, so garbage
collection keeps exactly the pairs a rollback would go back to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from indexpair import roles
from indexpair.pair import FAILED_STATES, UNFINISHED, PairMetadata, PairState

Rule = tuple[Literal["keep", "drop"], str]


class RetentionPolicy(BaseModel):
    """What garbage collection keeps. Rendered as a form in the Prefect UI."""

    keep_previous: int = Field(
        1,
        ge=1,
        description="Rollback targets kept per alias, the first a rollback would pick (at least 1)",
    )
    max_age_days: float = Field(
        7,
        ge=0,
        description=(
            "Previous pairs beyond keep_previous, rolled-back pairs and approved pairs never "
            "switched are dropped once older than this"
        ),
    )
    abandoned_after_hours: float = Field(
        6,
        ge=0,
        description=(
            "Failed builds, and builds whose flow run ended, are dropped after this grace "
            "period; builds whose flow run the Prefect API does not know are never dropped"
        ),
    )


class CollectionFacts(BaseModel):
    """What the retention decision needs to know about one collection."""

    name: str
    managed: bool
    pair: PairMetadata | None = Field(None, description="the pair read; None if foreign or damaged")
    state: str = ""
    group: str = Field("", description="alias the pair serves, else its model name")
    model_version: str = ""
    aliases: list[str] = []
    created_at: datetime | None = None
    retired_at: datetime | None = Field(
        None, description="when it stopped serving: previous_since, or rolled_back_since"
    )
    run_active: bool = False
    run_known: bool = Field(True, description="False when the Prefect API does not know the run")
    run_state: str = ""
    rows: int | None = None
    damaged: str = ""

    @classmethod
    def of_pair(
        cls, name: str, pair: PairMetadata, aliases: list[str], rows: int | None = None
    ) -> CollectionFacts:
        """Facts read from a managed collection's pair metadata (run facts left unset)."""
        rolled_back = pair.state == PairState.ROLLED_BACK
        since = pair.rolled_back_since if rolled_back else pair.previous_since
        return cls(
            name=name,
            managed=True,
            pair=pair,
            state=pair.state.value,
            group=roles.group_of(pair),
            model_version=pair.model_version,
            aliases=aliases,
            created_at=roles.stamp(pair.created_at),
            retired_at=roles.stamp(since),
            rows=rows,
        )


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


def _hours_since(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return (now - moment).total_seconds() / 3600


def _previous_rank(facts: list[CollectionFacts]) -> dict[str, int]:
    """1-based rank of each rollback target within its alias, as rollback would pick them.

    Aliased collections are left out (kept anyway), as rollback leaves out the live one.
    """
    pairs = [(f.name, f.pair) for f in facts if f.pair is not None and not f.aliases]
    ranks: dict[str, int] = {}
    for group in {f.group for f in facts if f.state == PairState.PREVIOUS}:
        targets = roles.rollback_targets(pairs, group)
        ranks.update({name: i for i, name in enumerate(targets, 1)})
    return ranks


def _unfinished_rule(facts: CollectionFacts, age: float, hours: float) -> Rule:
    """A build not finished: kept while its run lives, is unknown, or within the grace."""
    if facts.run_active:
        return "keep", f"build in flight: flow run is {facts.run_state}"
    if not facts.run_known:
        return "keep", "flow run unknown to the Prefect API; left for a person"
    if age <= hours:
        return "keep", f"unfinished build younger than {hours:g} h ({facts.run_state})"
    return "drop", f"abandoned build older than {hours:g} h: flow run {facts.run_state}"


def _served_rule(
    facts: CollectionFacts, now: datetime, rank: int | None, p: RetentionPolicy
) -> Rule:
    """A pair that served or was approved to: previous, rolled_back or approved."""
    days, age = p.max_age_days, _hours_since(facts.created_at, now) or 0.0
    if facts.state == PairState.PREVIOUS:
        if rank is None:
            return "keep", "previous pair without readable metadata; left for a person"
        if rank <= p.keep_previous:
            return "keep", f"rollback target {rank} of {p.keep_previous} for {facts.group}"
        if age <= days * 24:
            return "keep", f"previous pair younger than {days:g} days"
        return "drop", (
            f"previous pair beyond the {p.keep_previous} kept for {facts.group}, "
            f"older than {days:g} days"
        )
    if facts.state == PairState.ROLLED_BACK:
        since = _hours_since(facts.retired_at or facts.created_at, now) or 0.0
        if since <= days * 24:
            return "keep", f"rolled-back pair younger than {days:g} days (never a rollback target)"
        return "drop", f"rolled-back pair older than {days:g} days (never a rollback target)"
    switch = f"switch it with `indexpair switch-approved {facts.name}`"
    if age <= days * 24:
        return "keep", f"approved but not switched, younger than {days:g} days; {switch}"
    return "drop", (
        f"approved but not switched, older than {days:g} days; {switch} before garbage "
        "collection runs"
    )


def _rule(facts: CollectionFacts, now: datetime, rank: int | None, p: RetentionPolicy) -> Rule:
    """The first rule that applies to one collection."""
    age = _hours_since(facts.created_at, now)
    hours = p.abandoned_after_hours
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
        return _unfinished_rule(facts, age, hours)
    if facts.state in FAILED_STATES:
        if age <= hours:
            return "keep", f"{facts.state} build younger than {hours:g} h"
        return "drop", f"{facts.state} build older than {hours:g} h"
    if facts.state in (PairState.PREVIOUS, PairState.ROLLED_BACK, PairState.APPROVED):
        return _served_rule(facts, now, rank, p)
    return "keep", f"unknown state {facts.state!r}"


def decide(facts: list[CollectionFacts], policy: RetentionPolicy, now: datetime) -> list[Verdict]:
    """Keep or drop every collection under ``policy`` at time ``now``.

    Never drops a collection that is not managed, is aliased, has damaged metadata, is
    marked live, or whose build is still running or waiting for approval.
    """
    ranks = _previous_rank(facts)
    verdicts = []
    for f in facts:
        age = _hours_since(f.created_at, now)
        action, reason = _rule(f, now, ranks.get(f.name), policy)
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
