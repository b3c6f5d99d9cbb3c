"""Full build vs incremental refresh, on the same corpus, same model, in one run.

    python -m benchmarks.refresh [--docs 20000] [--changed 0.01] [--model minilm|tfidf]

Starts Milvus Lite and MLflow on free loopback ports in a temporary directory, registers
the model, then times (a) a full build of the corpus and (b) a refresh of that build
after ``--changed`` of the rows were edited: compare by content hash, copy unchanged
vectors, embed only the edited rows. Both use the build stages of the flows (Ray actor
pool, Milvus upserts, flush/load/count), each starting its own Ray. Prints the phase
times and the ratio refresh / full (target ≤ 0.10), and checks the refresh is exact.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
MODEL_NAME = "bench-embedder"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _timed(label: str, times: dict[str, float], call: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = call()
    times[label] = time.perf_counter() - started
    print(f"  {label:<28} {times[label]:8.1f} s", flush=True)
    return result


def _corpus(tmp: Path, docs: int, changed: float) -> tuple[Path, Path, int]:
    """The generated catalog, and a copy with a fraction of descriptions edited."""
    from demo.catalog import generate_catalog

    df = generate_catalog(docs)
    full = tmp / "corpus.parquet"
    df.to_parquet(full)
    n = max(1, int(len(df) * changed))
    edited = df.copy()
    picked = edited.sample(n=n, random_state=11).index
    edited.loc[picked, "description"] = edited.loc[picked, "description"] + " Updated edition."
    path = tmp / "corpus_edited.parquet"
    edited.to_parquet(path)
    return full, path, n


def _register(settings: Any, model: str, corpus: Path) -> str:
    import mlflow
    import pandas as pd

    from demo.catalog import product_texts
    from demo.models import minilm_dir
    from indexpair.models.helpers import log_sentence_transformer_model, log_tfidf_model

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    if model == "minilm":
        return log_sentence_transformer_model(minilm_dir(), MODEL_NAME, {"bench": "refresh"})
    texts = product_texts(pd.read_parquet(corpus))
    return log_tfidf_model(texts, MODEL_NAME, settings.state_dir, {"bench": "refresh"})


def pair_meta(probe: Any, spec: Any, name: str, rows: int) -> Any:
    from indexpair.pair import PairMetadata

    return PairMetadata(
        model_name=probe.ref.name,
        model_version=probe.ref.version,
        model_uri=probe.ref.uri,
        dim=probe.dim,
        build_id=name.rsplit("_", 1)[1],
        source_uri=spec.uri,
        source_fingerprint="bench",
        source_rows=rows,
    )


def _build(settings: Any, spec: Any, probe: Any, name: str, rows: int, times: dict) -> None:
    """The flows' build stages: create, embed with Ray and insert, flush/load/count."""
    from tasks.collections import create, finalize
    from tasks.embedding import embed

    meta = pair_meta(probe, spec, name, rows)
    _timed("create collection", times, lambda: create(settings, name, meta))
    _timed("embed + insert (Ray)", times, lambda: embed(settings, spec, probe, name, print_nothing))
    _timed("flush + load + count", times, lambda: finalize(settings, name, rows))


def print_nothing(_: int) -> None:
    """Progress callback of the benchmark: silent."""


def _refresh(
    settings: Any, spec: Any, probe: Any, live: str, name: str, rows: int, times: dict
) -> Any:
    from tasks.collections import create, finalize
    from tasks.embedding import embed
    from tasks.refresh import compare, copy_unchanged

    changes = _timed("compare content hashes", times, lambda: compare(settings, spec, live))
    meta = pair_meta(probe, spec, name, rows)
    _timed("create collection", times, lambda: create(settings, name, meta))
    _timed("copy unchanged vectors", times, lambda: copy_unchanged(settings, changes, name))
    where = "here" if len(changes.to_embed) <= settings.embed_here_max_rows else "Ray"
    _timed(
        f"embed + insert changed ({where})",
        times,
        lambda: embed(settings, spec, probe, name, print_nothing, changes.to_embed),
    )
    _timed("flush + load + count", times, lambda: finalize(settings, name, rows))
    return changes


def _check_exact(settings: Any, refreshed: str, full_edited_ids: set[str], live: str) -> float:
    """Largest difference between a copied vector and the live one (must be 0)."""
    from indexpair.gateways.milvus import MilvusGateway

    with MilvusGateway(settings) as milvus:
        sample = sorted(full_edited_ids)[:50]
        a, b = milvus.fetch(refreshed, sample), milvus.fetch(live, sample)
        return max(
            float(np.max(np.abs(np.asarray(a[i]["vector"]) - np.asarray(b[i]["vector"]))))
            for i in sample
        )


def run(docs: int, changed: float, model: str) -> None:
    """Start the services, build, refresh, and print the comparison."""
    from indexpair import stack
    from indexpair.gateways.mlflow import MlflowRegistry
    from indexpair.settings import load_settings
    from tasks.refresh import source_hashes
    from tasks.registry import probe
    from tasks.source import SourceSpec, sample_texts

    tmp = Path(tempfile.mkdtemp(prefix="indexpair-bench-refresh-"))
    os.environ.update(
        {
            "INDEXPAIR_STATE_DIR": str(tmp / "state"),
            "MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
            "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    settings = load_settings()
    stack.up(settings, PROJECT_DIR, ["milvus", "mlflow"])
    try:
        full_path, edited_path, n_changed = _corpus(tmp, docs, changed)
        version = _register(settings, model, full_path)
        with MlflowRegistry(settings) as registry:
            ref = registry.resolve_version(MODEL_NAME, version)
        spec, edited = SourceSpec(uri=str(full_path)), SourceSpec(uri=str(edited_path))
        model_probe = probe(settings, ref, sample_texts(settings, spec))
        full_times: dict[str, float] = {}
        refresh_times: dict[str, float] = {}
        print(f"full build of {docs} documents ({model}, {model_probe.dim}-dim):", flush=True)
        _build(settings, spec, model_probe, f"bench_v{version}_full0001", docs, full_times)
        print(f"refresh with {n_changed} of {docs} rows changed:", flush=True)
        changes = _refresh(
            settings,
            edited,
            model_probe,
            f"bench_v{version}_full0001",
            f"bench_v{version}_refr0001",
            docs,
            refresh_times,
        )
        unchanged = {i for i, _ in source_hashes(settings, spec)} - set(changes.to_embed)
        drift = _check_exact(
            settings, f"bench_v{version}_refr0001", unchanged, f"bench_v{version}_full0001"
        )
    finally:
        stack.down(settings)
    full, refresh = sum(full_times.values()), sum(refresh_times.values())
    print()
    print("| corpus | model | changed | full build s | refresh s | refresh / full | target |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {docs} | {model} | {changes.changed} ({changed:.0%}) | {full:.1f} | {refresh:.1f} "
        f"| {refresh / full:.3f} | ≤ 0.10 {'met' if refresh / full <= 0.10 else 'NOT met'} |"
    )
    print(f"change set: {changes.counts()}; copied vectors equal the live ones within {drift:.1e}")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--model", choices=["minilm", "tfidf"], default="minilm")
    args = parser.parse_args()
    run(args.docs, args.changed, args.model)


if __name__ == "__main__":
    main()
