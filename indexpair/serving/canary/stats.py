"""The evidence about one candidate: shadow figures and the interleaved comparison.

`CanaryStats` is what the search service accumulates, stores on the candidate
collection (pair property ``canary``, so it outlives a restart of the service) and
shows in ``GET /canary``, ``indexpair status`` and the approval report.
"""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import BaseModel, Field

from indexpair.pair import now_iso
from indexpair.serving.canary.interleave import Outcome, leader, sign_test

ALPHA = 0.05  # the significance level the reports speak of
LATENCY_WINDOW = 500  # recent mirrored queries the latency percentiles are taken over


class ShadowStats(BaseModel):
    """Mirrored live queries: how the candidate's answer compares with the live one."""

    mirrored: int = 0
    dropped: int = 0  # the mirror queue was full: the query was not mirrored
    errors: int = 0  # the candidate failed to answer a mirrored query
    overlap_sum: float = 0.0
    rbo_sum: float = 0.0
    min_overlap: float = 1.0
    live_ms: list[float] = Field(default_factory=list)
    candidate_ms: list[float] = Field(default_factory=list)

    def add(self, overlap: float, rbo: float, live_ms: float, candidate_ms: float) -> None:
        """Record one mirrored query."""
        self.mirrored += 1
        self.overlap_sum += overlap
        self.rbo_sum += rbo
        self.min_overlap = min(self.min_overlap, overlap)
        self.live_ms = [*self.live_ms, round(live_ms, 2)][-LATENCY_WINDOW:]
        self.candidate_ms = [*self.candidate_ms, round(candidate_ms, 2)][-LATENCY_WINDOW:]

    def summary(self) -> dict[str, Any]:
        """Means and medians, with the sample size."""
        n = self.mirrored
        return {
            "mirrored": n,
            "dropped": self.dropped,
            "errors": self.errors,
            "mean_overlap_at_k": round(self.overlap_sum / n, 4) if n else None,
            "min_overlap_at_k": round(self.min_overlap, 4) if n else None,
            "mean_rbo": round(self.rbo_sum / n, 4) if n else None,
            "live_ms_p50": _median(self.live_ms),
            "candidate_ms_p50": _median(self.candidate_ms),
        }


class InterleaveStats(BaseModel):
    """Team-draft interleaved queries and the clicks on them."""

    queries: int = 0  # interleaved responses served
    errors: int = 0  # the candidate failed: the session got the live answer alone
    clicks_live: int = 0
    clicks_candidate: int = 0
    wins_live: int = 0
    wins_candidate: int = 0
    ties: int = 0

    def reclassify(self, before: Outcome, after: Outcome) -> None:
        """Move one query from outcome ``before`` to ``after`` (a new click can change it)."""
        for change, result in ((-1, before), (1, after)):
            if result == Outcome.LIVE:
                self.wins_live += change
            elif result == Outcome.CANDIDATE:
                self.wins_candidate += change
            elif result == Outcome.TIE:
                self.ties += change

    @property
    def p_value(self) -> float:
        """Two-sided sign test on the wins (ties left out)."""
        return sign_test(self.wins_candidate, self.wins_live)

    def summary(self) -> dict[str, Any]:
        """Credit per side, the test and its sample sizes."""
        return {
            "queries": self.queries,
            "queries_with_clicks": self.wins_live + self.wins_candidate + self.ties,
            "errors": self.errors,
            "clicks": {"live": self.clicks_live, "candidate": self.clicks_candidate},
            "wins": {"live": self.wins_live, "candidate": self.wins_candidate},
            "ties": self.ties,
            "p_value": round(self.p_value, 6),
            "leader": leader(self.wins_candidate, self.wins_live, ALPHA),
        }


class CanaryStats(BaseModel):
    """Everything known online about one candidate compared with the live pair."""

    candidate: str
    candidate_model: str
    live: str
    live_model: str
    started_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    shadow: ShadowStats = Field(default_factory=ShadowStats)
    interleave: InterleaveStats = Field(default_factory=InterleaveStats)
    auto_denied: str = ""

    def summary(self) -> dict[str, Any]:
        """The JSON shown by ``GET /canary`` and ``indexpair status --json``."""
        return {
            "candidate": self.candidate,
            "candidate_model": self.candidate_model,
            "live": self.live,
            "live_model": self.live_model,
            "since": self.started_at,
            "updated_at": self.updated_at,
            "shadow": self.shadow.summary(),
            "interleave": self.interleave.summary(),
            "auto_denied": self.auto_denied,
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _fmt(value: Any) -> str:
    return "—" if value is None else str(value)


def canary_markdown(stats: CanaryStats) -> str:
    """The live-evidence section of the approval report."""
    s, i = stats.shadow.summary(), stats.interleave.summary()
    verdict = {
        "candidate": "the candidate is significantly better",
        "live": "the live pair is significantly better",
        "undecided": "no significant difference yet",
    }[i["leader"]]
    lines = [
        LIVE_EVIDENCE_HEADING,
        "",
        f"Candidate `{stats.candidate}` ({stats.candidate_model}) against live "
        f"`{stats.live}` ({stats.live_model}), since {stats.started_at}; "
        f"updated {stats.updated_at}.",
        "",
        f"**Shadow traffic** ({s['mirrored']} mirrored queries, {s['dropped']} dropped, "
        f"{s['errors']} candidate errors):",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| mean overlap@k | {_fmt(s['mean_overlap_at_k'])} |",
        f"| lowest overlap@k | {_fmt(s['min_overlap_at_k'])} |",
        f"| mean rank-biased overlap (p=0.9) | {_fmt(s['mean_rbo'])} |",
        f"| search ms p50, live / candidate | {_fmt(s['live_ms_p50'])} / "
        f"{_fmt(s['candidate_ms_p50'])} |",
        "",
        f"**Interleaved comparison** (team draft; {i['queries']} interleaved queries, "
        f"{i['queries_with_clicks']} with clicks):",
        "",
        "| | live | candidate |",
        "| --- | --- | --- |",
        f"| queries won | {i['wins']['live']} | {i['wins']['candidate']} |",
        f"| clicks | {i['clicks']['live']} | {i['clicks']['candidate']} |",
        "",
        f"Ties: {i['ties']}. Sign test p = {i['p_value']:.4g}: {verdict} (α = {ALPHA}).",
    ]
    if stats.auto_denied:
        lines += ["", f"**Denied automatically:** {stats.auto_denied}"]
    return "\n".join(lines)


LIVE_EVIDENCE_HEADING = "## Live evidence (shadow traffic and interleaving)"
