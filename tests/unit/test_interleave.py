"""Table-driven tests of the canary's decisions: team-draft interleaving, click credit,
the sign test, sticky session buckets and the shadow similarity measures."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from indexpair.serving.canary import (
    CanaryStats,
    Outcome,
    Team,
    clicks_per_team,
    deny_reason,
    in_bucket,
    leader,
    outcome,
    overlap_at_k,
    rank_biased_overlap,
    sign_test,
    team_draft,
)
from indexpair.serving.canary.store import report_key, with_evidence

L, C = Team.LIVE, Team.CANDIDATE


def _coins(*flips: bool) -> Iterator[bool]:
    yield from flips
    raise AssertionError("the coin was tossed more often than the table says")


@pytest.mark.parametrize(
    ("live", "candidate", "k", "flips", "expected"),
    [
        # identical rankings: each pick takes the next id; coins decide the team at ties
        ("abcd", "abcd", 4, (True, False), [("a", L), ("b", C), ("c", C), ("d", L)]),
        ("abcd", "abcd", 4, (False, True), [("a", C), ("b", L), ("c", L), ("d", C)]),
        # disjoint rankings alternate in rounds, the coin ordering each round
        ("ab", "xy", 4, (True, False), [("a", L), ("x", C), ("y", C), ("b", L)]),
        # an id the other team already showed is skipped: the team takes its next one
        ("abc", "bad", 4, (False, True), [("b", C), ("a", L), ("c", L), ("d", C)]),
        ("abc", "bca", 3, (True, False), [("a", L), ("b", C), ("c", C)]),
        # the team behind picks without a coin; k cuts the list
        ("abcdef", "uvwxyz", 3, (True, True), [("a", L), ("u", C), ("b", L)]),
        # one ranking runs out: the other fills the remaining positions
        ("a", "xyz", 4, (True,), [("a", L), ("x", C), ("y", C), ("z", C)]),
        ("", "xy", 3, (), [("x", C), ("y", C)]),
        ("", "", 3, (), []),
    ],
)
def test_team_draft(
    live: str, candidate: str, k: int, flips: tuple[bool, ...], expected: list[tuple[str, Team]]
) -> None:
    coins = _coins(*flips)
    assert team_draft(list(live), list(candidate), k, lambda: next(coins)) == expected


@pytest.mark.parametrize("seed", range(20))
def test_team_draft_keeps_each_ranking_in_order(seed: int) -> None:
    import random

    rng = random.Random(seed)
    ids = [f"p{i}" for i in range(30)]
    live, candidate = rng.sample(ids, 10), rng.sample(ids, 10)
    mixed = team_draft(live, candidate, 10, lambda: rng.random() < 0.5)
    assert len({i for i, _ in mixed}) == len(mixed) == 10
    for team, ranking in ((L, live), (C, candidate)):
        mine = [i for i, t in mixed if t == team]
        assert mine == sorted(mine, key=ranking.index)
    picks = [t for _, t in mixed]
    assert abs(picks.count(L) - picks.count(C)) <= 1  # both present: balanced teams


SHOWN = [("a", L), ("x", C), ("b", L), ("y", C)]


@pytest.mark.parametrize(
    ("clicked", "counts", "result"),
    [
        ([], {L: 0, C: 0}, Outcome.NONE),
        (["a"], {L: 1, C: 0}, Outcome.LIVE),
        (["x"], {L: 0, C: 1}, Outcome.CANDIDATE),
        (["a", "x"], {L: 1, C: 1}, Outcome.TIE),
        (["a", "x", "y"], {L: 1, C: 2}, Outcome.CANDIDATE),
        (["a", "b", "y"], {L: 2, C: 1}, Outcome.LIVE),
        (["x", "x"], {L: 0, C: 1}, Outcome.CANDIDATE),  # a repeated click counts once
    ],
)
def test_credit(clicked: list[str], counts: dict[Team, int], result: Outcome) -> None:
    assert clicks_per_team(SHOWN, clicked) == counts
    assert outcome(counts) == result


def test_credit_refuses_a_hit_never_shown() -> None:
    with pytest.raises(ValueError, match="hit 'zz' was not shown"):
        clicks_per_team(SHOWN, ["a", "zz"])


@pytest.mark.parametrize(
    ("before", "after", "wins_live", "wins_candidate", "ties"),
    [
        (Outcome.NONE, Outcome.LIVE, 6, 5, 5),
        (Outcome.NONE, Outcome.CANDIDATE, 5, 6, 5),
        (Outcome.CANDIDATE, Outcome.TIE, 5, 4, 6),  # a second click evens the query
        (Outcome.TIE, Outcome.LIVE, 6, 5, 4),
        (Outcome.LIVE, Outcome.LIVE, 5, 5, 5),
    ],
)
def test_a_click_moves_its_query_between_outcomes(
    before: Outcome, after: Outcome, wins_live: int, wins_candidate: int, ties: int
) -> None:
    stats = CanaryStats(candidate="c", candidate_model="m v2", live="l", live_model="m v1")
    i = stats.interleave
    i.wins_live = i.wins_candidate = i.ties = 5
    i.reclassify(before, after)
    assert (i.wins_live, i.wins_candidate, i.ties) == (wins_live, wins_candidate, ties)


def _exact_two_sided(wins: int, n: int) -> float:
    tail = sum(math.comb(n, j) for j in range(min(wins, n - wins) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize(
    ("candidate_wins", "live_wins"), [(0, 0), (5, 5), (9, 1), (1, 9), (15, 5), (40, 60)]
)
def test_sign_test_is_the_exact_two_sided_binomial(candidate_wins: int, live_wins: int) -> None:
    n = candidate_wins + live_wins
    expected = 1.0 if n == 0 else _exact_two_sided(candidate_wins, n)
    assert sign_test(candidate_wins, live_wins) == pytest.approx(expected)
    assert sign_test(candidate_wins, live_wins) == pytest.approx(
        sign_test(live_wins, candidate_wins)
    )


@pytest.mark.parametrize(
    ("candidate_wins", "live_wins", "alpha", "expected"),
    [
        (10, 0, 0.05, "candidate"),  # p = 0.002
        (0, 10, 0.05, "live"),
        (6, 4, 0.05, "undecided"),
        (7, 7, 0.05, "undecided"),
        (9, 2, 0.05, "undecided"),  # p = 0.065
        (0, 0, 0.05, "undecided"),
    ],
)
def test_leader(candidate_wins: int, live_wins: int, alpha: float, expected: str) -> None:
    assert leader(candidate_wins, live_wins, alpha) == expected


@pytest.mark.parametrize(
    ("candidate_wins", "live_wins", "min_decided", "denied"),
    [
        (0, 10, 10, True),
        (0, 10, 11, False),  # too few decided queries yet
        (10, 0, 10, False),  # winning is never a reason to deny
        (40, 60, 10, False),  # p = 0.057: not significant at 0.01
        (20, 80, 50, True),
    ],
)
def test_deny_reason(candidate_wins: int, live_wins: int, min_decided: int, denied: bool) -> None:
    reason = deny_reason(candidate_wins, live_wins, 0.01, min_decided)
    assert bool(reason) is denied
    if denied:
        assert f"live won {live_wins} queries, the candidate {candidate_wins}" in reason


def test_session_buckets_are_sticky_salted_and_sized() -> None:
    sessions = [f"s{i}" for i in range(4000)]
    chosen = [s for s in sessions if in_bucket(s, 0.25, "cand_a")]
    assert 0.22 < len(chosen) / len(sessions) < 0.28
    assert chosen == [s for s in sessions if in_bucket(s, 0.25, "cand_a")]  # sticky
    other = {s for s in sessions if in_bucket(s, 0.25, "cand_b")}
    assert other != set(chosen)  # another candidate, another draw
    assert not any(in_bucket(s, 0.0, "x") for s in sessions[:50])
    assert all(in_bucket(s, 1.0, "x") for s in sessions[:50])


@pytest.mark.parametrize(
    ("a", "b", "overlap", "rbo"),
    [
        ("abcd", "abcd", 1.0, 1.0),
        ("abcd", "wxyz", 0.0, 0.0),
        ("abcd", "dcba", 1.0, None),  # same ids, reversed: full overlap, RBO below 1
        ("abcd", "abxy", 0.5, None),
        ("", "", 0.0, 1.0),
    ],
)
def test_shadow_similarity(a: str, b: str, overlap: float, rbo: float | None) -> None:
    assert overlap_at_k(list(a), list(b), 4) == overlap
    value = rank_biased_overlap(list(a), list(b))
    if rbo is not None:
        assert value == pytest.approx(rbo)
    else:
        assert 0.0 < value < 1.0


def test_rbo_weighs_the_top_more() -> None:
    base = list("abcdefghij")
    top_swapped = ["b", "a", *base[2:]]
    bottom_swapped = [*base[:8], "j", "i"]
    assert rank_biased_overlap(base, bottom_swapped) > rank_biased_overlap(base, top_swapped)


def test_the_report_section_is_replaced_not_appended() -> None:
    stats = CanaryStats(
        candidate="emb_v2_abcd", candidate_model="m v2", live="l", live_model="m v1"
    )
    stats.shadow.add(0.5, 0.6, 40.0, 50.0)
    first = with_evidence("# Candidate pair `emb_v2_abcd`\n\ngolden table", stats)
    stats.shadow.add(1.0, 1.0, 40.0, 50.0)
    second = with_evidence(first, stats)
    assert second.count("## Live evidence") == 1
    assert "golden table" in second
    assert "2 mirrored queries" in second and "1 mirrored queries" not in second
    assert "| mean overlap@k | 0.75 |" in second
    assert report_key("emb_v2_abcd") == "validation-emb-v2-abcd"
