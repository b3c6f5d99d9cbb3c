"""Table-driven tests of the one rollback-target rule shared by rollback and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from indexpair.pair import PairMetadata, PairState
from indexpair.roles import group_of, retired_at, rollback_targets, stamp

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ALIAS = "products"


def _iso(hours_ago: float | None) -> str:
    return "" if hours_ago is None else (NOW - timedelta(hours=hours_ago)).isoformat()


def pair(
    state: PairState = PairState.PREVIOUS,
    retired_h: float | None = 10,
    *,
    alias: str = ALIAS,
    model_name: str = "product-embedder",
    version: str = "1",
    age_h: float = 1000,
) -> PairMetadata:
    """A pair created ``age_h`` hours ago, retired ``retired_h`` hours ago."""
    return PairMetadata(
        model_name=model_name,
        model_version=version,
        model_uri=f"models:/{model_name}/{version}",
        dim=8,
        build_id="abcd1234",
        source_uri="test",
        source_fingerprint="test",
        source_rows=0,
        state=state,
        created_at=_iso(age_h),
        previous_since=_iso(retired_h) if state == PairState.PREVIOUS else "",
        rolled_back_since=_iso(retired_h) if state == PairState.ROLLED_BACK else "",
        alias=alias,
    )


# case, pairs, alias asked, expected targets in order
CASES: list[tuple[str, list[tuple[str, PairMetadata]], str, list[str]]] = [
    ("no pairs", [], ALIAS, []),
    ("one previous", [("p", pair())], ALIAS, ["p"]),
    (
        "only state previous counts",
        [(s.value, pair(s)) for s in PairState],
        ALIAS,
        ["previous"],
    ),
    (
        "rolled back is never a target, even retired last",
        [("r", pair(PairState.ROLLED_BACK, 1)), ("p", pair(retired_h=500))],
        ALIAS,
        ["p"],
    ),
    (
        "most recently retired first, not most recently created",
        [("old", pair(retired_h=100, age_h=50)), ("new", pair(retired_h=2, age_h=900))],
        ALIAS,
        ["new", "old"],
    ),
    (
        "other aliases are left out",
        [("mine", pair()), ("theirs", pair(alias="other"))],
        ALIAS,
        ["mine"],
    ),
    (
        "other model names and versions on the alias count",
        [
            ("a1", pair(retired_h=30, model_name="alpha", version="1")),
            ("b7", pair(retired_h=20, model_name="beta", version="7")),
            ("a2", pair(retired_h=10, model_name="alpha", version="2")),
        ],
        ALIAS,
        ["a2", "b7", "a1"],
    ),
    (
        "no alias recorded: grouped by model name",
        [("legacy", pair(alias="", model_name="products")), ("x", pair(alias="", model_name="x"))],
        "products",
        ["legacy"],
    ),
    (
        "no alias recorded: not a target of another alias",
        [("legacy", pair(alias="", model_name="product-embedder"))],
        ALIAS,
        [],
    ),
    (
        "no previous_since: ranked by creation time",
        [("stamped", pair(retired_h=5)), ("unstamped", pair(retired_h=None, age_h=1))],
        ALIAS,
        ["unstamped", "stamped"],
    ),
]


@pytest.mark.parametrize(("case", "pairs", "alias", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rollback_targets(
    case: str, pairs: list[tuple[str, PairMetadata]], alias: str, expected: list[str]
) -> None:
    assert rollback_targets(pairs, alias) == expected, case


def test_group_of_falls_back_to_model_name() -> None:
    assert group_of(pair(alias="shop")) == "shop"
    assert group_of(pair(alias="", model_name="embedder")) == "embedder"


def test_stamp_and_retired_at() -> None:
    assert stamp("") is None and stamp("yesterday") is None
    assert stamp("2026-11-26T12:00:00") == NOW  # naive stamps are UTC
    assert retired_at(pair(retired_h=3)) == NOW - timedelta(hours=3)
    assert retired_at(pair(retired_h=None, age_h=7)) == NOW - timedelta(hours=7)
