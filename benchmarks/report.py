"""Figures of the zero-downtime benchmark: consistency verdicts, windows, plot, table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexpair.serving.consistency import ConsistencyChecker


@dataclass
class Switch:
    """One alias switch the benchmark made."""

    label: str  # "promotion to minilm", "rollback to tfidf"
    source: str
    target: str
    t_start: float
    t_end: float
    switch_ms: float  # the alter_alias call alone, as switch_alias measures it


def check_all(checker: ConsistencyChecker, records: list[dict[str, Any]]) -> None:
    """Mark each answered record ``mixed`` (True/False) with the independent checker."""
    for rec in records:
        if not rec["ok"]:
            continue
        verdict = checker.check(
            rec["q"],
            rec["collection"],
            rec["model_name"],
            rec["model_version"],
            [(h[0], h[1]) for h in rec["hits"]],
        )
        rec["mixed"] = not verdict.ok
        rec["detail"] = verdict.detail


def stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, errors, mixed, p50 and p99 latency (ms) of some records."""
    lat = np.array([r["lat_ms"] for r in records if r["ok"]])
    return {
        "n": len(records),
        "errors": sum(not r["ok"] for r in records),
        "mixed": sum(bool(r.get("mixed")) for r in records),
        "p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
    }


def windows(
    records: list[dict[str, Any]], sw: Switch, window_s: float, grace_s: float
) -> dict[str, dict[str, Any]]:
    """Stats of one client's records before, during and after one switch.

    before: ``window_s`` up to the switch; during: from the switch's start to
    ``grace_s`` after its end; after: the ``window_s`` that follow.
    """
    edges = {
        "before": (sw.t_start - window_s, sw.t_start),
        "during": (sw.t_start, sw.t_end + grace_s),
        "after": (sw.t_end + grace_s, sw.t_end + grace_s + window_s),
    }
    return {
        name: stats([r for r in records if lo <= r["t"] < hi]) for name, (lo, hi) in edges.items()
    }


def handover(records: list[dict[str, Any]], sw: Switch) -> tuple[float, int]:
    """Seconds from the end of a switch to the first answer from the new pair, and how
    many answers (consistent, from the old pair) came in between. NaN when none did."""
    after = [r for r in records if r["t"] >= sw.t_end and r["ok"]]
    first = next((r for r in after if r["collection"] == sw.target), None)
    if first is None:
        return float("nan"), len(after)
    return first["t"] - sw.t_end, sum(r["t"] < first["t"] for r in after)


def plot(records: list[dict[str, Any]], switches: list[Switch], t0: float, path: Path) -> None:
    """Latency over time per client, mixed answers and errors marked, switches as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 5))
    styles = {"service": ("tab:blue", "indexpair service"), "naive": ("tab:gray", "naive client")}
    for client, (colour, label) in styles.items():
        mine = [r for r in records if r["client"] == client]
        good = [r for r in mine if r["ok"] and not r.get("mixed")]
        ax.scatter(
            [r["t"] - t0 for r in good],
            [r["lat_ms"] for r in good],
            s=4,
            c=colour,
            label=f"{label}: consistent",
            alpha=0.6,
        )
        mixed = [r for r in mine if r.get("mixed")]
        if mixed:
            ax.scatter(
                [r["t"] - t0 for r in mixed],
                [r["lat_ms"] for r in mixed],
                s=14,
                marker="x",
                c="tab:red",
                label=f"{label}: MIXED",
            )
        bad = [r for r in mine if not r["ok"]]
        if bad:
            ax.scatter(
                [r["t"] - t0 for r in bad],
                [max(r["lat_ms"], 1) for r in bad],
                s=14,
                marker="v",
                c="tab:orange",
                label=f"{label}: error",
            )
    for sw in switches:
        ax.axvline(sw.t_start - t0, color="k", linestyle="--", linewidth=1)
        ax.text(
            sw.t_start - t0,
            ax.get_ylim()[1] * 0.9,
            f" {sw.label}",
            fontsize=7,
            va="top",
        )
    ax.set_yscale("log")
    ax.set_xlabel("seconds since load started")
    ax.set_ylabel("latency (ms, log)")
    ax.set_title("Search latency while the alias switches (dashed lines)")
    ax.legend(loc="lower right", fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
