"""Validation stage: golden queries, retrieval metrics, and the accept/reject decision."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, ValidationError, model_validator

from indexpair.errors import GoldenQueryError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import EmbeddingModel, encode_queries, load_model
from indexpair.settings import Settings


class GoldenQuery(BaseModel):
    """A query and the ids of the products relevant to it."""

    query: str = Field(min_length=1)
    relevant_ids: list[str] = Field(min_length=1)


class ValidationPolicy(BaseModel):
    """Thresholds a candidate pair must meet before anyone is asked to approve it."""

    k: int = Field(10, ge=1, le=100, description="Cut-off for recall@k and nDCG@k")
    min_recall_at_k: float = Field(0.4, ge=0, le=1, description="Mean recall@k at least this")
    min_mrr: float = Field(0.4, ge=0, le=1, description="Mean reciprocal rank at least this")
    min_ndcg_at_k: float = Field(0.35, ge=0, le=1, description="Mean nDCG@k at least this")
    max_regression: float = Field(
        0.05, ge=0, le=1, description="Largest drop allowed against the live pair on each metric"
    )


class Metrics(BaseModel):
    """Mean retrieval metrics over the golden queries."""

    recall_at_k: float
    mrr: float
    ndcg_at_k: float
    queries: int
    mean_query_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The three quality figures by name."""
        return {"recall_at_k": self.recall_at_k, "mrr": self.mrr, "ndcg_at_k": self.ndcg_at_k}


class ValidationReport(BaseModel):
    """Candidate vs live, and the verdict."""

    collection: str
    k: int
    candidate: Metrics
    live: Metrics | None = None
    live_collection: str | None = None
    live_model: str | None = None
    failures: list[str] = []

    @property
    def passed(self) -> bool:
        """True when no threshold or regression check failed."""
        return not self.failures

    def summary(self) -> str:
        """The verdict in one line (for notifications): the figures, and the live pair's."""
        c, k = self.candidate, self.k
        line = (
            f"recall@{k} {c.recall_at_k:.3f}, MRR {c.mrr:.3f}, nDCG@{k} {c.ndcg_at_k:.3f} "
            f"on {c.queries} golden queries"
        )
        if self.live is not None:
            live = self.live
            line += (
                f" (live {self.live_model or self.live_collection}: {live.recall_at_k:.3f}, "
                f"{live.mrr:.3f}, {live.ndcg_at_k:.3f})"
            )
        return ("passed: " if self.passed else f"failed ({'; '.join(self.failures)}): ") + line


class GoldenSet(BaseModel):
    """All golden queries of one file."""

    uri: str
    queries: list[GoldenQuery]

    @model_validator(mode="after")
    def _non_empty(self) -> GoldenSet:
        if not self.queries:
            raise ValueError("has no queries")
        return self

    def ids(self) -> set[str]:
        """Every id any query names."""
        return {i for q in self.queries for i in q.relevant_ids}


def recall_at_k(retrieved: Sequence[str], relevant: set[str], k: int) -> float:
    """Share of the relevant ids found in the top k, out of at most k findable."""
    return len(set(retrieved[:k]) & relevant) / min(len(relevant), k)


