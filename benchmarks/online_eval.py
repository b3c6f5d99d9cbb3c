"""Online evaluation by simulation: how many queries team-draft interleaving needs.

Rankings come from the demo's real models, computed offline (brute-force cosine over
the demo catalog, no servers): TF-IDF + SVD is the live pair, all-MiniLM-L6-v2 a better
candidate and the deliberately broken MiniLM a worse one (see ``demo/evaluate.py``).
Users are simulated by a cascade click model (Craswell et al. 2008) over graded
relevance: grade 2 for a golden relevant product, grade 1 for a product of the same
type and colour as the golden ones, 0 otherwise. The user scans the interleaved top 10
from the top, clicks a result of grade g with probability ``CLICK[g]`` and, after a
click, stops with probability ``STOP[g]``.

Each run draws a stream of queries (uniformly from the golden queries), interleaves the
two rankings with the service's own team draft, credits the clicks and applies the
service's sign test after every query. A run decides at the first query where
p < 0.05. Printed per comparison: the share of runs that decided in the right
direction, the wrong one, or not at all, and the queries to a decision (median, 90th
percentile). An A/A comparison (live against itself) shows how often continuous
testing decides wrongly when nothing differs.

Run: ``python -m benchmarks.online_eval [--runs 200] [--max-queries 3000] [--data full]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from demo.catalog import DATA_DIR, product_texts
from demo.evaluate import Embed, st_embedder, tfidf_embedder
from demo.golden import load_golden
from demo.models import make_broken_model_dir, minilm_dir
from indexpair.serving.canary import Outcome, clicks_per_team, outcome, sign_test, team_draft

K = 10
ALPHA = 0.05
CLICK = {0: 0.05, 1: 0.3, 2: 0.9}  # P(click | grade)
STOP = {0: 0.2, 1: 0.4, 2: 0.8}  # P(stop | click on grade)
Rankings = list[list[str]]


def rankings(embed: Embed, catalog: pd.DataFrame, queries: list[str]) -> Rankings:
    """Top-K product ids per query by cosine similarity."""
    ids = catalog["id"].to_numpy()
    docs = embed(product_texts(catalog))
    top = np.argsort(-(embed(queries) @ docs.T), axis=1, kind="stable")[:, :K]
    return [ids[row].tolist() for row in top]


def grades(catalog: pd.DataFrame, relevant: list[str]) -> dict[str, int]:
    """Graded relevance of one golden query: 2 relevant, 1 same type and colour."""
    by_id = catalog.set_index("id")
    first = by_id.loc[relevant[0]]
    near = catalog[
        (catalog["product_type"] == first["product_type"]) & (catalog["color"] == first["color"])
    ]["id"]
    return {**dict.fromkeys(near, 1), **dict.fromkeys(relevant, 2)}


def cascade_clicks(shown: list[str], grade: dict[str, int], rng: random.Random) -> list[str]:
    """The clicks of one simulated user scanning ``shown`` top down."""
    clicked = []
    for hit in shown:
        g = grade.get(hit, 0)
        if rng.random() < CLICK[g]:
            clicked.append(hit)
            if rng.random() < STOP[g]:
                break
    return clicked


@cache
def _p(candidate_wins: int, live_wins: int) -> float:
    return sign_test(candidate_wins, live_wins)


def one_run(
    live: Rankings, cand: Rankings, rel: list[dict[str, int]], seed: int, max_queries: int
) -> tuple[str, int]:
    """One stream of queries until p < ALPHA: (``candidate``|``live``|``none``, queries)."""
    rng = random.Random(seed)
    wins = {Outcome.LIVE: 0, Outcome.CANDIDATE: 0}
    for n in range(1, max_queries + 1):
        q = rng.randrange(len(live))
        mixed = team_draft(live[q], cand[q], K, lambda: rng.random() < 0.5)
        result = outcome(clicks_per_team(mixed, cascade_clicks([i for i, _ in mixed], rel[q], rng)))
        if result not in wins:
            continue  # no click or a tie: no decision from this query
        wins[result] += 1
        if _p(wins[Outcome.CANDIDATE], wins[Outcome.LIVE]) < ALPHA:
            better = wins[Outcome.CANDIDATE] > wins[Outcome.LIVE]
            return ("candidate" if better else "live"), n
    return "none", max_queries


def compare(
    name: str, live: Rankings, cand: Rankings, rel: list[dict[str, int]], runs: int, cap: int
) -> dict[str, object]:
    """Many runs of one comparison, summarised."""
    results = [one_run(live, cand, rel, seed, cap) for seed in range(runs)]
    decided = {w: [n for r, n in results if r == w] for w in ("candidate", "live", "none")}
    expect = {"better": "candidate", "worse": "live"}.get(name)
    right = decided[expect] if expect else []
    summary: dict[str, object] = {
        "comparison": name,
        "runs": runs,
        "candidate_significantly_better": len(decided["candidate"]) / runs,
        "live_significantly_better": len(decided["live"]) / runs,
        "undecided": len(decided["none"]) / runs,
    }
    if right:
        ordered = sorted(right)
        summary["queries_median"] = int(statistics.median(ordered))
        summary["queries_p90"] = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return summary


def main(argv: list[str] | None = None) -> None:
    """Build the rankings, simulate, print the table and the JSON line (CLI entry point)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--max-queries", type=int, default=3000)
    parser.add_argument("--data", choices=["full", "small"], default="full")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    suffix = "" if args.data == "full" else "_small"
    catalog = pd.read_parquet(DATA_DIR / f"products{suffix}.parquet")
    golden = load_golden(DATA_DIR / f"golden_queries{suffix}.json")
    texts = [q["query"] for q in golden]
    rel = [grades(catalog, q["relevant_ids"]) for q in golden]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models: dict[str, Callable[[], Embed]] = {
            "tfidf": lambda: tfidf_embedder(product_texts(catalog)),
            "minilm": lambda: st_embedder(minilm_dir()),
            "broken": lambda: st_embedder(make_broken_model_dir(minilm_dir(), Path(tmp) / "b")),
        }
        ranked = {name: rankings(make(), catalog, texts) for name, make in models.items()}
    print(  # noqa: T201 (CLI output)
        f"rankings of {len(texts)} golden queries over {len(catalog)} products by "
        f"{', '.join(ranked)} in {time.perf_counter() - started:.0f} s; live pair: tfidf"
    )
    rows = [
        compare("better", ranked["tfidf"], ranked["minilm"], rel, args.runs, args.max_queries),
        compare("worse", ranked["tfidf"], ranked["broken"], rel, args.runs, args.max_queries),
        compare("a/a", ranked["tfidf"], ranked["tfidf"], rel, args.runs, args.max_queries),
    ]
    print(pd.DataFrame(rows).to_string(index=False))  # noqa: T201
    better, worse = rows[0], rows[1]
    for row, who in ((better, "MiniLM (better)"), (worse, "broken MiniLM (worse)")):
        print(  # noqa: T201
            f"{who} vs TF-IDF: p < {ALPHA} in the right direction after a median of "
            f"{row.get('queries_median', '—')} queries (90th percentile "
            f"{row.get('queries_p90', '—')}), in {row['runs']} simulated streams"
        )
    print(  # noqa: T201
        json.dumps(
            {
                "better_detected": float(str(better["candidate_significantly_better"])) >= 0.9,
                "worse_detected": float(str(worse["live_significantly_better"])) >= 0.9,
                "queries_to_decision": {
                    "better": better.get("queries_median"),
                    "worse": worse.get("queries_median"),
                },
                "detection_rate": {
                    "better": better["candidate_significantly_better"],
                    "worse": worse["live_significantly_better"],
                },
                "aa_false_decisions": 1 - float(str(rows[2]["undecided"])),
                "runs": args.runs,
                "max_queries": args.max_queries,
                "data": args.data,
            }
        )
    )


if __name__ == "__main__":
    main()
