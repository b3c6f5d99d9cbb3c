"""Pair metadata and pair collections for tests, as a promotion would write them."""

from __future__ import annotations

from typing import Any

from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata
from tasks.registry import ModelProbe
from tasks.source import SourceSummary


def create_test_pair(
    gateway: MilvusGateway,
    name: str,
    model: ModelProbe,
    summary: SourceSummary,
    source_uri: str,
    build_id: str = "test",
) -> None:
    """An empty pair collection ``name`` for ``model`` over the source ``summary`` describes."""
    ref = model.ref
    gateway.create_pair_collection(
        name,
        PairMetadata(
            model_name=ref.name,
            model_version=ref.version,
            model_uri=ref.uri,
            dim=model.dim,
            metric=model.contract.metric,
            query_prompt=model.contract.query_prompt,
            document_prompt=model.contract.document_prompt,
            build_id=build_id,
            source_uri=source_uri,
            source_fingerprint=summary.fingerprint,
            source_rows=summary.rows,
        ),
    )


def pair_metadata(name: str, **fields: Any) -> PairMetadata:
    """Metadata of a pair called ``NAME_vVERSION_BUILD`` (``fields`` override the rest)."""
    model, version, build = name.rsplit("_", 2)
    values: dict[str, Any] = {
        "model_name": model,
        "model_version": version.removeprefix("v"),
        "model_uri": f"models:/{model}/{version.removeprefix('v')}",
        "dim": 8,
        "build_id": build,
        "source_uri": "products.parquet",
        "source_fingerprint": "sha256:00",
        "source_rows": 10,
    }
    return PairMetadata(**(values | fields))
