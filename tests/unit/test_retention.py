"""Table-driven tests of the retention decision (what garbage collection keeps or drops)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tasks.retention import CollectionFacts, RetentionPolicy, decide

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(keep_previous=1, max_age_days=7, abandoned_after_hours=6)


def facts(
    name: str,
    state: str,
    age_h: float,
    *,
    managed: bool = True,
    aliases: tuple[str, ...] = (),
    retired_h: float | None = None,
    run_active: bool = False,
    group: str = "products",
    damaged: str = "",
) -> CollectionFacts:
    """One collection, ``age_h`` hours old, retired ``retired_h`` hours ago."""
    return CollectionFacts(
        name=name,
        managed=managed,
        state=state,
        group=group,
        aliases=list(aliases),
        created_at=NOW - timedelta(hours=age_h),
        retired_at=None if retired_h is None else NOW - timedelta(hours=retired_h),
        run_active=run_active,
        run_state="Suspended" if run_active else "Failed",
        damaged=damaged,
    )


# name, facts, expected action, a word the reason must contain
SINGLE_CASES = [
    ("aliased", facts("a", "live", 900, aliases=("products",)), "keep", "alias"),
    ("aliased even if failed", facts("a", "failed", 900, aliases=("x",)), "keep", "alias"),
    ("live without alias", facts("a", "live", 900), "keep", "no alias"),
    ("foreign", facts("f", "", 9000, managed=False), "keep", "not created by indexpair"),
    ("damaged metadata", facts("d", "", 9000, damaged="bad"), "keep", "damaged"),
    (
        "suspended candidate",
        facts("c", "awaiting_approval", 900, run_active=True),
        "keep",
        "in flight",
    ),
    ("running build", facts("c", "building", 900, run_active=True), "keep", "in flight"),
    ("abandoned, young", facts("c", "awaiting_approval", 5.9), "keep", "younger"),
    ("abandoned, at the boundary", facts("c", "validated", 6.0), "keep", "younger"),
    ("abandoned, old", facts("c", "building", 6.01), "drop", "abandoned"),
    ("failed, young", facts("x", "failed", 1), "keep", "younger"),
    ("failed, old", facts("x", "failed", 7), "drop", "failed build older"),
    ("rejected, old", facts("x", "rejected", 24), "drop", "rejected build older"),
    (
        "only previous, very old",
        facts("p", "previous", 10_000, retired_h=9_000),
        "keep",
        "rollback target 1",
    ),
]


@pytest.mark.parametrize(
    ("case", "fact", "action", "why"), SINGLE_CASES, ids=[c[0] for c in SINGLE_CASES]
)
def test_single_collection(case: str, fact: CollectionFacts, action: str, why: str) -> None:
    (verdict,) = decide([fact], POLICY, NOW)
    assert verdict.action == action, (case, verdict)
    assert why in verdict.reason, (case, verdict.reason)


def test_keeps_most_recently_retired_previous_pairs_per_alias() -> None:
    pairs = [
        # p_old was created last but retired first: rank follows retirement, not creation.
        facts("p_old", "previous", 200, retired_h=190),
        facts("p_new", "previous", 300, retired_h=2),
        facts("p_mid", "previous", 160, retired_h=100),  # beyond N but < 7 days old: kept
        facts("q_old", "previous", 500, retired_h=400, group="other"),
    ]
    verdicts = {v.name: v for v in decide(pairs, POLICY, NOW)}
    assert verdicts["p_new"].action == "keep" and "rollback target 1" in verdicts["p_new"].reason
    assert verdicts["p_old"].action == "drop", verdicts["p_old"]
    assert verdicts["p_mid"].action == "keep" and "younger than 7" in verdicts["p_mid"].reason
    assert verdicts["q_old"].action == "keep", "each alias keeps its own rollback target"


@pytest.mark.parametrize(
    ("age_h", "action"), [(7 * 24 - 0.01, "keep"), (7 * 24, "keep"), (7 * 24 + 0.01, "drop")]
)
def test_previous_age_boundary(age_h: float, action: str) -> None:
    pairs = [facts("p1", "previous", 10, retired_h=1), facts("p2", "previous", age_h, retired_h=5)]
    verdicts = {v.name: v.action for v in decide(pairs, POLICY, NOW)}
    assert verdicts == {"p1": "keep", "p2": action}


def test_keep_previous_n_keeps_n() -> None:
    pairs = [facts(f"p{i}", "previous", 1000 + i, retired_h=i) for i in range(1, 5)]
    policy = RetentionPolicy(keep_previous=3, max_age_days=7, abandoned_after_hours=6)
    verdicts = {v.name: v.action for v in decide(pairs, policy, NOW)}
    assert verdicts == {"p1": "keep", "p2": "keep", "p3": "keep", "p4": "drop"}


@pytest.mark.parametrize(
    "bad",
    [
        {"keep_previous": 0},
        {"keep_previous": -1},
        {"max_age_days": -1},
        {"abandoned_after_hours": -0.5},
    ],
)
def test_policy_refuses_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError) as info:
        RetentionPolicy(**bad)  # type: ignore[arg-type]
    assert next(iter(bad)) in str(info.value)
