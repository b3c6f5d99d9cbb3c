"""Zero-downtime benchmark: the search service under load while the alias switches.

    python -m benchmarks.zero_downtime                 # ~4 min: own stack, 10 switches
    python -m benchmarks.zero_downtime --switches 12 --interval 20 \
        --source demo/data/products.parquet
    python -m benchmarks.zero_downtime --reuse-stack   # the stack named by MILVUS_URI etc.

Builds three pairs on the same catalog (TF-IDF v1 256-d, MiniLM 384-d, a second TF-IDF
fitted on another corpus: 256-d in another space), starts ``indexpair serve`` in a
subprocess, runs steady load from separate processes against it and, side by side, a
naive client (TF-IDF v1 loaded once, searching the alias directly), and switches the
alias back and forth with the promote flow's locked compare-and-swap
(``tasks.promotion.switch_alias``). Every answer is then checked independently
(`indexpair.serving.consistency`). Writes ``OUT/zero_downtime.png`` and
``OUT/zero_downtime.json``, prints the tables and, last, one JSON line: errors, mixed
answers, and the service's p99 during each switch over its p99 before it (median, max),
and over the slower of its steady p99s before and after (median, max).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.load import Sync, naive_client, read_records, service_client
from benchmarks.pairs import (
    DATA_DIR,
    PROJECT_DIR,
    _free_port,
    add_reuse_stack,
    build_pair,
    register_versions,
    start_stack,
)
from benchmarks.report import Switch, check_all, handover, plot, stats, windows
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.serving.consistency import ConsistencyChecker
from indexpair.settings import Settings
from tasks.promotion import switch_alias

log = logging.getLogger("zero_downtime")
PLAN = [
    ("minilm", "promotion"),
    ("tfidf", "rollback"),
    ("tfidf_alt", "promotion"),
    ("tfidf", "rollback"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--source", default=str(DATA_DIR / "products_small.parquet"))
    p.add_argument("--alias", default="bench_zero_downtime")
    p.add_argument("--switches", type=int, default=10, help="alias switches (default 10)")
    p.add_argument("--interval", type=float, default=12, help="seconds between switches")
    p.add_argument("--warmup", type=float, default=10, help="seconds of load before the first")
    p.add_argument("--tail", type=float, default=10, help="seconds of load after the last")
    p.add_argument("--clients", type=int, default=2, help="service load processes")
    p.add_argument("--naive", type=int, default=1, help="naive client processes")
    p.add_argument("--think-ms", type=float, default=20, help="pause between a client's requests")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--ttl", type=float, default=0.0, help="service alias TTL (s)")
    p.add_argument("--window", type=float, default=5, help="before/after window (s)")
    p.add_argument("--grace", type=float, default=2, help="'during' lasts this long past a switch")
    p.add_argument("--out", default=str(PROJECT_DIR / "benchmarks" / "results"))
    p.add_argument("--keep-state", action="store_true", help="keep the private stack's state dir")
    add_reuse_stack(p)
    return p.parse_args(argv)


def build_pairs(
    settings: Settings, source: Path, alias: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Model versions and one built pair per role, each a candidate for ``alias`` (so the
    service pre-loads them as it would a promotion's candidates)."""
    import ray

    versions = register_versions(settings, source)
    # Stable across runs, so a reused stack reuses the pairs it already holds.
    tag = "b" + hashlib.sha256(str(source).encode()).hexdigest()[:8]
    pairs = {
        role: build_pair(settings, versions[role], source, f"{tag}{i}", alias)
        for i, role in enumerate(("tfidf", "minilm", "tfidf_alt"))
    }
    ray.shutdown()
    return versions, pairs


def point(settings: Settings, alias: str, target: str) -> tuple[float, float, float]:
    """Switch ``alias`` to ``target`` with the flows' locked compare-and-swap; time it.
    Called inside ``prefect_api`` (entered once, as a flow run is)."""
    with MilvusGateway(settings) as milvus:
        current = milvus.alias_target(alias)
    t_start = time.time()
    result = switch_alias(settings, alias, target, current)
    return t_start, time.time(), result.switch_ms


