"""What reconcile repairs, planned from the alias truth: a table, no services."""

from __future__ import annotations

import pytest

from indexpair.pair import PairMetadata, PairState
from indexpair.reconcile import _newest_live, plan_alias, plan_registry

S = PairState


def pair(state: PairState, alias: str = "prod", **extra: str) -> PairMetadata:
    return PairMetadata(
        model_name=extra.pop("model", "m"),
        model_version=extra.pop("version", "1"),
        model_uri="models:/m/1",
        dim=4,
        build_id="abcd",
        source_uri="s.parquet",
        source_fingerprint="sha256:00",
        source_rows=3,
        state=state,
        alias=alias,
        **extra,
    )


def changes(fixes: list) -> dict[str, str]:
    return {f.target: f.after for f in fixes}


@pytest.mark.parametrize(
    ("case", "target", "pairs", "expected"),
    [
        ("all agree", "b", {"a": pair(S.PREVIOUS), "b": pair(S.LIVE)}, {}),
        (
            "cut off after the alias moved (promotion)",
            "b",
            {"a": pair(S.LIVE), "b": pair(S.APPROVED, replaces="a", switch_kind="promote")},
            {"b": "live", "a": "previous"},
        ),
        (
            "cut off after the candidate was marked live",
            "b",
            {"a": pair(S.LIVE), "b": pair(S.LIVE, replaces="a", switch_kind="promote")},
            {"a": "previous"},
        ),
        (
            "cut off inside a rollback",
            "a",
            {
                "a": pair(S.PREVIOUS, replaces="b", switch_kind="rollback"),
                "b": pair(S.LIVE, replaces="a"),
            },
            {"a": "live", "b": "rolled_back"},
        ),
        (
            "intent recorded, alias not moved: nothing to repair",
            "a",
            {"a": pair(S.LIVE), "b": pair(S.APPROVED, replaces="a", switch_kind="promote")},
            {},
        ),
        (
            "a live mark of another alias is not ours",
            "b",
            {"a": pair(S.LIVE, alias="other"), "b": pair(S.LIVE)},
            {},
        ),
        (
            "alias gone: stale live marks retire",
            None,
            {"a": pair(S.LIVE)},
            {"a": "previous"},
        ),
    ],
)
def test_plan_alias(
    case: str, target: str | None, pairs: dict[str, PairMetadata], expected: dict[str, str]
) -> None:
    aliased = {target} if target else set()
    assert changes(plan_alias("prod", target, pairs, aliased)) == expected, case


def test_retired_pair_gets_the_switch_time() -> None:
    pairs = {"a": pair(S.LIVE), "b": pair(S.LIVE, replaces="a", live_since="2026-01-02T00:00")}
    (fix,) = plan_alias("prod", "b", pairs, {"b"})
    assert fix.changes == {"state": "previous", "previous_since": "2026-01-02T00:00"}


def test_a_pair_behind_another_alias_is_never_retired() -> None:
    pairs = {"a": pair(S.LIVE), "b": pair(S.LIVE)}
    assert plan_alias("prod", "b", pairs, {"a", "b"}) == []


@pytest.mark.parametrize(
    ("production", "tags", "expected"),
    [
        ("2", {"status": "live", "collection": "b"}, []),
        ("1", {"status": "live", "collection": "b"}, ["alias 'production'"]),
        (None, {}, ["alias 'production'", "tags collection, status"]),
        ("2", {"status": "rejected", "collection": "b"}, ["tags status"]),  # never rejected
    ],
)
def test_plan_registry(production: str | None, tags: dict[str, str], expected: list[str]) -> None:
    live = pair(S.LIVE, version="2")
    fixes = plan_registry("prod", "b", live, production, tags, "production")
    assert [f.what for f in fixes] == expected
    assert all(f.where == "mlflow" for f in fixes)


def test_mlflow_follows_the_alias_switched_last() -> None:
    pairs = {
        "a": pair(S.LIVE, alias="one", live_since="2026-01-01T00:00"),
        "b": pair(S.LIVE, alias="two", live_since="2026-01-03T00:00"),
        "c": pair(S.LIVE, alias="three", model="other", live_since="2026-01-02T00:00"),
    }
    targets = {"one": "a", "two": "b", "three": "c"}
    assert _newest_live(pairs, targets) == {"m": "two", "other": "three"}


def test_a_replaced_pair_that_recorded_no_alias_is_retired_too() -> None:
    pairs = {"a": pair(S.LIVE, alias=""), "b": pair(S.LIVE, replaces="a")}
    (fix,) = plan_alias("prod", "b", pairs, {"b"})
    assert (fix.target, fix.after) == ("a", "previous")
