"""Serving benchmark: what the parts allow against what the search service delivers.

    python -m benchmarks.serving                     # ~4 min: own stack, Milvus Lite
    python -m benchmarks.serving --milvus-backend standalone   # a real Milvus 2.3 server
    python -m benchmarks.serving --reuse-stack       # the stack named by MILVUS_URI etc.

In one run on one machine it builds a MiniLM pair of the demo catalog and measures:

(a) the parts' limit: the same queries encoded in batches of ``query_batch_max`` by the
    pair's model and searched in one Milvus call per batch, in this process, nothing else
    running, sustained over ``--limit-seconds`` (the best single round is shown too);
(b) ``indexpair serve`` under 8, 32 and 128 concurrent clients, each a separate process
    (standard library only, one keep-alive connection, one request at a time, no
    think time).

It prints a table (with each level's mean micro-batch size, from the service's
/metrics) and, last, one JSON line: ``limit_qps``, ``service_qps`` (32 clients),
``ratio`` (service over limit), ``p50_ms`` and ``p99_ms`` (32 clients).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.pairs import DATA_DIR, add_reuse_stack, build_pair, register_versions, start_stack
from benchmarks.zero_downtime import point, start_service
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import encode_queries, load_model
from indexpair.settings import Settings

log = logging.getLogger("serving")
ALIAS = "bench_serving"
# A client: standard library only (starts in a blink), one request at a time until the
# end time, then one line: (finished at, latency ms) per answer, and the error count.
CLIENT = r"""
import http.client, json, random, sys, time, urllib.parse
url, out, k = sys.argv[1], sys.argv[4], sys.argv[6]
start, end, seed = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[5])
host, port = url.removeprefix("http://").split(":")
queries = json.load(sys.stdin)
rng = random.Random(seed)
lat, errors = [], 0
conn = http.client.HTTPConnection(host, int(port), timeout=30)  # kept alive, as clients do
time.sleep(max(0.0, start - time.time()))
while time.time() < end:
    q = urllib.parse.quote(rng.choice(queries))
    t = time.perf_counter()
    try:
        conn.request("GET", f"/search?q={q}&k={k}")
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(r.status)
        lat.append((time.time(), (time.perf_counter() - t) * 1000))
    except Exception:
        errors += 1
        conn.close()
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
open(out, "w").write(json.dumps({"lat": lat, "errors": errors}))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", default="8,32,128", help="concurrency levels")
    p.add_argument("--seconds", type=float, default=20, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=4, help="unmeasured seconds per level")
    p.add_argument("--limit-seconds", type=float, default=10, help="how long (a) runs")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--source", default=str(DATA_DIR / "products.parquet"))
    p.add_argument("--milvus-backend", choices=["lite", "standalone"], default="lite")
    add_reuse_stack(p)
    return p.parse_args(argv)


def query_texts() -> list[str]:
    """Short product queries: the golden ones and a few word pairs of their words."""
    golden = json.loads((DATA_DIR / "golden_queries.json").read_text())
    texts = [q["query"] for q in (golden["queries"] if isinstance(golden, dict) else golden)]
    words = sorted({w for t in texts for w in t.split() if len(w) > 3})
    texts += [f"{a} {b}" for a, b in zip(words[::2], words[1::2], strict=False)]
    return sorted(set(texts))


def parts_limit(
    settings: Settings, collection: str, texts: list[str], k: int, seconds: float
) -> tuple[float, float]:
    """Queries per second of batched encode plus batched search, sustained over
    ``seconds`` (rounds over every query, batches of ``query_batch_max``), and the best
    single round. The service is measured over whole seconds too, so the sustained rate
    is the limit it is compared with."""
    with MilvusGateway(settings) as milvus:
        pair = milvus.read_pair(collection)
        ref = ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)
        with MlflowRegistry(settings) as registry:
            model = load_model(registry.download_model(ref), ref.display)
        batch = settings.query_batch_max
        encode_queries(model, pair, texts[:batch])  # warm-up
        milvus.search(collection, encode_queries(model, pair, texts[:batch]), k)
        rounds, started = [], time.perf_counter()
        while not rounds or time.perf_counter() - started < seconds:
            at = time.perf_counter()
            for i in range(0, len(texts), batch):
                vectors = encode_queries(model, pair, texts[i : i + batch])
                milvus.search(collection, vectors, k)
            rounds.append(len(texts) / (time.perf_counter() - at))
        sustained = len(rounds) * len(texts) / (time.perf_counter() - started)
    return sustained, max(rounds)


