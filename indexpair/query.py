"""The query side: resolve the alias once, encode with that pair's model, search that pair."""

from __future__ import annotations

import threading
from typing import Any

from pydantic import BaseModel

from indexpair.errors import PairNotFound, RegistryError
from indexpair.gateways import mlflow as registry
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.pair import PairMetadata, check_name
from indexpair.settings import Settings


class Hit(BaseModel):
    """One search result."""

    id: str
    score: float


class SearchResponse(BaseModel):
    """Hits together with the pair that produced every one of them."""

    alias: str
    collection: str
    model_name: str
    model_version: str
    hits: list[Hit]


class PairSearcher:
    """Searches through an alias without ever mixing two models in one response."""

    def __init__(self, settings: Settings, alias: str | None = None) -> None:
        self.settings = settings
        self.alias = check_name(alias or settings.production_alias, "alias name")
        self.gateway = MilvusGateway(settings)
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._loaded: set[str] = set()

    def resolve(self) -> tuple[str, PairMetadata]:
        """The concrete collection behind the alias now, and its pair metadata.

        Raises:
            PairNotFound: the alias is missing or its collection has no pair metadata.
        """
        target = self.gateway.alias_target(self.alias)
        if target is None:
            raise PairNotFound(
                f"alias {self.alias!r} does not exist in Milvus at "
                f"{self.settings.milvus_uri}; promote a pair first"
            )
        pair = self.gateway.read_pair(target)
        if target not in self._loaded:  # checked once per collection, not per request
            self.gateway.ensure_loaded(target)
            self._loaded.add(target)
        return target, pair

    def model(self, pair: PairMetadata) -> Any:
        """The pair's model version, loaded once and cached."""
        key = (pair.model_name, pair.model_version)
        with self._lock:
            if key not in self._models:
                ref = ModelVersionRef(
                    name=pair.model_name, version=pair.model_version, uri=pair.model_uri
                )
                path = registry.download_model(self.settings, ref)
                self._models[key] = registry.load_model(path)
            return self._models[key]

    def search(self, text: str, k: int = 10) -> SearchResponse:
        """Encode ``text`` with the model of the pair behind the alias and search that pair."""
        collection, pair = self.resolve()
        label = f"model {pair.model_name} v{pair.model_version}"
        vectors = registry.encode(self.model(pair), [text], label)
        hits = self.gateway.search(collection, vectors, k)[0]
        return SearchResponse(
            alias=self.alias,
            collection=collection,
            model_name=pair.model_name,
            model_version=pair.model_version,
            hits=[Hit(id=i, score=s) for i, s in hits],
        )

    def close(self) -> None:
        """Release the Milvus connection."""
        self.gateway.close()


def collect_status(settings: Settings) -> dict[str, Any]:
    """Aliases → collection → model version, and every managed collection with its state."""
    gateway = MilvusGateway(settings)
    try:
        pairs = gateway.list_pairs()
        by_name = dict(pairs)
        targets = gateway.alias_targets()
        aliases: dict[str, Any] = {}
        for alias, target in targets.items():
            if target in by_name:
                pair = by_name[target]
                aliases[alias] = {
                    "collection": target,
                    "model_name": pair.model_name,
                    "model_version": pair.model_version,
                }
        collections = [
            {
                "name": name,
                "state": pair.state.value,
                "model_name": pair.model_name,
                "model_version": pair.model_version,
                "rows": gateway.row_count(name),
                "dim": pair.dim,
                "created_at": pair.created_at,
                "reason": pair.reason,
                "aliases": sorted(a for a, t in targets.items() if t == name),
            }
            for name, pair in pairs
        ]
    finally:
        gateway.close()
    from mlflow.exceptions import MlflowException

    registry_aliases = {}
    try:
        for model in sorted({p.model_name for _, p in pairs}):
            registry_aliases[model] = {
                a: registry.alias_version(settings, model, a)
                for a in (settings.staging_model_alias, settings.production_model_alias)
            }
    except MlflowException as exc:
        raise RegistryError(
            f"MLflow at {settings.mlflow_tracking_uri} did not answer: {exc.message[:200]}"
        ) from exc
    return {"aliases": aliases, "collections": collections, "mlflow_aliases": registry_aliases}


def source_titles(
    settings: Settings, response: SearchResponse, field: str = "title"
) -> dict[str, str]:
    """Titles of the hits, read from the pair's own source file when it is local Parquet.

    A convenience for people reading results; an unreadable source just gives no titles.
    """
    import pyarrow.dataset as pds

    gateway = MilvusGateway(settings)
    try:
        uri = gateway.read_pair(response.collection).source_uri
    finally:
        gateway.close()
    if "://" in uri or not uri.endswith(".parquet"):
        return {}
    ids = [h.id for h in response.hits]
    try:
        table = pds.dataset(uri).to_table(columns=["id", field], filter=pds.field("id").isin(ids))
    except (OSError, ValueError, KeyError):
        return {}
    return {
        str(i): str(t)
        for i, t in zip(
            table.column("id").to_pylist(), table.column(field).to_pylist(), strict=True
        )
    }