def start_service(settings: Settings, alias: str, ttl: float, logs: Path) -> tuple[Any, str]:
    """``indexpair serve`` in a subprocess; returns it and its URL once healthy."""
    port = _free_port()
    env = {**os.environ, "INDEXPAIR_SERVE_PORT": str(port), "PYTHONPATH": str(PROJECT_DIR)}
    cmd = [sys.executable, "-m", "cli.main", "serve", "--alias", alias, "--ttl", str(ttl)]
    proc = subprocess.Popen(cmd, env=env, stdout=logs.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"search service did not become healthy; see {logs}")


def spawn_clients(
    args: argparse.Namespace,
    url: str,
    queries: list[str],
    naive_version: str,
    work: Path,
    ctx: Any,
    sync: Sync,
) -> tuple[list[Any], list[Path]]:
    """The load processes (not started yet) and the files they will write."""
    env = {
        k: v for k, v in os.environ.items() if k.startswith(("MILVUS_", "MLFLOW_", "INDEXPAIR_"))
    }
    procs, outs = [], []
    think = args.think_ms / 1000
    for i in range(args.clients):
        outs.append(work / f"service-{i}.jsonl")
        procs.append(
            ctx.Process(
                target=service_client, args=(url, queries, args.k, sync, str(outs[-1]), i, think)
            )
        )
    for i in range(args.naive):
        outs.append(work / f"naive-{i}.jsonl")
        procs.append(
            ctx.Process(
                target=naive_client,
                args=(
                    env,
                    args.alias,
                    naive_version,
                    queries,
                    args.k,
                    sync,
                    str(outs[-1]),
                    100 + i,
                    think,
                ),
            )
        )
    return procs, outs


def run_load(
    args: argparse.Namespace,
    settings: Settings,
    url: str,
    pairs: dict[str, str],
    naive_version: str,
    work: Path,
) -> tuple[list[Switch], float, list[Path]]:
    """Start the clients, switch the alias on schedule, wait for the clients to end."""
    queries = [q["query"] for q in json.loads((DATA_DIR / "golden_queries.json").read_text())]
    duration = args.warmup + args.switches * args.interval + args.tail
    ctx = mp.get_context("spawn")
    sync = Sync(ctx, args.clients + args.naive)
    procs, outs = spawn_clients(args, url, queries, naive_version, work, ctx, sync)
    for p in procs:
        p.start()
    t0 = sync.start(duration)
    log.info("%d clients started; load for %.0f s", len(procs), duration)
    switches, current = [], "tfidf"
    with prefect_api.prefect_api(settings):
        for n in range(args.switches):
            role, label = PLAN[n % len(PLAN)]
            time.sleep(max(0.0, t0 + args.warmup + n * args.interval - time.time()))
            t_s, t_e, ms = point(settings, args.alias, pairs[role])
            switches.append(Switch(f"{label} to {role}", pairs[current], pairs[role], t_s, t_e, ms))
            log.info("%s: %s -> %s in %.1f ms (alter_alias)", label, current, role, ms)
            current = role
    for p in procs:
        p.join()
    return switches, t0, outs


def switch_table(per_switch: list[dict[str, Any]]) -> Table:
    """Requests, errors, mixed answers and latency before/during/after each switch."""
    table = Table(
        "switch",
        "client",
        "window",
        "requests",
        "errors",
        "mixed",
        "p50 ms",
        "p99 ms",
        title="Latency around each alias switch (alter_alias time; whole locked "
        "compare-and-swap; first answer from the new pair after)",
    )
    for i, row in enumerate(per_switch, 1):
        sw = row["switch"]
        total_ms = 1000 * (sw["t_end"] - sw["t_start"])
        name = (
            f"{i} {sw['label']} ({sw['switch_ms']:.1f} ms; {total_ms:.0f} ms; "
            f"{row['handover_s']:.2f} s, {row['old_pair_answers']} old-pair answers)"
        )
        for client in ("service", "naive"):
            for window, s in row.get(client, {}).items():
                table.add_row(
                    name,
                    client,
                    window,
                    str(s["n"]),
                    str(s["errors"]),
                    str(s["mixed"]),
                    f"{s['p50']:.1f}",
                    f"{s['p99']:.1f}",
                )
    return table


