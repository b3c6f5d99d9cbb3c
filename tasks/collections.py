"""Collection stage: create the versioned collection, finish it, check it, remove it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import DEFAULT
from prefect.logging import get_run_logger

from indexpair.errors import BuildError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.pair import PairMetadata, PairState
from indexpair.settings import Settings


def create(settings: Settings, name: str, meta: PairMetadata) -> None:
    """Create the collection unless this build already did (a resumed run)."""
    gateway = MilvusGateway(settings)
    try:
        if gateway.exists(name):
            existing = gateway.read_pair(name)
            if existing.build_id != meta.build_id:
                raise BuildError(
                    f"collection {name!r} exists and belongs to build "
                    f"{existing.build_id!r}, not {meta.build_id!r}"
                )
            return
        gateway.create_pair_collection(name, meta)
    finally:
        gateway.close()


# ``meta`` carries its creation time, which differs when a resumed run rebuilds it; the
# collection name (with its build id) identifies the build on its own.
@task(name="create-collection", persist_result=True, cache_policy=DEFAULT - "meta")
def create_collection(settings: Settings, name: str, meta: PairMetadata) -> str:
    """Create the version-stamped collection with its pair properties and HNSW index."""
    create(settings, name, meta)
    get_run_logger().info("created collection %s (dim %d, %s)", name, meta.dim, meta.metric)
    return name


def finalize(settings: Settings, name: str, expected_rows: int) -> int:
    """Flush and load; the row count must equal the source's.

    Raises:
        BuildError: the counts differ.
    """
    gateway = MilvusGateway(settings)
    try:
        rows = gateway.finalize(name)
        if rows != expected_rows:
            raise BuildError(
                f"collection {name!r} holds {rows} rows; the source has {expected_rows}"
            )
        return rows
    finally:
        gateway.close()


@task(name="finalize-collection", persist_result=True)
def finalize_collection(settings: Settings, name: str, expected_rows: int) -> int:
    """Flush, load and count."""
    rows = finalize(settings, name, expected_rows)
    get_run_logger().info("collection %s loaded with %d rows", name, rows)
    return rows


def set_state(settings: Settings, name: str, state: PairState, reason: str = "") -> None:
    """Record a new pair state on the collection."""
    gateway = MilvusGateway(settings)
    try:
        gateway.set_state(name, state, reason)
    finally:
        gateway.close()


@task(name="mark-collection", persist_result=True)
def mark_collection(settings: Settings, name: str, state: PairState, reason: str = "") -> None:
    """Task wrapper of :func:`set_state`."""
    set_state(settings, name, state, reason)


def live_collection(settings: Settings, alias: str) -> str | None:
    """The collection the production alias points at now."""
    gateway = MilvusGateway(settings)
    try:
        return gateway.alias_target(alias)
    finally:
        gateway.close()


@task(name="read-live-pair", persist_result=True)
def read_live_pair(settings: Settings, alias: str) -> str | None:
    """The live collection at validation time: the value the swap compares against."""
    return live_collection(settings, alias)


def pair_model(settings: Settings, name: str) -> ModelVersionRef:
    """The model version a pair was built with, from its collection's metadata."""
    gateway = MilvusGateway(settings)
    try:
        pair = gateway.read_pair(name)
    finally:
        gateway.close()
    return ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)


@task(name="read-pair-model", persist_result=True)
def read_pair_model(settings: Settings, name: str) -> ModelVersionRef:
    """Task wrapper of :func:`pair_model`."""
    return pair_model(settings, name)
