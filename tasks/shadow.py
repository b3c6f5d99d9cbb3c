"""Shadow stage: how much would the ranking change? Live pair vs candidate, same queries.

Runs after validation, only when a live pair exists. For the golden queries and a sample
of recent live queries (the search service's query log), each pair answers each query
with its own model, one query at a time, and the report shows overlap@k of the two
top-k lists and both latencies side by side.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel
from pymilvus import MilvusException

from indexpair.errors import IndexPairError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import EmbeddingModel, encode_queries, load_model
from indexpair.pair import PairMetadata
from indexpair.serving.query_log import recent_queries
from indexpair.settings import Settings
from tasks.validation import GoldenSet


class QuerySetShadow(BaseModel):
    """Overlap and latency over one set of queries (golden or recent live)."""

    origin: str
    queries: int
    skipped: int  # queries one of the models cannot encode (no known word)
    mean_overlap: float
    min_overlap: float
    live_ms_p50: float
    candidate_ms_p50: float
    lowest: list[tuple[str, float]] = []


class ShadowReport(BaseModel):
    """Live pair vs candidate on the same queries."""

    k: int
    live_collection: str
    candidate_collection: str
    sets: list[QuerySetShadow] = []
    error: str = ""


def overlap_at_k(a: list[str], b: list[str], k: int) -> float:
    """Share of the top k ids two result lists have in common."""
    return len(set(a[:k]) & set(b[:k])) / k


Side = tuple[str, PairMetadata, EmbeddingModel]  # a collection, its pair, its model


def _answer(gateway: MilvusGateway, side: Side, text: str, k: int) -> Any:
    """Top-k ids of one query and the milliseconds it took (encode + search)."""
    collection, pair, model = side
    started = time.perf_counter()
    vec = encode_queries(model, pair, [text])
    ids = [] if not vec.any() else [i for i, _ in gateway.search(collection, vec, k)[0]]
    return ids, (time.perf_counter() - started) * 1000, bool(vec.any())


def compare_set(
    gateway: MilvusGateway,
    pairs: tuple[Side, Side],
    texts: list[str],
    k: int,
    origin: str,
) -> QuerySetShadow:
    """Overlap@k and latencies of live and candidate over ``texts``."""
    live, cand = pairs
    overlaps: list[tuple[str, float]] = []
    live_ms, cand_ms = [], []
    skipped = 0
    for text in texts:
        a, ms_a, ok_a = _answer(gateway, live, text, k)
        b, ms_b, ok_b = _answer(gateway, cand, text, k)
        if not (ok_a and ok_b):
            skipped += 1
            continue
        overlaps.append((text, overlap_at_k(a, b, k)))
        live_ms.append(ms_a)
        cand_ms.append(ms_b)
    values = [o for _, o in overlaps]
    return QuerySetShadow(
        origin=origin,
        queries=len(overlaps),
        skipped=skipped,
        mean_overlap=float(np.mean(values)) if values else 0.0,
        min_overlap=min(values, default=0.0),
        live_ms_p50=float(np.median(live_ms)) if live_ms else 0.0,
        candidate_ms_p50=float(np.median(cand_ms)) if cand_ms else 0.0,
        lowest=sorted(overlaps, key=lambda x: x[1])[:3],
    )


def shadow(
    settings: Settings,
    candidate: str,
    candidate_model_path: str,
    golden: GoldenSet,
    live_collection: str | None,
    k: int,
) -> ShadowReport | None:
    """Compare the live pair and the candidate on golden and recent live queries.

    Returns:
        None when there is no live pair. A failure to compare is reported in ``error``
        rather than raised: the comparison informs the approver, it decides nothing.
    """
    if not live_collection:
        return None
    report = ShadowReport(k=k, live_collection=live_collection, candidate_collection=candidate)
    with MilvusGateway(settings) as milvus:
        try:
            pair = milvus.read_pair(live_collection)
            milvus.ensure_loaded(live_collection)
            ref = ModelVersionRef(
                name=pair.model_name, version=pair.model_version, uri=pair.model_uri
            )
            with MlflowRegistry(settings) as registry:
                live_model = load_model(registry.download_model(ref), ref.display)
            cand_model = load_model(candidate_model_path)
            pairs = (
                (live_collection, pair, live_model),
                (candidate, milvus.read_pair(candidate), cand_model),
            )
            report.sets.append(
                compare_set(milvus, pairs, [q.query for q in golden.queries], k, "golden")
            )
            logged = recent_queries(settings.query_log_path, settings.shadow_sample)
            if logged:
                report.sets.append(compare_set(milvus, pairs, logged, k, "recent live"))
        except (IndexPairError, MilvusException, MlflowException, OSError) as exc:
            report.error = f"{type(exc).__name__}: {exc}"
    return report


def shadow_markdown(shadow: ShadowReport) -> list[str]:
    """The shadow section: overlap@k and latency of live vs candidate, per query set."""
    k = shadow.k
    lines = [
        "",
        f"## Shadow comparison: live `{shadow.live_collection}` vs candidate",
        "",
        f"Share of the top {k} the two pairs have in common (1.0: same results), and "
        "latency per query (encode + search) side by side.",
        "",
        f"| queries | count | mean overlap@{k} | lowest | live ms p50 | candidate ms p50 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in shadow.sets:
        skipped = f" (+{s.skipped} not encodable)" if s.skipped else ""
        lines.append(
            f"| {s.origin} | {s.queries}{skipped} | {s.mean_overlap:.2f} | {s.min_overlap:.2f} "
            f"| {s.live_ms_p50:.1f} | {s.candidate_ms_p50:.1f} |"
        )
    if not any(s.origin == "recent live" for s in shadow.sets):
        lines.append("| recent live | 0 (the search service logged no queries) | | | | |")
    for s in shadow.sets:
        if s.lowest:
            worst = ", ".join(f"{q!r} {o:.2f}" for q, o in s.lowest)
            lines.append(f"\nMost changed {s.origin} queries: {worst}")
    if shadow.error:
        lines.append(f"\nShadow comparison incomplete: {shadow.error}")
    return lines


@task(name="shadow-compare", cache_policy=NO_CACHE)
def shadow_compare(
    settings: Settings,
    candidate: str,
    candidate_model_path: str,
    golden: GoldenSet,
    live_collection: str | None,
    k: int,
) -> ShadowReport | None:
    """Task wrapper of :func:`shadow`, with a log line per query set."""
    report = shadow(settings, candidate, candidate_model_path, golden, live_collection, k)
    logger = get_run_logger()
    for s in report.sets if report else []:
        logger.info(
            "shadow %s: %d queries, mean overlap@%d %.2f, p50 %.1f ms live / %.1f ms candidate",
            s.origin,
            s.queries,
            k,
            s.mean_overlap,
            s.live_ms_p50,
            s.candidate_ms_p50,
        )
    if report and report.error:
        logger.warning("shadow comparison incomplete: %s", report.error)
    if report:
        create_markdown_artifact(
            "\n".join(shadow_markdown(report)),
            key=f"shadow-{candidate.replace('_', '-')}",
            description=f"Live {live_collection} vs candidate {candidate}",
        )
    return report
