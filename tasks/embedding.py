"""Embedding stage: parallel embedding on a pool of Ray actors, streamed into Milvus."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from indexpair.build import pool
from indexpair.build.actors import BatchEmbedder
from indexpair.build.layout import Layout, forward_batch, plan
from indexpair.build.pool import keep_rows
from indexpair.errors import ModelOutputError
from indexpair.gateways import ray_cluster
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.ray_cluster import RayCluster
from indexpair.settings import Settings
from tasks.registry import ModelProbe
from tasks.source import SourceSpec, iter_batches

log = logging.getLogger(__name__)


def cluster_layout(settings: Settings, rows: int | None = None) -> Layout:
    """The layout for the Ray cluster this process is connected to."""
    import ray

    resources = ray.cluster_resources()
    with MilvusGateway(settings) as milvus:
        backend = milvus.server_kind()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    return plan(settings, cpus, gpus, backend, rows)


def embed_into(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    on_progress: Callable[[int], None],
    only_ids: frozenset[str] | None = None,
    rows: int | None = None,
    fingerprint: str | None = None,
) -> int:
    """Embed the source (or only the rows in ``only_ids``) with a pool of Ray actors and
    insert it, batch by batch; ``rows`` (how many, when known) sizes the pool and the
    last, smaller batches; ``fingerprint`` (the build's pin) makes it read the content
    that was checked and counted (``tasks.source.iter_batches``).

    Reading, embedding and inserting overlap: this process reads the source and feeds
    the actors (``indexpair/build/pool.py``) while they embed. Upserts come from this one
    process on Milvus Lite (writes to one collection must be serialized there), from
    writer actors in parallel on a Milvus server; upserts keyed by id make a repeated
    batch harmless.

    Returns:
        The number of rows inserted.
    """
    ray_cluster.connect(settings)
    layout = cluster_layout(settings, rows)
    log.info("build layout: %s", layout.describe())
    embedders = pool.start_embedders(
        layout, _embedder_kwargs(settings, spec, model, layout.threads, layout.forward_batch)
    )
    wanted = pool.id_set(only_ids)
    source = iter_batches(settings, spec, fingerprint=fingerprint)
    tables = (keep_rows(b, spec.id_field, wanted) for b in source)
    batches = pool.embedding_batches(tables, settings.embed_batch_size, rows, layout.actors)
    finished = pool.embedded(embedders, batches)
    if layout.writers == 1:  # Milvus Lite: this process is the only writer
        gathered = pool.gathered(finished, settings.insert_batch_size)
        return insert_batches(settings, collection, gathered, on_progress)
    writers = pool.start_writers(layout, settings, collection)
    inserted = 0
    for count, error in pool.written(finished, writers, settings.insert_batch_size):
        if error:
            raise ModelOutputError(error)
        inserted += count
        on_progress(inserted)
    return inserted


def insert_batches(
    settings: Settings,
    collection: str,
    batches: Iterable[dict[str, Any]],
    on_progress: Callable[[int], None],
) -> int:
    """Upsert embedded batches (the embedder's output) from this one process.

    Raises:
        ModelOutputError: a batch carries the embedder's error instead of vectors.
    """
    inserted = 0
    with MilvusGateway(settings) as milvus:
        for batch in batches:
            failed = [str(e) for e in batch["error"] if e]
            if failed:
                raise ModelOutputError(failed[0])
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            inserted += milvus.insert(
                collection,
                [str(i) for i in batch["id"]],
                [str(h) for h in batch["content_hash"]],
                vectors,
            )
            on_progress(inserted)
    return inserted


def embed_here(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    on_progress: Callable[[int], None],
    only_ids: frozenset[str],
    fingerprint: str | None = None,
) -> int:
    """Embed a few rows (of the pinned content, given ``fingerprint``) in this process with
    the same :class:`BatchEmbedder`.

    For a refresh's small delta, where starting Ray and its actors would cost more than
    the embedding itself (measured: ``benchmarks/refresh.py``).
    """
    import torch

    threads = settings.embed_threads or os.cpu_count() or 1
    batch = forward_batch(settings, on_gpu=torch.cuda.is_available())
    embedder = BatchEmbedder(**_embedder_kwargs(settings, spec, model, threads, batch))

    # Full batches of the matching rows (one predict call per few rows would cost more
    # than the encoding).
    wanted = pool.id_set(only_ids)
    source = iter_batches(settings, spec, fingerprint=fingerprint)
    tables = (keep_rows(b, spec.id_field, wanted) for b in source)
    batches = pool.embedding_batches(tables, settings.embed_batch_size, None, 1)
    embedded = (embedder.embed_table(t) for t in batches)
    return insert_batches(settings, collection, embedded, on_progress)


def _embedder_kwargs(
    settings: Settings, spec: SourceSpec, model: ModelProbe, threads: int, batch: int
) -> dict[str, Any]:
    return {
        "model_path": model.local_path,
        "model_uri": model.ref.uri,
        "tracking_uri": settings.mlflow_tracking_uri,
        "label": model.label,
        "id_field": spec.id_field,
        "text_fields": spec.text_fields,
        "threads": threads,
        "dim": model.dim,
        "prompt": model.contract.document_prompt,
        "fp16": settings.embed_fp16,
        "model_batch_size": batch,
    }


def embed(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    on_progress: Callable[[int], None],
    only_ids: list[str] | None = None,
    rows: int | None = None,
    fingerprint: str | None = None,
) -> int:
    """Embed and insert the source (``rows`` rows, when known), or only ``only_ids``: on
    Ray, or here when they are few (``embed_here_max_rows``); of the pinned content when
    ``fingerprint`` is given. Returns the rows inserted."""
    if only_ids is not None and len(only_ids) <= settings.embed_here_max_rows:
        log.info("embedding %d rows in this process (no Ray start-up)", len(only_ids))
        wanted_here = frozenset(only_ids)
        return embed_here(settings, spec, model, collection, on_progress, wanted_here, fingerprint)
    wanted = None if only_ids is None else frozenset(only_ids)
    count = rows if wanted is None else len(wanted)
    with RayCluster(settings):
        return embed_into(
            settings, spec, model, collection, on_progress, wanted, count, fingerprint
        )


@task(name="embed-and-insert", cache_policy=NO_CACHE)
def embed_and_insert(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    expected_rows: int,
    only_ids: list[str] | None = None,
    fingerprint: str | None = None,
) -> int:
    """Ray-parallel embedding streamed into Milvus, with a progress artifact in the UI.

    ``only_ids`` restricts it to those rows (a refresh's new and changed documents);
    ``fingerprint`` (``SourceSummary.fingerprint``) pins the content read.
    """
    logger = get_run_logger()
    artifact = create_progress_artifact(
        0.0,
        key=f"embed-{collection.replace('_', '-')}",
        description=f"Embedding {expected_rows} rows into {collection}",
    )
    started = last = time.monotonic()
    marks = {int(expected_rows * p / 10) for p in range(1, 11)}

    def progress(done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 2 or done >= expected_rows:
            update_progress_artifact(
                artifact,  # type: ignore[arg-type]  # sync call here
                min(100.0, 100.0 * done / expected_rows),
            )
            last = now
        if any(done >= m > done - settings.insert_batch_size for m in marks):
            rate = done / max(now - started, 1e-6)
            logger.info("embedded %d/%d rows (%.0f rows/s)", done, expected_rows, rate)

    rows = embed(settings, spec, model, collection, progress, only_ids, expected_rows, fingerprint)
    logger.info("inserted %d rows into %s in %.1fs", rows, collection, time.monotonic() - started)
    return rows
