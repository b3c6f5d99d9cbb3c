"""The build's Ray pipeline: source batches fed to a pool of embedding actors, a few in
flight per actor, their output handed on as each batch finishes.

Plain Ray actors, fed by this (the driver's) process: the driver reads the source with
pyarrow, so only it needs to reach the source, and nothing starts but the actors
themselves. Ray Data did the same job with a streaming executor and helper processes
that took 6 s of start-up and a few percent of the CPU from the model on a 2-core
machine (docs/performance.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from indexpair.build.actors import BatchEmbedder, BatchWriter
from indexpair.build.layout import WRITER_CPUS, Layout

# Batches queued on each actor: the next one is there when a batch finishes, while the
# driver is still inserting the last one.
IN_FLIGHT_PER_ACTOR = 2
# In the last round (the final ``actors × batch`` rows) batches shrink to this share, so
# no actor waits long at the end for another's last, full-size batch.
TAIL_SHARE = 4
# An actor killed (a node lost, out of memory) is restarted once and its batch retried;
# upserts are keyed by id, so a retried batch stores nothing twice.
RESTARTS = 1


def start_embedders(layout: Layout, kwargs: dict[str, Any]) -> list[Any]:
    """The layout's embedding actors, each loading the model (spread over the nodes)."""
    import ray

    remote = ray.remote(BatchEmbedder).options(
        num_cpus=layout.cpus_per_actor,
        num_gpus=layout.gpus_per_actor or None,
        scheduling_strategy="SPREAD",
        max_restarts=RESTARTS,
        max_task_retries=RESTARTS,
    )
    return [remote.remote(**kwargs) for _ in range(layout.actors)]


def start_writers(layout: Layout, settings: Any, collection: str) -> list[Any]:
    """Parallel insert actors, for a backend that takes concurrent writers."""
    import ray

    remote = ray.remote(BatchWriter).options(
        num_cpus=WRITER_CPUS, max_restarts=RESTARTS, max_task_retries=RESTARTS
    )
    return [remote.remote(settings, collection) for _ in range(layout.writers)]


def id_set(only_ids: frozenset[str] | None) -> pa.Array | None:
    """The ids to keep as one Arrow array (built once, for every batch), or None: all."""
    return None if only_ids is None else pa.array(sorted(only_ids), pa.string())


def keep_rows(batch: pa.RecordBatch, id_field: str, wanted: pa.Array | None) -> pa.Table:
    """The rows of a source batch to embed: all, or those whose id is in ``wanted``."""
    table = pa.Table.from_batches([batch])
    if wanted is None:
        return table
    ids = pc.cast(table.column(id_field), pa.string())
    return table.filter(pc.is_in(ids, value_set=wanted))


def embedding_batches(
    tables: Iterable[pa.Table], size: int, total: int | None, actors: int
) -> Iterator[pa.Table]:
    """Re-cut source rows into batches of ``size`` rows; when ``total`` is known, the last
    ``actors × size`` rows go in quarter-size batches (``TAIL_SHARE``)."""
    small = max(1, math.ceil(size / TAIL_SHARE))
    sent = 0

    def next_size() -> int:
        in_tail = total is not None and total - sent <= actors * size
        return small if in_tail else size

    held: list[pa.Table] = []
    rows = 0
    for table in tables:
        if table.num_rows == 0:
            continue
        held.append(table)
        rows += table.num_rows
        while rows >= next_size():
            merged = pa.concat_tables(held)
            cut = next_size()
            yield merged.slice(0, cut)
            sent += cut
            rest = merged.slice(cut)
            held, rows = ([rest] if rest.num_rows else []), rest.num_rows
    if rows:
        merged = pa.concat_tables(held)
        for start in range(0, rows, small):
            yield merged.slice(start, small)


def embedded(actors: list[Any], batches: Iterator[pa.Table]) -> Iterator[tuple[Any, int]]:
    """Feed ``batches`` to the actors, at most ``IN_FLIGHT_PER_ACTOR`` each; yield each
    finished batch's object ref and row count, in the order they finish."""
    import ray

    in_flight: dict[Any, tuple[int, int]] = {}

    def feed(actor: int) -> None:
        batch = next(batches, None)
        if batch is not None:
            in_flight[actors[actor].embed_table.remote(batch)] = (actor, batch.num_rows)

    for actor in range(len(actors)):
        for _ in range(IN_FLIGHT_PER_ACTOR):
            feed(actor)
    while in_flight:
        [done], _ = ray.wait(list(in_flight), num_returns=1)
        actor, rows = in_flight.pop(done)
        feed(actor)  # before the caller's insert, so the actor never waits for it
        yield done, rows


def groups(finished: Iterable[tuple[Any, int]], rows: int) -> Iterator[list[Any]]:
    """Finished batches' object refs in groups of at least ``rows`` rows (the last group
    may be smaller): one upsert each."""
    group: list[Any] = []
    count = 0
    for ref, n in finished:
        group.append(ref)
        count += n
        if count >= rows:
            yield group
            group, count = [], 0
    if group:
        yield group


def gathered(finished: Iterable[tuple[Any, int]], rows: int) -> Iterator[dict[str, Any]]:
    """Finished batches fetched and joined into insert batches of at least ``rows`` rows."""
    import numpy as np
    import ray

    for group in groups(finished, rows):
        parts = ray.get(group)
        yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def written(
    finished: Iterable[tuple[Any, int]], writers: list[Any], rows: int
) -> Iterator[tuple[int, str]]:
    """Hand finished batches (by reference: the vectors go from actor to writer, not
    through this process) to the writers in groups of at least ``rows`` rows, round
    robin, two groups in flight per writer; yield each group's (rows upserted, error)."""
    import ray

    pending: list[Any] = []
    for turn, group in enumerate(groups(finished, rows)):
        pending.append(writers[turn % len(writers)].write.remote(*group))
        while len(pending) > 2 * len(writers):
            yield ray.get(pending.pop(0))
    for ref in pending:
        yield ray.get(ref)
