"""Create a pair collection for a test build, with the metadata a promotion would write."""

from __future__ import annotations

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
            build_id=build_id,
            source_uri=source_uri,
            source_fingerprint=summary.fingerprint,
            source_rows=summary.rows,
        ),
    )
