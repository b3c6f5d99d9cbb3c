"""Incremental refresh through the real Prefect server: exact against a full rebuild.

The source is edited by hand (rows added, changed and deleted), the refresh deployment
runs, and its collection is compared row by row with a full promotion of the same model
version over the same edited source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deployments.promotions import refresh_parameters, start_promotion
from indexpair.errors import BuildError
from indexpair.gateways.milvus import HASH_FIELD, ID_FIELD, VECTOR_FIELD, MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairMetadata
from indexpair.settings import Settings
from tasks.refresh import compare
from tasks.source import SourceSpec
from tests.conftest import DATA_DIR, MODEL_NAME
from tests.e2e.conftest import SMALL_POLICY, build_name, decide, promotion_params, start

ALIAS = "e2e_refresh"
GOLDEN = str(DATA_DIR / "golden_queries_small.json")


def _edited_source(tmp: Path) -> tuple[Path, dict[str, int]]:
    """The small catalog with 12 rows deleted, 9 changed and 15 added (golden ids kept)."""
    df = pd.read_parquet(DATA_DIR / "products_small.parquet")
    golden = {i for q in json.loads(Path(GOLDEN).read_text()) for i in q["relevant_ids"]}
    free = [i for i in df["id"] if i not in golden]
    deleted, changed = free[:12], free[12:21]
    df = df[~df["id"].isin(deleted)].copy()
    mask = df["id"].isin(changed)
    df.loc[mask, "description"] = df.loc[mask, "description"] + " Now in a recycled edition."
    added = df[df["id"].isin(free[30:45])].copy()
    added["id"] = [f"NEW{i:04d}" for i in range(len(added))]
    added["title"] = "Refreshed " + added["title"]
    path = tmp / "products_edited.parquet"
    pd.concat([df, added]).sample(frac=1.0, random_state=7).to_parquet(path)
    return path, {"deleted": 12, "changed": 9, "new": 15, "unchanged": 800 - 12 - 9}


def _rows(gateway: MilvusGateway, name: str) -> dict[str, tuple[str, np.ndarray]]:
    rows = {}
    for batch in gateway.iter_rows(name, vectors=True):
        for r in batch:
            rows[str(r[ID_FIELD])] = (str(r[HASH_FIELD]), np.asarray(r[VECTOR_FIELD]))
    return rows


def _refresh(settings: Settings, source: Path, auto: bool = False) -> dict[str, Any]:
    params = refresh_parameters(str(source), GOLDEN, ALIAS, auto) | {"validation": SMALL_POLICY}
    return start_promotion(settings, params, 600, deployment="refresh/weekly")


@pytest.fixture(scope="module")
def live(stack_settings: Settings, demo_versions: dict[str, str]) -> str:
    """The TF-IDF pair of the small catalog, live behind the refresh test alias."""
    snap = start(stack_settings, promotion_params(demo_versions["tfidf"], ALIAS))
    assert decide(stack_settings, snap, approve=True)["state_type"] == "COMPLETED"
    return build_name(snap, demo_versions["tfidf"])


def test_refresh_equals_a_full_rebuild(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    live: str,
    milvus: MilvusGateway,
    tmp_path: Path,
) -> None:
    settings, version = stack_settings, demo_versions["tfidf"]
    source, expected = _edited_source(tmp_path)

    snap = _refresh(settings, source)
    assert snap["state_type"] == "PAUSED", snap
    refreshed = build_name(snap, version)
    with MlflowRegistry(settings) as registry:
        tags = registry.version_tags(MODEL_NAME, version)
    counts = {k: int(tags[f"indexpair.refresh_{k}"]) for k in expected}
    assert counts == expected
    assert milvus.alias_target(ALIAS) == live, "production moved before approval"
    assert decide(settings, snap, approve=True)["state_type"] == "COMPLETED"
    assert milvus.alias_target(ALIAS) == refreshed

    full = start(
        settings, promotion_params(version, "e2e_refresh_full", source={"uri": str(source)})
    )
    assert full["state_type"] == "PAUSED", full
    try:
        a, b = _rows(milvus, refreshed), _rows(milvus, build_name(full, version))
    finally:
        decide(settings, full, approve=False)
    assert sorted(a) == sorted(b) and len(a) == 800 - 12 + 15
    assert all(a[i][0] == b[i][0] for i in a), "content hashes differ"
    worst = max(float(np.max(np.abs(a[i][1] - b[i][1]))) for i in a)
    assert worst < 1e-5, f"vectors differ by up to {worst}"


def test_unchanged_source_promotes_nothing(
    stack_settings: Settings, demo_versions: dict[str, str], live: str, milvus: MilvusGateway
) -> None:
    target = milvus.alias_target(ALIAS)
    before = {name for name, _ in milvus.list_pairs()}
    # The live pair was built from exactly this file (the first test moved it on; rerun on
    # whatever is live now with its own source).
    source = Path(milvus.read_pair(str(target)).source_uri)
    snap = _refresh(stack_settings, source)
    assert snap["state_type"] == "COMPLETED" and snap["state_name"] == "NoChange", snap
    assert milvus.alias_target(ALIAS) == target
    assert {name for name, _ in milvus.list_pairs()} == before
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["tfidf"])
    assert tags["indexpair.refresh_result"] == "no change"


def test_auto_approval_when_no_metric_regresses(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    live: str,
    milvus: MilvusGateway,
    tmp_path: Path,
) -> None:
    current = milvus.read_pair(str(milvus.alias_target(ALIAS)))
    df = pd.read_parquet(current.source_uri)
    # Deleting documents no golden query wants can only move relevant ones up: no metric
    # can get worse, so the policy must approve by itself.
    source = tmp_path / "products_auto.parquet"
    df[~df["id"].str.startswith("NEW")].to_parquet(source)

    snap = _refresh(stack_settings, source, auto=True)

    assert snap["state_type"] == "COMPLETED", snap
    version = demo_versions["tfidf"]
    assert milvus.alias_target(ALIAS) == build_name(snap, version)
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, version)
    assert tags["indexpair.approved_by"].startswith("indexpair (automatic")
    assert "recall_at_k" in tags["indexpair.approval_comment"]


def test_bad_sources_leave_production_alone(
    stack_settings: Settings, live: str, milvus: MilvusGateway, tmp_path: Path
) -> None:
    target = milvus.alias_target(ALIAS)
    df = pd.read_parquet(DATA_DIR / "products_small.parquet")
    dup = tmp_path / "dup.parquet"
    pd.concat([df, df.head(1)]).to_parquet(dup)
    snap = _refresh(stack_settings, dup)
    assert snap["state_type"] == "FAILED" and "duplicate id" in snap["message"], snap
    assert milvus.alias_target(ALIAS) == target

    # A live collection built before rows carried content hashes: a clear error.
    old = "e2e_refresh_nohash"
    if not milvus.exists(old):
        meta = milvus.read_pair(str(target)).model_dump()
        props = PairMetadata(**(meta | {"build_id": "nohash"})).to_properties()
        milvus.client.create_collection(old, dimension=8)
        milvus.client.alter_collection_properties(old, properties=props)
    with pytest.raises(BuildError, match="has no 'content_hash' field"):
        compare(stack_settings, SourceSpec(uri=str(DATA_DIR / "products_small.parquet")), old)
    milvus.drop(old)
