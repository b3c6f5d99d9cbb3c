"""Pair roles behind an alias: the one rule for what counts as a rollback target.

Rollback (which pair to go back to) and garbage collection (which pairs to keep for a
way back) both ask this module, so they can never disagree. Every pair carries its own
model, so a rollback target may hold another model version or another model name than
the live pair: what matters is that it served the same alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from indexpair.pair import PairMetadata, PairState

_FLOOR = datetime.min.replace(tzinfo=UTC)


def stamp(value: str) -> datetime | None:
    """A stored ISO timestamp as an aware datetime; None when empty or unreadable."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def group_of(pair: PairMetadata) -> str:
    """The alias a pair was built for; its model name for pairs that recorded none."""
    return pair.alias or pair.model_name


def retired_at(pair: PairMetadata) -> datetime:
    """When a pair stopped serving (its creation time if that was never recorded)."""
    return stamp(pair.previous_since) or stamp(pair.created_at) or _FLOOR


def rollback_targets(pairs: Iterable[tuple[str, PairMetadata]], alias: str) -> list[str]:
    """Pairs a rollback of ``alias`` may go back to by default, most recently retired first.

    A target is a pair in state ``previous`` that served ``alias``. A pair rolled back
    from (``rolled_back``) is never one, so rolling back twice never restores it.
    """
    found = [
        (retired_at(pair), name)
        for name, pair in pairs
        if pair.state == PairState.PREVIOUS and group_of(pair) == alias
    ]
    return [name for _, name in sorted(found, reverse=True)]
