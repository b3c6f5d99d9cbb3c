"""An independent check that a search response is not mixed.

A response names the collection and the model version that produced it. The checker
believes neither the hits nor the scores: it encodes the query with the named model
version (loaded from MLflow by version, not through the collection), fetches the stored
vectors of the returned ids from the named collection, recomputes each cosine score and
compares. Hits from another collection, or a query encoded by another model, do not
reproduce their scores (or their ids are missing, or the dimensions differ).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
from pydantic import BaseModel

from indexpair.gateways.milvus import VECTOR_FIELD, MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import encode_queries, load_model
from indexpair.pair import PairMetadata
from indexpair.settings import Settings

SCORE_TOLERANCE = 2e-3


class Verdict(BaseModel):
    """Whether one response is consistent, and if not, why."""

    ok: bool
    detail: str = ""


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class ConsistencyChecker:
    """Recomputes the scores of a response from the pair it names. Not thread-safe."""

    def __init__(self, settings: Settings, tolerance: float = SCORE_TOLERANCE) -> None:
        self.settings = settings
        self.tolerance = tolerance
        self.gateway = MilvusGateway(settings)
        self._models: dict[tuple[str, str], Any] = {}
        self._queries: dict[tuple[str, str, str], np.ndarray] = {}
        self._vectors: dict[tuple[str, str], np.ndarray | None] = {}
        self._pairs: dict[str, PairMetadata] = {}

    def query_vector(self, text: str, pair: PairMetadata) -> np.ndarray:
        """The pair's query embedding of ``text`` (its model version and query prompt)."""
        key = (pair.model_name, pair.model_version, text)
        if key not in self._queries:
            mkey = (pair.model_name, pair.model_version)
            if mkey not in self._models:
                ref = ModelVersionRef(
                    name=pair.model_name,
                    version=pair.model_version,
                    uri=f"models:/{pair.model_name}/{pair.model_version}",
                )
                with MlflowRegistry(self.settings) as registry:
                    self._models[mkey] = load_model(registry.download_model(ref), ref.display)
            raw = encode_queries(self._models[mkey], pair, [text])[0]
            self._queries[key] = _unit(raw) if pair.metric == "COSINE" else raw
        return self._queries[key]

    def _stored(self, collection: str, ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        missing = [i for i in ids if (collection, i) not in self._vectors]
        if missing:
            rows = self.gateway.fetch(collection, missing)
            cosine = self._pair_of(collection).metric == "COSINE"
            for i in missing:
                row = rows.get(i)
                vec = None if row is None else np.asarray(row[VECTOR_FIELD], dtype=np.float32)
                unit = vec if vec is None or not cosine else _unit(vec)
                self._vectors[(collection, i)] = unit
        return {i: self._vectors[(collection, i)] for i in ids}

    def _pair_of(self, collection: str) -> PairMetadata:
        if collection not in self._pairs:
            self._pairs[collection] = self.gateway.read_pair(collection)
        return self._pairs[collection]

    def check(
        self,
        text: str,
        collection: str,
        model_name: str,
        model_version: str,
        hits: Sequence[tuple[str, float]],
    ) -> Verdict:
        """Do all ``hits`` come from ``collection`` searched with ``model_version``'s query?"""
        pair = self._pair_of(collection)
        if (pair.model_name, pair.model_version) != (model_name, model_version):
            return Verdict(
                ok=False,
                detail=f"{collection} holds {pair.model_name} v{pair.model_version}, "
                f"response names {model_name} v{model_version}",
            )
        query = self.query_vector(text, pair)
        if not hits:
            ok = not query.any()
            return Verdict(ok=ok, detail="" if ok else "no hits for an encodable query")
        stored = self._stored(collection, [h for h, _ in hits])
        for hit_id, score in hits:
            vec = stored[hit_id]
            if vec is None:
                return Verdict(ok=False, detail=f"id {hit_id!r} is not in {collection}")
            if vec.shape != query.shape:
                return Verdict(
                    ok=False,
                    detail=f"{collection} stores {vec.shape[0]}-dim vectors; "
                    f"the query has {query.shape[0]}",
                )
            expected = float(np.dot(query, vec))
            if abs(expected - score) > self.tolerance:
                return Verdict(
                    ok=False,
                    detail=f"id {hit_id!r} scored {score:.4f}; recomputed {expected:.4f}",
                )
        return Verdict(ok=True)

    def check_labelled(self, text: str, hits: Sequence[Mapping[str, Any]]) -> Verdict:
        """Check every hit against the pair it names (an interleaved response).

        Each hit carries ``id``, ``score``, ``collection``, ``model_name`` and
        ``model_version``. Hits are grouped by the pair they name; each group must
        reproduce its scores from that pair and keep that pair's ranking order.
        """
        groups: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
        for h in hits:
            key = (str(h["collection"]), str(h["model_name"]), str(h["model_version"]))
            groups.setdefault(key, []).append((str(h["id"]), float(h["score"])))
        for (collection, name, version), group in groups.items():
            scores = [score for _, score in group]
            if any(b > a + self.tolerance for a, b in itertools.pairwise(scores)):
                return Verdict(
                    ok=False, detail=f"hits of {collection} are not in its ranking order: {scores}"
                )
            verdict = self.check(text, collection, name, version, group)
            if not verdict.ok:
                return verdict
        return Verdict(ok=True)

    def close(self) -> None:
        """Release the Milvus connection."""
        self.gateway.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
