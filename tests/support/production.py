"""What production looks like now: the alias, its live collection's rows, MLflow's alias.

Fault and bad-input tests take a snapshot before and after and require them equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.settings import Settings

MODEL_NAME = "product-embedder"


@dataclass(frozen=True)
class ProductionSnapshot:
    """The production alias target, that collection's row count, the MLflow alias."""

    alias_target: str | None
    live_rows: int | None
    mlflow_production: str | None
    managed: frozenset[str]


def production_snapshot(settings: Settings, alias: str) -> ProductionSnapshot:
    """Read production as an application and an operator would see it."""
    with MilvusGateway(settings) as milvus:
        target = milvus.alias_target(alias)
        rows = milvus.row_count(target) if target else None
        managed = frozenset(name for name, _ in milvus.list_pairs())
    with MlflowRegistry(settings) as registry:
        version = registry.alias_version(MODEL_NAME, settings.production_model_alias)
    return ProductionSnapshot(target, rows, version, managed)


def assert_unchanged(before: ProductionSnapshot, after: ProductionSnapshot) -> None:
    """Production is as it was, and no collection was left behind."""
    assert (after.alias_target, after.live_rows, after.mlflow_production) == (
        before.alias_target,
        before.live_rows,
        before.mlflow_production,
    )
    assert after.managed <= before.managed, sorted(after.managed - before.managed)
