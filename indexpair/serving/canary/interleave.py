"""Online comparison as pure functions: team-draft interleaving, click credit, the sign
test, sticky session buckets and the shadow similarity measures.

Team-draft interleaving follows Radlinski, Kurup and Joachims, "How does clickthrough
data reflect retrieval quality?" (CIKM 2008): two teams (the live pair and the
candidate) take turns picking their best result not yet shown; the team with fewer
picks goes next and a coin decides ties. A click credits the team that contributed the
clicked result; the team with more clicked results wins that query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum

from scipy.stats import binomtest


class Team(StrEnum):
    """Who contributed a result to an interleaved list."""

    LIVE = "live"
    CANDIDATE = "candidate"


class Outcome(StrEnum):
    """The verdict of one interleaved query from its clicks."""

    NONE = "none"  # no click yet
    LIVE = "live"
    CANDIDATE = "candidate"
    TIE = "tie"


RBO_P = 0.9  # rank-biased overlap persistence: the top 10 carry about 86 % of the weight


def team_draft(
    live: Sequence[str], candidate: Sequence[str], k: int, coin: Callable[[], bool]
) -> list[tuple[str, Team]]:
    """Interleave two rankings by team draft, at most ``k`` results.

    Args:
        live: the live pair's ranking (ids, best first).
        candidate: the candidate's ranking.
        k: length of the interleaved list.
        coin: called only when both teams have picked equally often; True lets the live
            team pick first.

    Returns:
        ``(id, team)`` per position. Each id appears once; within one team the ids keep
        their order in that team's ranking. When one ranking runs out, the other fills
        the remaining positions.
    """
    rankings = {Team.LIVE: list(live), Team.CANDIDATE: list(candidate)}
    position = {Team.LIVE: 0, Team.CANDIDATE: 0}
    picks = {Team.LIVE: 0, Team.CANDIDATE: 0}
    shown: set[str] = set()
    result: list[tuple[str, Team]] = []

    def next_of(team: Team) -> str | None:
        ranking = rankings[team]
        while position[team] < len(ranking) and ranking[position[team]] in shown:
            position[team] += 1
        return ranking[position[team]] if position[team] < len(ranking) else None

    while len(result) < k:
        available = [t for t in (Team.LIVE, Team.CANDIDATE) if next_of(t) is not None]
        if not available:
            break
        if len(available) == 1:
            team = available[0]
        elif picks[Team.LIVE] != picks[Team.CANDIDATE]:
            team = min(picks, key=lambda t: picks[t])
        else:
            team = Team.LIVE if coin() else Team.CANDIDATE
        pick = next_of(team)
        assert pick is not None  # checked in `available`
        shown.add(pick)
        picks[team] += 1
        result.append((pick, team))
    return result


def clicks_per_team(shown: Sequence[tuple[str, Team]], clicked: Iterable[str]) -> dict[Team, int]:
    """Clicked results each team contributed (a result clicked twice counts once).

    Raises:
        ValueError: a clicked id was not in ``shown``, naming it.
    """
    teams = dict(shown)
    counts = {Team.LIVE: 0, Team.CANDIDATE: 0}
    for hit_id in set(clicked):
        if hit_id not in teams:
            raise ValueError(f"hit {hit_id!r} was not shown")
        counts[teams[hit_id]] += 1
    return counts


def outcome(counts: Mapping[Team, int]) -> Outcome:
    """Which team won one query: more clicked results wins; equal clicks tie."""
    live, candidate = counts.get(Team.LIVE, 0), counts.get(Team.CANDIDATE, 0)
    if live == candidate:
        return Outcome.NONE if live == 0 else Outcome.TIE
    return Outcome.LIVE if live > candidate else Outcome.CANDIDATE


def sign_test(candidate_wins: int, live_wins: int) -> float:
    """Two-sided sign test (exact binomial, p = 0.5) on per-query wins; ties left out.

    Returns:
        The p-value; 1.0 before any decided query.
    """
    n = candidate_wins + live_wins
    if n == 0:
        return 1.0
    return float(binomtest(candidate_wins, n, 0.5, alternative="two-sided").pvalue)


def leader(candidate_wins: int, live_wins: int, alpha: float) -> str:
    """``candidate``, ``live`` (significantly better at ``alpha``) or ``undecided``."""
    if candidate_wins == live_wins or sign_test(candidate_wins, live_wins) >= alpha:
        return "undecided"
    return "candidate" if candidate_wins > live_wins else "live"


def deny_reason(candidate_wins: int, live_wins: int, alpha: float, min_decided: int) -> str:
    """Why the candidate should be denied automatically, or ``""`` when it should not.

    Only a significant loss over at least ``min_decided`` decided queries (wins of
    either side, ties left out) denies.
    """
    decided = candidate_wins + live_wins
    if decided < min_decided or leader(candidate_wins, live_wins, alpha) != "live":
        return ""
    return (
        f"the candidate lost the interleaved comparison: live won {live_wins} queries, "
        f"the candidate {candidate_wins} (sign test p={sign_test(candidate_wins, live_wins):.2g}"
        f" < {alpha})"
    )


def in_bucket(key: str, fraction: float, salt: str) -> bool:
    """Whether ``key`` (a session id) falls in the first ``fraction`` of a salted hash space.

    The same key and salt always give the same answer: a session stays interleaved (or
    not) for the whole comparison of one candidate (the salt).
    """
    if fraction <= 0:
        return False
    if fraction >= 1:
        return True
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def overlap_at_k(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """Share of the top ``k`` ids the two lists have in common."""
    return len(set(a[:k]) & set(b[:k])) / k if k > 0 else 0.0


def rank_biased_overlap(a: Sequence[str], b: Sequence[str], p: float = RBO_P) -> float:
    """Extrapolated rank-biased overlap (Webber, Moffat and Zobel 2010) of two rankings.

    1.0 for identical lists, 0.0 for disjoint ones; agreement at the top weighs more
    than agreement further down, and the lists need not hold the same ids. Evaluated to
    the depth of the shorter list.
    """
    depth = min(len(a), len(b))
    if depth == 0:
        return 1.0 if not a and not b else 0.0
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    overlap = 0
    total = 0.0
    for d in range(1, depth + 1):
        x, y = a[d - 1], b[d - 1]
        if x == y:
            overlap += 1
        else:
            overlap += (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += overlap / d * p**d
    return (1 - p) / p * total + overlap / depth * p**depth
