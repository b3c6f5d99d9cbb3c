"""The cost of taking the per-alias lock, side by side in one run: Prefect's own
``concurrency()`` context (with the limit upserted first, as every lock did before)
against ``indexpair.gateways.prefect.alias_lock`` (lease endpoints, one client per process).

    python -m benchmarks.switch_lock                 # own stack, 50 cycles each way
    python -m benchmarks.switch_lock --reuse-stack --cycles 200

A cycle takes the lock and releases it at once (a switch holds it for a few ms). Both
ways use the same 60 s lease and one limit each, created beforehand. The lock's CPU is
spent on the cores the search service answers from (every process shares them here), so
the table gives, per cycle: the wall time (median, p95) and the CPU seconds of this
process (all its threads) and of the Prefect server. The last line is one JSON object
with the medians and the ratios of the old way to the new.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from rich.console import Console
from rich.table import Table

from benchmarks.memory import tree_cpu_s
from benchmarks.pairs import add_reuse_stack, start_stack
from indexpair.gateways import prefect as prefect_api
from indexpair.settings import Settings


def _cycles(value: str) -> int:
    """A cycle count of at least 1, or argparse's usage error naming the value."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of cycles ≥ 1")
    return n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cycles", type=_cycles, default=50, help="lock cycles per way (default 50)")
    add_reuse_stack(p)
    return p.parse_args(argv)


def prefect_concurrency(name: str) -> AbstractContextManager[None]:
    """The lock as Prefect's ``concurrency()`` takes it, after upserting its limit."""
    from prefect.concurrency.sync import concurrency

    prefect_api.ensure_lock(name)
    return concurrency(
        name, occupy=1, strict=True, timeout_seconds=60, lease_duration=prefect_api.LOCK_LEASE_S
    )


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(
    take: Callable[[str], AbstractContextManager[None]], cycles: int, server_pid: int
) -> dict[str, float]:
    """Median and p95 wall ms of a cycle, and CPU ms per cycle here and in the server."""
    name = f"bench-lock-{uuid.uuid4().hex[:8]}"
    prefect_api.ensure_lock(name)
    for _ in range(3):  # warm: imports, connections, Prefect's loop thread
        with take(name):
            pass
    walls = []
    cpu_here, cpu_server = _self_cpu_s(), tree_cpu_s(server_pid)
    for _ in range(cycles):
        started = time.perf_counter()
        with take(name):
            pass
        walls.append((time.perf_counter() - started) * 1000)
    here = (_self_cpu_s() - cpu_here) * 1000 / cycles
    server = (tree_cpu_s(server_pid) - cpu_server) * 1000 / cycles
    walls.sort()
    return {
        "wall_ms": statistics.median(walls),
        "wall_p95_ms": walls[int(0.95 * (len(walls) - 1))],
        "cpu_here_ms": here,
        "cpu_server_ms": server,
        "cpu_ms": here + server,
    }


def prefect_server_pid(settings: Settings) -> int:
    """The pid of the stack's Prefect server (from its pid file)."""
    path = settings.state_dir / "pids" / "prefect.pid"
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(
            f"no Prefect server of this stack to measure ({path}: {exc}); start one with "
            "`indexpair stack up`, or run without --reuse-stack"
        ) from None


def run(settings: Settings, cycles: int) -> Iterator[tuple[str, dict[str, float]]]:
    pid = prefect_server_pid(settings)
    with prefect_api.prefect_api(settings):
        yield "Prefect concurrency()", measure(prefect_concurrency, cycles, pid)
        yield "indexpair alias_lock", measure(prefect_api.alias_lock, cycles, pid)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings, started = start_stack(args.reuse_stack)
    try:
        figures = dict(run(settings, args.cycles))
    finally:
        if started:
            from indexpair import stack

            stack.down(settings)
            shutil.rmtree(settings.state_dir, ignore_errors=True)
    table = Table(
        "way",
        "wall ms (median)",
        "wall ms (p95)",
        "CPU ms here",
        "CPU ms Prefect server",
        title=f"Taking and releasing the per-alias lock, {args.cycles} cycles each",
    )
    for way, f in figures.items():
        table.add_row(
            way,
            f"{f['wall_ms']:.1f}",
            f"{f['wall_p95_ms']:.1f}",
            f"{f['cpu_here_ms']:.1f}",
            f"{f['cpu_server_ms']:.1f}",
        )
    Console(width=120).print(table)
    old, new = figures["Prefect concurrency()"], figures["indexpair alias_lock"]
    summary = {
        "cycles": args.cycles,
        "prefect_wall_ms": round(old["wall_ms"], 1),
        "indexpair_wall_ms": round(new["wall_ms"], 1),
        "wall_ratio": round(old["wall_ms"] / new["wall_ms"], 2),
        "prefect_cpu_ms": round(old["cpu_ms"], 1),
        "indexpair_cpu_ms": round(new["cpu_ms"], 1),
        "cpu_ratio": round(old["cpu_ms"] / max(new["cpu_ms"], 1e-9), 2),
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