def summarize(
    args: argparse.Namespace,
    records: list[dict[str, Any]],
    switches: list[Switch],
    t0: float,
    out: Path,
) -> tuple[list[Table], dict[str, Any]]:
    """Write the JSON figures and the plot; return the tables to print and the summary."""
    by_client = {c: [r for r in records if r["client"] == c] for c in ("service", "naive")}
    overall = {c: stats(rs) for c, rs in by_client.items() if rs}
    per_switch = []
    for sw in switches:
        seconds, old = handover(by_client["service"], sw)
        row: dict[str, Any] = {"switch": sw.__dict__, "handover_s": seconds}
        row["old_pair_answers"] = old
        row.update({c: windows(rs, sw, args.window, args.grace) for c, rs in by_client.items()})
        per_switch.append(row)
    figures = {"args": vars(args), "overall": overall, "switches": per_switch}
    (out / "zero_downtime.json").write_text(json.dumps(figures, indent=2, default=str))
    plot(records, switches, t0, out / "zero_downtime.png")
    summary = Table(
        "client",
        "requests",
        "errors",
        "mixed",
        "p50 ms",
        "p99 ms",
        title=f"Zero-downtime summary: {len(switches)} switches, "
        f"{args.clients} service + {args.naive} naive client processes",
    )
    for client, s in overall.items():
        summary.add_row(
            client,
            str(s["n"]),
            str(s["errors"]),
            str(s["mixed"]),
            f"{s['p50']:.1f}",
            f"{s['p99']:.1f}",
        )
    return [switch_table(per_switch), summary], switch_ratios(per_switch, overall)


def switch_ratios(per_switch: list[dict[str, Any]], overall: dict[str, Any]) -> dict[str, Any]:
    """The summary line: errors, mixed answers and the service's p99 during each switch.

    ``p99_ratio_*`` divide it by the p99 before the switch (the old pair's). A switch to a
    slower model (TF-IDF to MiniLM) raises latency for good, not just while it happens;
    ``p99_steady_ratio_*`` divide by the slower of the two steady states (before, after),
    so they count only what exceeds both pairs' own cost: the handover itself.
    """
    rows = [r["service"] for r in per_switch if r.get("service") and r["service"]["before"]["p99"]]
    ratios = [r["during"]["p99"] / r["before"]["p99"] for r in rows]
    steady = [r["during"]["p99"] / max(r["before"]["p99"], r["after"]["p99"]) for r in rows]
    service = overall.get("service", {})

    def _median(xs: list[float]) -> float | None:
        return round(float(np.median(xs)), 3) if xs else None

    def _max(xs: list[float]) -> float | None:
        return round(float(max(xs)), 3) if xs else None

    return {
        "switches": len(per_switch),
        "errors": int(service.get("errors", 0)),
        "mixed": int(service.get("mixed", 0)),
        "p99_ratio_median": _median(ratios),
        "p99_ratio_max": _max(ratios),
        "p99_steady_ratio_median": _median(steady),
        "p99_steady_ratio_max": _max(steady),
        "p99_ratios": [round(r, 2) for r in ratios],
        "p99_steady_ratios": [round(r, 2) for r in steady],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "mlflow", "ray", "prefect", "indexpair"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    console = Console(width=150)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="zero-downtime-"))
    settings, started = start_stack(args.reuse_stack)
    service = None
    try:
        log.info("building pairs on %s", args.source)
        versions, pairs = build_pairs(settings, Path(args.source).resolve(), args.alias)
        log.info("pairs: %s", pairs)
        with prefect_api.prefect_api(settings):
            point(settings, args.alias, pairs["tfidf"])
        service, url = start_service(settings, args.alias, args.ttl, work / "service.log")
        log.info(
            "service at %s; load for %.0f s",
            url,
            args.warmup + args.switches * args.interval + args.tail,
        )
        switches, t0, outs = run_load(args, settings, url, pairs, versions["tfidf"], work)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        (out / "zero_downtime_metrics.txt").write_text(metrics)
        records = read_records(outs)
        checker = ConsistencyChecker(settings)
        try:
            check_all(checker, records)
        finally:
            checker.close()
        tables, ratios = summarize(args, records, switches, t0, out)
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        if started:
            from indexpair import stack

            stack.down(settings)
            if not args.keep_state:  # the private stack's data and model downloads
                shutil.rmtree(settings.state_dir, ignore_errors=True)
    for detail in sorted({r["detail"] for r in records if r.get("mixed")})[:3]:
        console.print(f"example mixed answer: {detail}")
    for err in sorted({r["error"][:120] for r in records if not r["ok"]})[:3]:
        console.print(f"example error: {err}")
    console.print(f"plot: {out / 'zero_downtime.png'}   raw requests: {work}")
    for table in tables:
        console.print(table)
    print(json.dumps(ratios), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