def batch_counts(url: str) -> tuple[float, float]:
    """The service's micro-batches and the queries in them so far (its /metrics)."""
    import httpx

    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        values[name] = value
    return tuple(float(values[f"indexpair_query_{n}"]) for n in ("batches", "batched_queries"))


def load_level(url: str, texts: list[str], clients: int, args: argparse.Namespace) -> dict:
    """``clients`` client processes against the service; qps and latency percentiles."""
    batches_before, batched_before = batch_counts(url)
    work = Path(tempfile.mkdtemp(prefix=f"serving-{clients}-"))
    start = time.time() + 2 + clients * 0.02  # every process started before the clock runs
    measure_from = start + args.warmup
    end = measure_from + args.seconds
    procs = []
    payload = json.dumps(texts)
    for i in range(clients):
        argv = [url, str(start), str(end), str(work / f"{i}.json"), str(i), str(args.k)]
        proc = subprocess.Popen([sys.executable, "-c", CLIENT, *argv], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(payload.encode())
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        proc.wait(timeout=args.warmup + args.seconds + 120)
    batches_after, batched_after = batch_counts(url)
    batches, batched = batches_after - batches_before, batched_after - batched_before
    lat, errors = [], 0
    for i in range(clients):
        data = json.loads((work / f"{i}.json").read_text())
        lat += [ms for done, ms in data["lat"] if measure_from <= done < end]  # not warm-up
        errors += data["errors"]
    arr = np.array(lat or [0.0])
    return {
        "clients": clients,
        "qps": len(lat) / args.seconds,
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "errors": errors,
        "mean_batch": batched / batches if batches else 0.0,  # warm-up included
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "mlflow", "ray", "prefect", "indexpair"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.milvus_backend == "standalone":
        os.environ["INDEXPAIR_MILVUS_BACKEND"] = "standalone"
    settings, started = start_stack(args.reuse_stack)
    service = None
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    try:
        versions = register_versions(settings, Path(args.source))
        collection = build_pair(settings, versions["minilm"], Path(args.source), "servebench")
        with prefect_api.prefect_api(settings):
            point(settings, ALIAS, collection)
        texts = query_texts()
        limit, best = parts_limit(settings, collection, texts, args.k, args.limit_seconds)
        log.info(
            "parts' limit: %.0f queries/s sustained over %.0f s (best round %.0f), %d queries",
            limit,
            args.limit_seconds,
            best,
            len(texts),
        )
        service, url = start_service(settings, ALIAS, 0.0, work / "service.log")
        levels = [load_level(url, texts, int(c), args) for c in args.clients.split(",")]
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        if started:
            from indexpair import stack

            stack.down(settings)
    table = Table(
        "clients", "queries/s", "p50 ms", "p99 ms", "errors", "of the limit", "mean batch",
        title=f"search service on {args.milvus_backend} Milvus, MiniLM, k={args.k}; "
        f"parts' limit {limit:.0f} queries/s (best round {best:.0f})",
    )  # fmt: skip
    for level in levels:
        table.add_row(
            str(level["clients"]),
            f"{level['qps']:.0f}",
            f"{level['p50_ms']:.0f}",
            f"{level['p99_ms']:.0f}",
            str(level["errors"]),
            f"{level['qps'] / limit:.2f}",
            f"{level['mean_batch']:.1f}",
        )
    Console(width=150).print(table)
    at32 = next((lv for lv in levels if lv["clients"] == 32), levels[0])
    summary = {
        "limit_qps": round(limit, 1),
        "limit_best_round_qps": round(best, 1),
        "service_qps": round(at32["qps"], 1),
        "ratio": round(at32["qps"] / limit, 3),
        "p50_ms": round(at32["p50_ms"], 1),
        "p99_ms": round(at32["p99_ms"], 1),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
