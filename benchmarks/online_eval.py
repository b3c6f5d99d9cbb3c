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
two rankings with the service's own team draft, credits the clicks with the service's
own credit rule and applies its sign test. Two ways of testing are reported:

- fixed horizon: the smallest number of queries (from a grid) after which one test
  finds p < 0.05 in the right direction in 90 % of the streams (power 0.9);
- sequential: testing after every query and stopping at the first p < 0.05 (what a
  dashboard watched continuously does): the median stopping point, and how often it
  stops in the wrong direction.

An A/A comparison (live against itself) shows the false decisions of each way, and of
the service's automatic denial (sign test p < 0.01, after at least 100 decided queries,
checked continuously).

Run: ``python -m benchmarks.online_eval [--runs 100] [--max-queries 10000] [--data full|small]``
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
HORIZONS = (
    10,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    4000,
    5000,
    7500,
    10000,
)
DENY_ALPHA, DENY_MIN_DECIDED = 0.01, 100  # the service's automatic-denial defaults
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
) -> list[tuple[int, int]]:
    """One stream of interleaved queries: (candidate wins, live wins) after each query."""
    rng = random.Random(seed)
    wins = {Outcome.LIVE: 0, Outcome.CANDIDATE: 0}
    path = []
    for _ in range(max_queries):
        q = rng.randrange(len(live))
        mixed = team_draft(live[q], cand[q], K, lambda: rng.random() < 0.5)
        clicks = cascade_clicks([i for i, _ in mixed], rel[q], rng)
        result = outcome(clicks_per_team(mixed, clicks))
        if result in wins:  # no click or a tie decides nothing
            wins[result] += 1
        path.append((wins[Outcome.CANDIDATE], wins[Outcome.LIVE]))
    return path


def _verdict(candidate_wins: int, live_wins: int, alpha: float = ALPHA) -> str:
    if _p(candidate_wins, live_wins) >= alpha:
        return "none"
    return "candidate" if candidate_wins > live_wins else "live"


def sequential(path: list[tuple[int, int]]) -> tuple[str, int]:
    """Test after every query; stop at the first p < ALPHA: (winner, queries)."""
    for n, (c, w) in enumerate(path, start=1):
        verdict = _verdict(c, w)
        if verdict != "none":
            return verdict, n
    return "none", len(path)


def denied(path: list[tuple[int, int]], alpha: float, min_decided: int) -> bool:
    """Whether the service's automatic denial (continuous, its defaults) would fire."""
    return any(c + w >= min_decided and _verdict(c, w, alpha) == "live" for c, w in path)


def compare(name: str, paths: list[list[tuple[int, int]]], expect: str) -> dict[str, object]:
    """Runs of one comparison, summarised for both ways of testing."""
    runs = len(paths)
    seq = [sequential(p) for p in paths]
    right = sorted(n for r, n in seq if r == expect)
    row: dict[str, object] = {
        "comparison": name,
        "seq_right": sum(r == expect for r, _ in seq) / runs,
        "seq_wrong": sum(r not in (expect, "none") for r, _ in seq) / runs,
        "seq_median_q": int(statistics.median(right)) if right else None,
        "fixed_n_90pct": None,
        "fixed_wrong_at_n": None,
        "auto_denied": sum(denied(p, DENY_ALPHA, DENY_MIN_DECIDED) for p in paths) / runs,
    }
    for n in HORIZONS:
        if n > len(paths[0]):
            break
        verdicts = [_verdict(*p[n - 1]) for p in paths]
        if expect == "none":  # A/A: the false decision rate at the largest horizon
            row["fixed_wrong_at_n"] = sum(v != "none" for v in verdicts) / runs
        elif sum(v == expect for v in verdicts) >= 0.9 * runs:
            row["fixed_n_90pct"] = n
            row["fixed_wrong_at_n"] = sum(v not in (expect, "none") for v in verdicts) / runs
            break
    return row


def main(argv: list[str] | None = None) -> None:
    """Build the rankings, simulate, print the table and the JSON line (CLI entry point)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--max-queries", type=int, default=10000)
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
    simulated = {
        name: [
            one_run(ranked["tfidf"], ranked[cand], rel, seed, args.max_queries)
            for seed in range(args.runs)
        ]
        for name, cand in (("better", "minilm"), ("worse", "broken"), ("a/a", "tfidf"))
    }
    rows = [
        compare(name, paths, expect)
        for (name, paths), expect in zip(
            simulated.items(), ("candidate", "live", "none"), strict=True
        )
    ]
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).to_string(index=False))  # noqa: T201
    better, worse, same = rows
    for row, who in ((better, "MiniLM (better)"), (worse, "broken MiniLM (worse)")):
        print(  # noqa: T201
            f"{who} vs TF-IDF live: p < {ALPHA} in the right direction in 90 % of streams "
            f"when tested once after {row['fixed_n_90pct']} queries; testing after every "
            f"query stops after a median of {row['seq_median_q']} ({args.runs} streams)"
        )
    print(  # noqa: T201
        json.dumps(
            {
                "better_detected": better["fixed_n_90pct"] is not None,
                "worse_detected": worse["fixed_n_90pct"] is not None,
                "queries_to_decision": {
                    "better": better["fixed_n_90pct"],
                    "worse": worse["fixed_n_90pct"],
                },
                "sequential_median_queries": {
                    "better": better["seq_median_q"],
                    "worse": worse["seq_median_q"],
                },
                "aa_false_decisions": {
                    "fixed": same["fixed_wrong_at_n"],
                    "sequential": same["seq_wrong"],
                    "auto_deny": same["auto_denied"],
                },
                "runs": args.runs,
                "max_queries": args.max_queries,
                "data": args.data,
            }
        )
    )


if __name__ == "__main__":
    main()
