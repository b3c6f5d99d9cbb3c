"""Rollback and garbage collection through the real Prefect server, Milvus and MLflow.

One alias goes through: a first promotion (TF-IDF), a refused rollback (no previous
pair), a second promotion (MiniLM), refused rollbacks to bad targets, a rollback through
the deployment, then garbage collection in dry run and for real while a third promotion
waits for approval, with a foreign collection planted beside the managed ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from indexpair.cli import app
from indexpair.errors import PairNotFound, RollbackRefused
from indexpair.gateways import mlflow as registry
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata, PairState, collection_name
from indexpair.query import PairSearcher
from indexpair.settings import Settings
from tasks.retention import RetentionPolicy, Verdict, apply
from tasks.rollback import prepare
from tests.conftest import MODEL_NAME
from tests.e2e.conftest import build_name, decide, promotion_params, start

ALIAS = "e2e_rollback"
QUERIES = ["waterproof hiking boots", "wireless noise cancelling headphones", "espresso machine"]


def _search(settings: Settings) -> list[dict[str, Any]]:
    searcher = PairSearcher(settings, ALIAS)
    try:
        return [searcher.search(q, k=5).model_dump() for q in QUERIES]
    finally:
        searcher.close()


def _run_deployment(settings: Settings, deployment: str, params: dict[str, Any]) -> Any:
    with prefect_api.prefect_api(settings):
        run = prefect_api.start_deployment(settings, params, deployment)
        return prefect_api.wait(settings, run["id"], 300, until_paused=False)


def _plant(gateway: MilvusGateway, name: str, state: PairState, age_days: float, **kw: str) -> None:
    """A managed collection made directly, with back-dated metadata (no build needed)."""
    stamp = (datetime.now(UTC) - timedelta(days=age_days)).isoformat(timespec="seconds")
    meta = PairMetadata(
        model_name=kw.pop("model_name", MODEL_NAME),
        model_version="1",
        model_uri="models:/planted/1",
        dim=8,
        build_id=name.rsplit("_", 1)[1],
        source_uri="planted",
        source_fingerprint="planted",
        source_rows=0,
        state=state,
        created_at=stamp,
        previous_since=stamp if state == PairState.PREVIOUS else "",
        alias=ALIAS,
        **kw,
    )
    gateway.create_pair_collection(name, meta)


@pytest.fixture(scope="module")
def history(stack_settings: Settings, demo_versions: dict[str, str]) -> Iterator[dict[str, Any]]:
    """TF-IDF promoted, then MiniLM promoted over it; yields names and searches."""
    settings = stack_settings
    seen: dict[str, Any] = {}
    snap = start(settings, promotion_params(demo_versions["tfidf"], ALIAS))
    assert decide(settings, snap, approve=True)["state_type"] == "COMPLETED"
    seen["tfidf"] = build_name(snap, demo_versions["tfidf"])
    seen["tfidf_results"] = _search(settings)
    with pytest.raises(RollbackRefused, match="no previous pair"):
        prepare(settings, ALIAS)
    snap = start(settings, promotion_params(demo_versions["minilm"], ALIAS))
    assert decide(settings, snap, approve=True)["state_type"] == "COMPLETED"
    seen["minilm"] = build_name(snap, demo_versions["minilm"])
    yield seen


def test_bad_rollback_targets_leave_the_alias_alone(
    stack_settings: Settings, history: dict[str, Any], milvus: MilvusGateway
) -> None:
    foreign = "e2e_foreign_rollback"
    if not milvus.exists(foreign):
        milvus.client.create_collection(foreign, dimension=8)
    other_family = collection_name("other-model", "1", "plantfamily1")
    _plant(milvus, other_family, PairState.PREVIOUS, 0, model_name="other-model")
    cases = [
        ("no_such_collection", PairNotFound, "does not exist"),
        (foreign, PairNotFound, "no indexpair pair metadata"),
        (other_family, RollbackRefused, "model family"),
        (history["minilm"], RollbackRefused, "already live"),
        ("bad-name", Exception, "not a valid Milvus name"),
    ]
    for target, error, message in cases:
        with pytest.raises(error, match=message):
            prepare(stack_settings, ALIAS, target)
        assert milvus.alias_target(ALIAS) == history["minilm"], target
    result = CliRunner().invoke(app, ["rollback", "--alias", ALIAS, "--to", "no_such_collection"])
    assert result.exit_code == 1 and "does not exist" in result.output, result.output
    assert milvus.exists(history["tfidf"]) and milvus.exists(foreign)
    milvus.drop(other_family)


def test_rollback_restores_previous_pair_and_its_results(
    stack_settings: Settings,
    history: dict[str, Any],
    demo_versions: dict[str, str],
    milvus: MilvusGateway,
) -> None:
    tfidf, minilm = history["tfidf"], history["minilm"]
    assert _search(stack_settings)[0]["collection"] == minilm
    milvus.client.release_collection(tfidf)  # the target must be loaded before the switch
    assert not milvus.is_loaded(tfidf)

    done = _run_deployment(stack_settings, "rollback/rollback", {"alias": ALIAS, "reason": "e2e"})

    assert done["state_type"] == "COMPLETED", done
    assert milvus.alias_target(ALIAS) == tfidf
    assert milvus.read_pair(tfidf).state == PairState.LIVE
    assert milvus.read_pair(minilm).state == PairState.PREVIOUS
    assert milvus.is_loaded(tfidf)
    version = demo_versions["tfidf"]
    assert registry.alias_version(stack_settings, MODEL_NAME, "production") == version
    assert registry.version_tags(stack_settings, MODEL_NAME, version)["indexpair.status"] == "live"
    minilm_tags = registry.version_tags(stack_settings, MODEL_NAME, demo_versions["minilm"])
    assert minilm_tags["indexpair.status"] == "rolled_back"
    # The same answers the TF-IDF pair gave when it was first live, and named as such.
    assert _search(stack_settings) == history["tfidf_results"]


def test_garbage_collection_keeps_what_rollback_and_approval_need(
    stack_settings: Settings,
    history: dict[str, Any],
    demo_versions: dict[str, str],
    milvus: MilvusGateway,
) -> None:
    settings = stack_settings
    foreign = "e2e_foreign_gc"
    if not milvus.exists(foreign):
        milvus.client.create_collection(foreign, dimension=8)
    old_previous = collection_name(MODEL_NAME, "1", "plantprev001")
    old_failed = collection_name(MODEL_NAME, "1", "plantfail001")
    _plant(milvus, old_previous, PairState.PREVIOUS, 30)
    _plant(milvus, old_failed, PairState.FAILED, 2)
    waiting = start(settings, promotion_params(demo_versions["tfidf"], ALIAS))
    assert waiting["state_type"] == "PAUSED", waiting
    candidate = build_name(waiting, demo_versions["tfidf"])
    policy = RetentionPolicy(keep_previous=1, max_age_days=1, abandoned_after_hours=1)
    try:
        params = {"policy": policy.model_dump()}
        dry = _run_deployment(settings, "collect-garbage/daily", params)
        assert dry["state_type"] == "COMPLETED", dry
        assert milvus.exists(old_previous) and milvus.exists(old_failed), "dry run dropped"

        real = _run_deployment(settings, "collect-garbage/daily", params | {"dry_run": False})
        assert real["state_type"] == "COMPLETED", real
        assert not milvus.exists(old_previous) and not milvus.exists(old_failed)
        for kept in (history["tfidf"], history["minilm"], candidate, foreign):
            assert milvus.exists(kept), kept
        assert milvus.alias_target(ALIAS) == history["tfidf"]
        table = _artifact_rows(settings, real["id"])
        assert table[candidate]["action"] == "keep" and "in flight" in table[candidate]["reason"]
        assert table[foreign]["reason"].startswith("not created by indexpair")
        assert table[old_previous]["outcome"] == "dropped"
        status = CliRunner().invoke(app, ["status", "--json"])
        assert status.exit_code == 0, status.output
        shown = {c["name"]: c for c in json.loads(status.stdout)["collections"]}
        assert shown[candidate]["gc"] == "keep" and shown[history["minilm"]]["gc"] == "keep"
        assert shown[candidate]["age_hours"] is not None
    finally:
        decide(settings, waiting, approve=False)
    assert not milvus.exists(candidate)


def test_dropping_what_is_already_gone_counts_as_done(stack_settings: Settings) -> None:
    gone = Verdict(
        name="e2e_never_existed",
        state="failed",
        group=ALIAS,
        age_hours=99,
        rows=0,
        action="drop",
        reason="test",
    )
    with prefect_api.prefect_api(stack_settings):
        (result,) = apply(stack_settings, [gone], dry_run=False)
    assert result.outcome == "already gone"


def _artifact_rows(settings: Settings, flow_run_id: str) -> dict[str, dict[str, Any]]:
    """The garbage-collection table artifact of one flow run, by collection name."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    (table,) = [a for a in artifacts if a.key == "garbage-collection"]
    data = table.data if isinstance(table.data, list) else json.loads(str(table.data))
    return {row["name"]: row for row in data}
