"""Query-encoding threads: one PyTorch thread against all of them, by batch size.

    python -m benchmarks.query_threads                  # ~2 min, MiniLM, idle and busy cores
    python -m benchmarks.query_threads --sizes 1 4 16 --rounds 50

What ``INDEXPAIR_QUERY_PARALLEL_BATCH`` decides in the search service: below it a batch is
encoded on one thread, from it up with all of PyTorch's threads. For each batch size it
encodes the same short queries ``--rounds`` times with MiniLM (the demo's
all-MiniLM-L6-v2, as the service's batcher does: from a worker thread) on 1 thread and
on all, first with the cores idle, then beside a competing process that keeps every core
half busy (as Milvus, the HTTP side and other processes do on a shared host). It prints
p50 and p99 per setting and, last, one JSON line with the ratios (one thread over all;
below 1: one thread is faster) measured side by side in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

# A process per core, each busy 10 ms then idle 10 ms: half of every core taken, in bursts.
HOG = (
    "import time\n"
    "while True:\n"
    "    t = time.perf_counter()\n"
    "    while time.perf_counter() - t < 0.01:\n"
    "        pass\n"
    "    time.sleep(0.01)\n"
)
QUERIES = [
    "wireless noise cancelling headphones",
    "waterproof hiking boots for women",
    "stainless steel water bottle",
    "ergonomic office chair with lumbar support",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    p.add_argument("--rounds", type=int, default=40, help="encodes per setting (default 40)")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error(f"--rounds must be at least 2 (got {args.rounds})")
    if min(args.sizes) < 1:
        p.error(f"every --sizes value must be at least 1 (got {args.sizes})")
    return args


def timed(encode: Any, texts: list[str], threads: int, rounds: int) -> list[float]:
    """Milliseconds per encode of ``texts`` on ``threads`` PyTorch threads, in a new thread."""
    import torch

    out: list[float] = []

    def run() -> None:
        torch.set_num_threads(threads)  # per thread, as the service's batcher sets it
        encode(texts)  # warm-up
        for _ in range(rounds):
            started = time.perf_counter()
            encode(texts)
            out.append((time.perf_counter() - started) * 1000)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return out


def measure(
    encode: Any, sizes: list[int], every: int, rounds: int
) -> dict[int, dict[int, list[float]]]:
    """Per batch size, per thread count: the encode times (1 and ``every`` alternate)."""
    found: dict[int, dict[int, list[float]]] = {}
    for size in sizes:
        texts = [QUERIES[i % len(QUERIES)] for i in range(size)]
        found[size] = {1: [], every: []}
        for _ in range(2):  # alternate, so slow spells of the machine hit both
            for threads in (1, every):
                found[size][threads] += timed(encode, texts, threads, rounds // 2)
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer

    from demo.models import minilm_dir

    model = SentenceTransformer(str(minilm_dir()), device="cpu")

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, prompt="", show_progress_bar=False, convert_to_numpy=True)

    every = torch.get_num_threads()
    if every < 2:
        print(f"PyTorch has {every} thread here: nothing to compare", file=sys.stderr)
        return 2
    cores = os.cpu_count() or every
    results = {"idle": measure(encode, args.sizes, every, args.rounds)}
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(cores)]
    try:
        results["busy"] = measure(encode, args.sizes, every, args.rounds)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    table = Table(
        "cores",
        "batch",
        "1 thread p50 / p99 ms",
        f"{every} threads p50 / p99 ms",
        "p50 ratio",
        "p99 ratio",
        title=f"MiniLM query encode, 1 against {every} PyTorch threads "
        f"({args.rounds} encodes each; busy: {cores} processes half-busy)",
    )
    ratios: dict[str, dict[str, list[float]]] = {}
    for state, by_size in results.items():
        for size, by_threads in by_size.items():
            one, all_ = np.array(by_threads[1]), np.array(by_threads[every])
            p50 = float(np.percentile(one, 50) / np.percentile(all_, 50))
            p99 = float(np.percentile(one, 99) / np.percentile(all_, 99))
            ratios.setdefault(state, {})[str(size)] = [round(p50, 2), round(p99, 2)]
            table.add_row(
                state,
                str(size),
                f"{np.percentile(one, 50):.1f} / {np.percentile(one, 99):.1f}",
                f"{np.percentile(all_, 50):.1f} / {np.percentile(all_, 99):.1f}",
                f"{p50:.2f}",
                f"{p99:.2f}",
            )
    Console(width=120).print(table)
    print(json.dumps({"threads": every, "one_over_all_p50_p99": ratios}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