def reciprocal_rank(retrieved: Sequence[str], relevant: set[str], k: int) -> float:
    """1/rank of the first relevant id in the top k, 0 when none."""
    for rank, doc in enumerate(retrieved[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(retrieved: Sequence[str], relevant: set[str], k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance."""
    dcg = sum(1.0 / math.log2(r + 1) for r, d in enumerate(retrieved[:k], 1) if d in relevant)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def mean_metrics(
    results: list[list[str]], golden: GoldenSet, k: int, latency_ms: float = 0.0
) -> Metrics:
    """Average the three metrics over all golden queries."""
    rel = [set(q.relevant_ids) for q in golden.queries]
    n = len(rel)
    return Metrics(
        recall_at_k=sum(recall_at_k(r, s, k) for r, s in zip(results, rel, strict=True)) / n,
        mrr=sum(reciprocal_rank(r, s, k) for r, s in zip(results, rel, strict=True)) / n,
        ndcg_at_k=sum(ndcg_at_k(r, s, k) for r, s in zip(results, rel, strict=True)) / n,
        queries=n,
        mean_query_ms=latency_ms,
    )


def decide(candidate: Metrics, live: Metrics | None, policy: ValidationPolicy) -> list[str]:
    """Every reason to reject the candidate (empty when it passes)."""
    failures = []
    floors = {
        "recall_at_k": policy.min_recall_at_k,
        "mrr": policy.min_mrr,
        "ndcg_at_k": policy.min_ndcg_at_k,
    }
    for name, value in candidate.as_dict().items():
        if value < floors[name]:
            failures.append(f"{name} {value:.3f} < threshold {floors[name]:.3f}")
        if live is not None:
            before = live.as_dict()[name]
            if value < before - policy.max_regression:
                failures.append(
                    f"{name} {value:.3f} regresses from live {before:.3f} "
                    f"by more than {policy.max_regression:.3f}"
                )
    return failures


def load_golden(uri: str) -> GoldenSet:
    """Read and check a golden-query JSON file (a list of {query, relevant_ids}).

    Raises:
        GoldenQueryError: naming the file and the entry at fault.
    """
    path = Path(uri)
    if not path.is_file():
        raise GoldenQueryError(f"golden-query file {uri!r} does not exist")
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GoldenQueryError(f"golden-query file {uri!r} is not valid JSON: {exc}") from exc
    if isinstance(raw, dict) and "queries" in raw:
        raw = raw["queries"]
    if not isinstance(raw, list) or not raw:
        raise GoldenQueryError(
            f"golden-query file {uri!r} must hold a non-empty JSON list "
            'of {"query", "relevant_ids"} objects'
        )
    queries = []
    for i, item in enumerate(raw):
        try:
            queries.append(GoldenQuery.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise GoldenQueryError(
                f"golden-query file {uri!r} entry #{i} ({str(item)[:80]}): {where}: {first['msg']}"
            ) from exc
    return GoldenSet(uri=uri, queries=queries)


def check_golden_ids(golden: GoldenSet, source_ids: set[str], source_uri: str) -> None:
    """Every id a golden query names must exist in the source."""
    for i, q in enumerate(golden.queries):
        unknown = [x for x in q.relevant_ids if x not in source_ids]
        if unknown:
            raise GoldenQueryError(
                f"golden query #{i} {q.query!r} names ids not in source {source_uri!r}: "
                f"{unknown[:5]}"
            )


def run_golden(
    gateway: MilvusGateway, collection: str, model: EmbeddingModel, golden: GoldenSet, k: int
) -> Metrics:
    """Encode the golden queries as ``collection``'s pair records, and search it."""
    texts = [q.query for q in golden.queries]
    vectors = encode_queries(model, gateway.read_pair(collection), texts)
    # A query the model cannot encode (all zeros) finds nothing: it scores 0, not an error.
    known = np.linalg.norm(vectors, axis=1) > 0
    started = time.perf_counter()
    found = iter(gateway.search(collection, vectors[known], k)) if known.any() else iter([])
    per_query_ms = (time.perf_counter() - started) * 1000 / max(1, int(known.sum()))
    results = [[doc for doc, _ in next(found)] if ok else [] for ok in known]
    return mean_metrics(results, golden, k, per_query_ms)


def validate(
    settings: Settings,
    collection: str,
    model_path: str,
    label: str,
    golden: GoldenSet,
    policy: ValidationPolicy,
    live_collection: str | None,
) -> ValidationReport:
    """Golden-query validation of a candidate, compared with the live pair if there is one."""
    with MilvusGateway(settings) as milvus:
        model = load_model(model_path, label.removeprefix("model "))
        candidate = run_golden(milvus, collection, model, golden, policy.k)
        live = live_label = None
        if live_collection:
            milvus.ensure_loaded(live_collection)
            pair = milvus.read_pair(live_collection)
            ref = ModelVersionRef(
                name=pair.model_name, version=pair.model_version, uri=pair.model_uri
            )
            live_label = f"model {pair.model_name} v{pair.model_version}"
            with MlflowRegistry(settings) as registry:
                live_model = load_model(registry.download_model(ref), ref.display)
            live = run_golden(milvus, live_collection, live_model, golden, policy.k)
    return ValidationReport(
        collection=collection,
        k=policy.k,
        candidate=candidate,
        live=live,
        live_collection=live_collection,
        live_model=live_label,
        failures=decide(candidate, live, policy),
    )


# The tasks are the plain functions above, orchestrated: unit tests call the functions.
validate_candidate = task(name="validate-candidate", cache_policy=NO_CACHE)(validate)
load_golden_queries = task(name="load-golden-queries", cache_policy=NO_CACHE)(load_golden)
