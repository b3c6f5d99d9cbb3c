"""The measurements of ``benchmarks.reindex``, one per process.

    python -m benchmarks.reindex_modes encode|insert|loop|build|refresh JOB.json

Prints one JSON line: ``{"rows": n, "seconds": s, ...}``. Set-up (loading the model for
(a) and (c), creating the collection) is not timed; everything the mode is about is.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from benchmarks.refresh import pair_meta
from indexpair.build.layout import forward_batch
from indexpair.gateways.milvus import MilvusGateway
from indexpair.models import load_model
from indexpair.settings import Settings, load_settings
from tasks.collections import create
from tasks.registry import ModelProbe
from tasks.source import SourceSpec, content_hash, document_texts, iter_batches

CHECKED_ROWS = 200


def raw_encoder(settings: Settings, probe: ModelProbe) -> Callable[[list[str]], np.ndarray]:
    """The model's own encode function, under the pyfunc wrapper, set up as the build's."""
    inner = load_model(probe.local_path).model.unwrap_python_model()
    if hasattr(inner, "model"):  # sentence-transformers
        st = inner.model
        on_gpu = st.device.type == "cuda"
        if not settings.embed_fp16 and on_gpu:
            st.float()
        batch = forward_batch(settings, on_gpu)  # the build's actors use the same
        return lambda texts: st.encode(
            texts,
            batch_size=batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return lambda texts: np.asarray(inner.pipeline.transform(texts), dtype=np.float32)


def _collection(settings: Settings, probe: ModelProbe, mode: str, job: dict) -> str:
    name = f"bench_{mode}_{job['rows']}"
    with MilvusGateway(settings) as milvus:
        milvus.drop(name)
    meta = pair_meta(probe, SourceSpec(uri=job["corpus"]), name, job["rows"])
    create(settings, name, meta)
    return name


def _flush(settings: Settings, name: str) -> int:
    with MilvusGateway(settings) as milvus:
        milvus.client.flush(name)
        return milvus.row_count(name)


def encode(settings: Settings, probe: ModelProbe, spec: SourceSpec, job: dict) -> dict:
    """(a) The raw model over every text; saves the vectors for (b) and the check of (d)."""
    table = pq.read_table(spec.uri, columns=spec.text_fields)
    texts = [t for b in table.to_batches() for t in document_texts(b, spec.text_fields)]
    run = raw_encoder(settings, probe)
    run(texts[:32])
    started = time.perf_counter()
    vectors = run(texts)
    seconds = time.perf_counter() - started
    np.save(job["vectors"], np.asarray(vectors, dtype=np.float32))
    return {"rows": len(texts), "seconds": seconds}


def insert(settings: Settings, probe: ModelProbe, spec: SourceSpec, job: dict) -> dict:
    """(b) Upsert (a)'s vectors, precomputed, in the build's insert batches; flush."""
    table = pq.read_table(spec.uri, columns=[spec.id_field, *spec.text_fields])
    ids = [str(i) for i in table.column(spec.id_field).to_pylist()]
    hashes = [
        content_hash(t) for b in table.to_batches() for t in document_texts(b, spec.text_fields)
    ]
    vectors = np.load(job["vectors"], mmap_mode="r")
    name = _collection(settings, probe, "insert", job)
    step = settings.insert_batch_size
    started = time.perf_counter()
    with MilvusGateway(settings) as milvus:
        for at in range(0, len(ids), step):
            milvus.insert(
                name, ids[at : at + step], hashes[at : at + step], vectors[at : at + step]
            )
    rows = _flush(settings, name)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def loop(settings: Settings, probe: ModelProbe, spec: SourceSpec, job: dict) -> dict:
    """(c) The seed system: read a batch, encode it, insert it, repeat; flush."""
    run = raw_encoder(settings, probe)
    run(["warm up"])
    name = _collection(settings, probe, "loop", job)
    started = time.perf_counter()
    with MilvusGateway(settings) as milvus:
        for batch in iter_batches(settings, spec, batch_size=settings.embed_batch_size):
            texts = document_texts(batch, spec.text_fields)
            ids = [str(i) for i in batch.column(spec.id_field).to_pylist()]
            vectors = np.asarray(run(texts), dtype=np.float32)
            milvus.insert(name, ids, [content_hash(t) for t in texts], vectors)
    rows = _flush(settings, name)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def build(settings: Settings, probe: ModelProbe, spec: SourceSpec, job: dict) -> dict:
    """(d) The promote flow's build stage, flushed; then checked against (a)'s vectors."""
    from tasks.embedding import embed

    name = _collection(settings, probe, "build", job)
    first: list[float] = []
    started = time.perf_counter()

    def progress(_done: int) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    inserted = embed(settings, spec, probe, name, progress, rows=job["rows"])
    rows = _flush(settings, name)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": seconds,
        "inserted": inserted,
        "first_insert_s": first[0] if first else None,
        **_check(settings, spec, job),
    }


def _check(settings: Settings, spec: SourceSpec, job: dict) -> dict:
    """Largest difference between (d)'s stored vectors and (a)'s, over a sample of rows."""
    ids = [str(i) for i in pq.read_table(spec.uri, columns=[spec.id_field]).column(0).to_pylist()]
    picked = np.random.default_rng(0).choice(len(ids), size=min(CHECKED_ROWS, len(ids)))
    reference = np.load(job["vectors"], mmap_mode="r")
    with MilvusGateway(settings) as milvus:
        stored = milvus.fetch(f"bench_build_{job['rows']}", [ids[i] for i in picked])
    diff = max(
        float(np.abs(np.asarray(stored[ids[i]]["vector"]) - reference[i]).max()) for i in picked
    )
    return {"checked_rows": len(picked), "max_diff_vs_a": diff}


def refresh(settings: Settings, probe: ModelProbe, spec: SourceSpec, job: dict) -> dict:
    """(e) A refresh of (d)'s collection after a fraction of the rows changed.

    The refresh stages as the refresh flow runs them: compare by content hash (the
    source streams; only the live side is held, as digests), copy the unchanged vectors,
    embed the changed rows, flush and count. ``compare_grew_mib`` is how far the
    process's peak resident memory rose above its resident memory during the compare
    step (the peak is reset just before it).
    """
    from tasks.collections import finalize
    from tasks.embedding import embed
    from tasks.refresh import compare, copy_unchanged

    edited = SourceSpec(uri=job["edited"])
    live = f"bench_build_{job['rows']}"
    target = _collection(settings, probe, "refresh", job)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS
    before_mib = _status_mib("VmRSS")
    changes = compare(settings, edited, live)
    compare_peak_mib = _status_mib("VmHWM")
    phases["compare"] = time.perf_counter() - started
    at = time.perf_counter()
    copied = copy_unchanged(settings, changes, target)
    phases["copy"] = time.perf_counter() - at
    at = time.perf_counter()
    embedded = embed(settings, edited, probe, target, lambda _: None, changes.to_embed)
    phases["embed"] = time.perf_counter() - at
    at = time.perf_counter()
    rows = finalize(settings, target, changes.source_rows)
    phases["finalize"] = time.perf_counter() - at
    return {
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "phases_s": phases,
        "changes": changes.counts(),
        "copied": copied,
        "embedded": embedded,
        "compare_grew_mib": compare_peak_mib - before_mib,
    }


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


MODES: dict[str, Callable[[Settings, ModelProbe, SourceSpec, dict], dict]] = {
    "encode": encode,
    "insert": insert,
    "loop": loop,
    "build": build,
    "refresh": refresh,
}


def main() -> None:
    """Run the mode named on the command line and print its JSON line."""
    mode, job_path = sys.argv[1], Path(sys.argv[2])
    job: dict[str, Any] = json.loads(job_path.read_text())
    settings = load_settings()
    probe = ModelProbe.model_validate(job["probe"])
    result = MODES[mode](settings, probe, SourceSpec(uri=job["corpus"]), job)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
