"""Prometheus metrics of the online comparison, labelled by pair (collection, model version)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from indexpair.serving.canary.stats import CanaryStats

SIMILARITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


class CanaryMetrics:
    """Shadow overlap, interleaving wins and clicks, in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.shadow = Counter(
            "indexpair_shadow_queries",
            "Live queries offered to the candidate as shadow traffic, by result "
            "(mirrored, dropped: queue full, error: the candidate failed)",
            ["candidate", "result"],
            registry=registry,
        )
        self.overlap = Histogram(
            "indexpair_shadow_overlap_at_k",
            "overlap@k of the candidate's and the live pair's answers to a mirrored query",
            ["live", "candidate"],
            buckets=SIMILARITY_BUCKETS,
            registry=registry,
        )
        self.rbo = Histogram(
            "indexpair_shadow_rank_biased_overlap",
            "Rank-biased overlap (p=0.9) of the two answers to a mirrored query",
            ["live", "candidate"],
            buckets=SIMILARITY_BUCKETS,
            registry=registry,
        )
        self.shadow_latency = Histogram(
            "indexpair_shadow_candidate_latency_seconds",
            "The candidate's search latency on mirrored queries (encode and search)",
            ["candidate"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.interleaved = Counter(
            "indexpair_interleaved_queries",
            "Responses that interleaved the live pair and the candidate",
            ["candidate"],
            registry=registry,
        )
        self.wins = Gauge(
            "indexpair_interleave_wins",
            "Interleaved queries won (more clicked results), by pair",
            ["collection", "model_version", "role"],
            registry=registry,
        )
        self.p_value = Gauge(
            "indexpair_interleave_p_value",
            "Two-sided sign test on the interleaving wins of the candidate against live",
            ["candidate"],
            registry=registry,
        )
        self.clicks = Counter(
            "indexpair_clicks",
            "Clicks recorded by POST /feedback, by the pair that produced the clicked hit",
            ["collection", "model_version"],
            registry=registry,
        )

    def show(self, stats: CanaryStats, live_version: str, candidate_version: str) -> None:
        """Set the win gauges and the p-value from the current totals."""
        i = stats.interleave
        self.wins.labels(stats.live, live_version, "live").set(i.wins_live)
        self.wins.labels(stats.candidate, candidate_version, "candidate").set(i.wins_candidate)
        self.p_value.labels(stats.candidate).set(i.p_value)
