"""Table-driven tests of the retention decision (what garbage collection keeps or drops)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from indexpair.pair import PairMetadata, PairState
from indexpair.roles import rollback_targets
from tasks.retention import CollectionFacts, RetentionPolicy, decide
from tasks.retention.reaper import to_reap

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(keep_previous=1, max_age_days=7, abandoned_after_hours=6)


def _iso(hours_ago: float | None) -> str:
    return "" if hours_ago is None else (NOW - timedelta(hours=hours_ago)).isoformat()


def pair(
    state: str,
    age_h: float,
    retired_h: float | None = None,
    group: str = "products",
    model_name: str = "product-embedder",
    run_id: str = "run-1",
) -> PairMetadata:
    """Pair metadata ``age_h`` hours old, retired (previous or rolled back) ``retired_h`` ago."""
    return PairMetadata(
        model_name=model_name,
        model_version="1",
        model_uri=f"models:/{model_name}/1",
        dim=8,
        build_id="abcd1234",
        source_uri="test",
        source_fingerprint="test",
        source_rows=0,
        state=PairState(state),
        created_at=_iso(age_h),
        previous_since=_iso(retired_h) if state == "previous" else "",
        rolled_back_since=_iso(retired_h) if state == "rolled_back" else "",
        alias=group,
        flow_run_id=run_id,
    )


def facts(
    name: str,
    state: str,
    age_h: float,
    *,
    managed: bool = True,
    aliases: tuple[str, ...] = (),
    retired_h: float | None = None,
    run_active: bool = False,
    run_known: bool = True,
    group: str = "products",
    model_name: str = "product-embedder",
    damaged: str = "",
) -> CollectionFacts:
    """One collection, ``age_h`` hours old, retired ``retired_h`` hours ago.

    Managed, undamaged collections are built from pair metadata the way ``facts_of`` does.
    """
    if not managed or damaged:
        return CollectionFacts(name=name, managed=managed, aliases=list(aliases), damaged=damaged)
    found = CollectionFacts.of_pair(
        name, pair(state, age_h, retired_h, group, model_name), list(aliases)
    )
    found.run_active, found.run_known = run_active, run_known
    found.run_state = "Suspended" if run_active else ("missing" if not run_known else "Failed")
    return found


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
    # A pair rolled back from: never a rollback target; aged from when it was rolled back.
    ("rolled back, young", facts("r", "rolled_back", 900, retired_h=10), "keep", "younger"),
    ("rolled back, at 7 days", facts("r", "rolled_back", 900, retired_h=168), "keep", "younger"),
    ("rolled back, old", facts("r", "rolled_back", 900, retired_h=168.01), "drop", "older"),
    ("rolled back, no stamp, young", facts("r", "rolled_back", 100), "keep", "younger"),
    ("rolled back, no stamp, old", facts("r", "rolled_back", 200), "drop", "never a rollback"),
    # Approved but not switched (a conflict): kept a while, and told how to switch it.
    ("approved, young", facts("ap", "approved", 100), "keep", "indexpair switch-approved ap"),
    ("approved, old", facts("ap", "approved", 169), "drop", "indexpair switch-approved ap"),
    # A run the Prefect API does not know is never counted dead.
    (
        "unknown run, old",
        facts("c", "awaiting_approval", 9_000, run_known=False),
        "keep",
        "flow run unknown to the Prefect API; left for a person",
    ),
    ("unknown run, young", facts("c", "building", 1, run_known=False), "keep", "unknown"),
    ("ended run, within grace", facts("c", "awaiting_approval", 5), "keep", "younger than 6 h"),
    ("ended run, after grace", facts("c", "awaiting_approval", 7), "drop", "abandoned"),
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


def test_rolled_back_pairs_are_not_counted_as_rollback_targets() -> None:
    pairs = [
        facts("r_new", "rolled_back", 900, retired_h=1),  # most recent, but rolled back from
        facts("p_only", "previous", 900, retired_h=300),
    ]
    verdicts = {v.name: v for v in decide(pairs, POLICY, NOW)}
    assert "rollback target 1" in verdicts["p_only"].reason, verdicts["p_only"]
    assert "never a rollback target" in verdicts["r_new"].reason, verdicts["r_new"]


def test_previous_ranking_is_the_rollback_rule_across_model_names() -> None:
    pairs = [
        facts("a_v1", "previous", 2000, retired_h=900, model_name="alpha"),
        facts("b_v3", "previous", 1500, retired_h=5, model_name="beta"),
        facts("a_v2", "previous", 1000, retired_h=400, model_name="alpha"),
        facts("b_v1", "previous", 3000, retired_h=700, model_name="beta"),
        facts("live", "live", 100, aliases=("products",), model_name="beta"),
    ]
    policy = RetentionPolicy(keep_previous=2, max_age_days=7, abandoned_after_hours=6)
    verdicts = {v.name: v for v in decide(pairs, policy, NOW)}
    order = rollback_targets([(f.name, f.pair) for f in pairs if f.pair], "products")
    assert order == ["b_v3", "a_v2", "b_v1", "a_v1"]
    kept = [n for n in order if "rollback target" in verdicts[n].reason]
    assert kept == order[:2], verdicts
    assert [verdicts[n].action for n in order] == ["keep", "keep", "drop", "drop"]


REAP_CASES = [
    # name, facts, reaped by the reaper (default policy: 6 h grace)
    ("ended run after grace", facts("c1", "awaiting_approval", 7), True),
    ("ended run within grace", facts("c2", "awaiting_approval", 5), False),
    ("unknown run", facts("c3", "building", 900, run_known=False), False),
    ("run in flight", facts("c4", "awaiting_approval", 900, run_active=True), False),
    ("failed build (GC's, not the reaper's)", facts("c5", "failed", 900), False),
    ("old previous (GC's, not the reaper's)", facts("c6", "previous", 9000, retired_h=1), False),
    ("aliased", facts("c7", "building", 900, aliases=("x",)), False),
]


@pytest.mark.parametrize(("case", "fact", "reaped"), REAP_CASES, ids=[c[0] for c in REAP_CASES])
def test_reaper_drops_only_what_gc_drops_among_unfinished_builds(
    case: str, fact: CollectionFacts, reaped: bool
) -> None:
    assert bool(to_reap([fact], "", NOW)) == reaped, case


def test_reaper_skips_the_current_runs_own_build() -> None:
    old = facts("mine", "building", 900)
    assert [v.name for v, _ in to_reap([old], "", NOW)] == ["mine"]
    assert to_reap([old], "run-1", NOW) == []


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
