"""What ``indexpair status`` reports: each alias → collection → model version, every
managed collection with its state, and the MLflow aliases of their models."""

from __future__ import annotations

from typing import Any

from indexpair.errors import RegistryError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairMetadata
from indexpair.serving.canary import stored_stats
from indexpair.settings import Settings


def collect_status(settings: Settings) -> dict[str, Any]:
    """Aliases → collection → model version, and every managed collection with its state."""
    with MilvusGateway(settings) as milvus:
        pairs = milvus.list_pairs()
        by_name = dict(pairs)
        targets = milvus.alias_targets()
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
                "rows": milvus.row_count(name),
                "dim": pair.dim,
                "created_at": pair.created_at,
                "reason": pair.reason,
                "aliases": sorted(a for a, t in targets.items() if t == name),
                "canary": _canary(pair),
            }
            for name, pair in pairs
        ]
    from mlflow.exceptions import MlflowException

    registry_aliases = {}
    try:
        with MlflowRegistry(settings) as registry:
            for model in sorted({p.model_name for _, p in pairs}):
                registry_aliases[model] = {
                    a: registry.alias_version(model, a)
                    for a in (settings.staging_model_alias, settings.production_model_alias)
                }
    except MlflowException as exc:
        raise RegistryError(
            f"MLflow at {settings.mlflow_tracking_uri} did not answer: {exc.message[:200]}"
        ) from exc
    return {"aliases": aliases, "collections": collections, "mlflow_aliases": registry_aliases}


def _canary(pair: PairMetadata) -> dict[str, Any] | None:
    """The online evidence the search service recorded on a candidate, if any."""
    stats = stored_stats(pair)
    return stats.summary() if stats else None
