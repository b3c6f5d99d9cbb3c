"""Embedding stage: Ray Data parallel embedding, streamed into Milvus insertion."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from indexpair.errors import ModelOutputError
from indexpair.gateways import mlflow as registry
from indexpair.gateways import ray_cluster
from indexpair.gateways.milvus import MilvusGateway
from indexpair.settings import Settings
from tasks.registry import ModelProbe
from tasks.source import (
    SourceSpec,
    content_hash,
    document_texts,
    filesystem,
    iter_batches,
    source_format,
)

log = logging.getLogger(__name__)


class BatchEmbedder:
    """Ray Data callable class: loads the model once per actor, then embeds batches."""

    def __init__(
        self,
        model_path: str,
        model_uri: str,
        tracking_uri: str,
        label: str,
        id_field: str,
        text_fields: list[str],
        threads: int,
        dim: int,
    ) -> None:
        import torch

        # Ray gives each actor OMP_NUM_THREADS=1; the model should use its share of cores.
        torch.set_num_threads(threads)
        if not Path(model_path, "MLmodel").exists():  # another node of a Ray cluster
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
            model_path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
        self.model = registry.load_model(model_path)
        self.label = label
        self.id_field = id_field
        self.text_fields = text_fields
        self.dim = dim

    def __call__(self, batch: pd.DataFrame) -> dict[str, np.ndarray]:
        texts = document_texts({f: batch[f] for f in self.text_fields}, self.text_fields)
        try:
            vectors = registry.encode(self.model, texts, self.label)
            if vectors.shape[1] != self.dim:
                raise ModelOutputError(
                    f"{self.label} returned {vectors.shape[1]}-dim vectors in a batch; "
                    f"the collection expects {self.dim}"
                )
        except ModelOutputError as exc:
            # Report, don't raise: Ray would wrap the error and lose its type on the way.
            return {
                "id": np.array([""], dtype=object),
                "content_hash": np.array([""], dtype=object),
                "vector": np.zeros((1, self.dim), dtype=np.float32),
                "error": np.array([str(exc)], dtype=object),
            }
        return {
            "id": batch[self.id_field].astype(str).to_numpy(dtype=object),
            "content_hash": np.array([content_hash(t) for t in texts], dtype=object),
            "vector": vectors,
            "error": np.full(len(texts), "", dtype=object),
        }


def embed_threads(settings: Settings) -> int:
    """Torch threads per embedding actor."""
    return settings.embed_threads or max(1, (os.cpu_count() or 1) // settings.embed_actors)


def read_dataset(settings: Settings, spec: SourceSpec) -> Any:
    """A Ray dataset over the id and text columns of the source."""
    import ray.data

    fs, path = filesystem(settings, spec.uri)
    columns = [spec.id_field, *spec.text_fields]
    fmt = source_format(spec.uri)
    if fmt == "parquet":
        return ray.data.read_parquet(path, filesystem=fs).select_columns(columns)
    ds = (
        ray.data.read_csv(path, filesystem=fs)
        if fmt == "csv"
        else ray.data.read_json(path, filesystem=fs, lines=True)
    )
    return ds.select_columns(columns)


def keep_ids(batch: pd.DataFrame, id_field: str, wanted: frozenset[str]) -> pd.DataFrame:
    """The rows of a batch whose id is in ``wanted`` (a refresh embeds only those)."""
    return batch[batch[id_field].astype(str).isin(wanted)]


def embed_into(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    on_progress: Callable[[int], None],
    only_ids: frozenset[str] | None = None,
) -> int:
    """Embed the source (or only the rows in ``only_ids``) with a Ray actor pool and
    insert it, batch by batch.

    Writes come from this one process, so writes to the collection are serialized
    (what Milvus Lite needs); upserts keyed by id make a repeated batch harmless.

    Returns:
        The number of rows inserted.
    """
    import ray.data

    ray_cluster.connect(settings)
    ds = read_dataset(settings, spec)
    if only_ids is not None:
        ds = ds.map_batches(
            keep_ids,
            fn_kwargs={"id_field": spec.id_field, "wanted": only_ids},
            batch_format="pandas",
        )
    ds = ds.map_batches(
        BatchEmbedder,
        fn_constructor_kwargs=_embedder_kwargs(settings, spec, model),
        batch_size=settings.embed_batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=settings.embed_actors),
        num_gpus=settings.embed_num_gpus or None,
    )
    batches = ds.iter_batches(batch_size=settings.insert_batch_size, batch_format="numpy")
    return insert_batches(settings, collection, batches, on_progress)


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
    gateway = MilvusGateway(settings)
    inserted = 0
    try:
        for batch in batches:
            failed = [str(e) for e in batch["error"] if e]
            if failed:
                raise ModelOutputError(failed[0])
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            inserted += gateway.insert(
                collection,
                [str(i) for i in batch["id"]],
                [str(h) for h in batch["content_hash"]],
                vectors,
            )
            on_progress(inserted)
    finally:
        gateway.close()
    return inserted


def embed_here(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    on_progress: Callable[[int], None],
    only_ids: frozenset[str],
) -> int:
    """Embed a few rows in this process with the same :class:`BatchEmbedder`.

    For a refresh's small delta, where starting Ray and its actors would cost more than
    the embedding itself (measured: ``benchmarks/refresh.py``).
    """
    embedder = BatchEmbedder(**_embedder_kwargs(settings, spec, model))

    # At most ``embed_here_max_rows`` rows: gather them, then encode in full batches
    # (one predict call per few matching rows would cost more than the encoding).
    batches = iter_batches(settings, spec)
    picked = [keep_ids(b.to_pandas(), spec.id_field, only_ids) for b in batches]
    rows = pd.concat(picked, ignore_index=True) if picked else pd.DataFrame()
    size = settings.embed_batch_size

    def embedded() -> Iterator[dict[str, Any]]:
        for start in range(0, len(rows), size):
            yield embedder(rows.iloc[start : start + size])

    return insert_batches(settings, collection, embedded(), on_progress)


def _embedder_kwargs(settings: Settings, spec: SourceSpec, model: ModelProbe) -> dict[str, Any]:
    return {
        "model_path": model.local_path,
        "model_uri": model.ref.uri,
        "tracking_uri": settings.mlflow_tracking_uri,
        "label": model.label,
        "id_field": spec.id_field,
        "text_fields": spec.text_fields,
        "threads": embed_threads(settings),
        "dim": model.dim,
    }


def embed(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    on_progress: Callable[[int], None],
    only_ids: list[str] | None = None,
) -> int:
    """Embed and insert the source, or only ``only_ids``: on Ray, or here when they are
    few (``embed_here_max_rows``). Returns the rows inserted."""
    if only_ids is not None and len(only_ids) <= settings.embed_here_max_rows:
        log.info("embedding %d rows in this process (no Ray start-up)", len(only_ids))
        return embed_here(settings, spec, model, collection, on_progress, frozenset(only_ids))
    try:
        wanted = None if only_ids is None else frozenset(only_ids)
        return embed_into(settings, spec, model, collection, on_progress, wanted)
    finally:
        ray_cluster.disconnect()


@task(name="embed-and-insert", persist_result=True)
def embed_and_insert(
    settings: Settings,
    spec: SourceSpec,
    model: ModelProbe,
    collection: str,
    expected_rows: int,
    only_ids: list[str] | None = None,
) -> int:
    """Ray-parallel embedding streamed into Milvus, with a progress artifact in the UI.

    ``only_ids`` restricts it to those rows (a refresh's new and changed documents).
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

    rows = embed(settings, spec, model, collection, progress, only_ids)
    logger.info("inserted %d rows into %s in %.1fs", rows, collection, time.monotonic() - started)
    return rows
