"""Rollback and garbage collection through the real Prefect server, Milvus and MLflow.

One alias goes through: a first promotion (TF-IDF), a refused rollback (no previous
pair), a second promotion (MiniLM), rollback targets chosen and refused by the shared
rule, a rollback through the deployment, then garbage collection in dry run and for real
while a third promotion waits for approval, with foreign, rolled-back, approved and
unknown-run collections planted beside the managed ones; last the abandoned-build reaper
with its grace period.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from indexpair.errors import PairNotFound, RollbackRefused
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairMetadata, PairState, collection_name
from indexpair.serving.query import PairSearcher
from indexpair.settings import Settings
from tasks.retention import RetentionPolicy, Verdict, apply, reap_abandoned
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


def _ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")


def _plant(
    gateway: MilvusGateway,
    name: str,
    state: PairState,
    age_days: float,
    retired_days: float | None = None,
    **kw: str,
) -> None:
    """A managed collection made directly, with back-dated metadata (no build needed).

    Created ``age_days`` ago; a previous or rolled-back pair retired ``retired_days`` ago
    (default: when it was created).
    """
    stamp = _ago(age_days)
    retired = _ago(age_days if retired_days is None else retired_days)
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
        previous_since=retired if state == PairState.PREVIOUS else "",
        rolled_back_since=retired if state == PairState.ROLLED_BACK else "",
        alias=kw.pop("alias", ALIAS),
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


def test_rollback_targets_follow_the_shared_rule(
    stack_settings: Settings, history: dict[str, Any], milvus: MilvusGateway
) -> None:
    """Default: the most recently retired previous pair of the alias, of any model name."""
    other_model = collection_name("other-model", "1", "plantmodel01")
    _plant(milvus, other_model, PairState.PREVIOUS, 0, model_name="other-model")
    rolled = collection_name(MODEL_NAME, "1", "plantrolled1")
    _plant(milvus, rolled, PairState.ROLLED_BACK, 0)  # retired last, but rolled back from
    try:
        chosen = prepare(stack_settings, ALIAS)
        assert chosen.target == other_model, chosen.target
        assert chosen.target_pair.model_name == "other-model"
        assert prepare(stack_settings, ALIAS, rolled).target == rolled, "named on purpose"
        milvus.drop(other_model)
        assert prepare(stack_settings, ALIAS).target == history["tfidf"]
        assert milvus.alias_target(ALIAS) == history["minilm"], "prepare must not switch"
    finally:
        milvus.drop(other_model)
        milvus.drop(rolled)


def test_bad_rollback_targets_leave_the_alias_alone(
    stack_settings: Settings, history: dict[str, Any], milvus: MilvusGateway
) -> None:
    foreign = "e2e_foreign_rollback"
    if not milvus.exists(foreign):
        milvus.client.create_collection(foreign, dimension=8)
    other_alias = collection_name(MODEL_NAME, "1", "plantalias01")
    _plant(milvus, other_alias, PairState.PREVIOUS, 0, alias="e2e_elsewhere")
    approved = collection_name(MODEL_NAME, "1", "plantapprov1")
    _plant(milvus, approved, PairState.APPROVED, 0)
    cases = [
        ("no_such_collection", PairNotFound, "does not exist"),
        (foreign, PairNotFound, "no indexpair pair metadata"),
        (other_alias, RollbackRefused, "served alias 'e2e_elsewhere'"),
        (approved, RollbackRefused, "is approved;"),
        (history["minilm"], RollbackRefused, "already live"),
        ("bad-name", Exception, "not a valid Milvus name"),
    ]
    try:
        for target, error, message in cases:
            with pytest.raises(error, match=message):
                prepare(stack_settings, ALIAS, target)
            assert milvus.alias_target(ALIAS) == history["minilm"], target
    finally:
        milvus.drop(other_alias)
        milvus.drop(approved)
    result = CliRunner().invoke(app, ["rollback", "--alias", ALIAS, "--to", "no_such_collection"])
    assert result.exit_code == 1 and "does not exist" in result.output, result.output
    assert milvus.exists(history["tfidf"]) and milvus.exists(foreign)


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
    # The pair rolled back from is never a default target again; named, it still is.
    rolled = milvus.read_pair(minilm)
    assert rolled.state == PairState.ROLLED_BACK and rolled.rolled_back_since
    with pytest.raises(RollbackRefused, match="no previous pair"):
        prepare(stack_settings, ALIAS)
    assert prepare(stack_settings, ALIAS, minilm).target == minilm
    assert milvus.is_loaded(tfidf)
    version = demo_versions["tfidf"]
    with MlflowRegistry(stack_settings) as registry:
        assert registry.alias_version(MODEL_NAME, "production") == version
        assert registry.version_tags(MODEL_NAME, version)["indexpair.status"] == "live"
        minilm_tags = registry.version_tags(MODEL_NAME, demo_versions["minilm"])
    assert minilm_tags["indexpair.status"] == "rolled_back"
    # The same answers the TF-IDF pair gave when it was first live, and named as such.
    assert _search(stack_settings) == history["tfidf_results"]


def _plant_for_gc(milvus: MilvusGateway) -> dict[str, str]:
    """Managed collections for garbage collection to judge (policy: 1 previous, 1 day)."""
    names = {
        key: collection_name(MODEL_NAME, "1", f"plant{key}")
        for key in ("prev001", "recent01", "fail001", "rbold001", "rbnew001", "apold001")
    }
    _plant(milvus, names["prev001"], PairState.PREVIOUS, 30)
    # Created long ago but retired last: the rollback target, whatever the live pair was.
    _plant(milvus, names["recent01"], PairState.PREVIOUS, 30, retired_days=0)
    _plant(milvus, names["fail001"], PairState.FAILED, 2)
    _plant(milvus, names["rbold001"], PairState.ROLLED_BACK, 30, retired_days=3)
    _plant(milvus, names["rbnew001"], PairState.ROLLED_BACK, 30, retired_days=0.5)
    _plant(milvus, names["apold001"], PairState.APPROVED, 3)
    names["apnew001"] = collection_name(MODEL_NAME, "1", "plantapnew001")
    _plant(milvus, names["apnew001"], PairState.APPROVED, 0.5)
    names["unknown1"] = collection_name(MODEL_NAME, "1", "plantunknown1")
    unknown_run = str(uuid.uuid4())  # a flow run the Prefect API has never seen
    _plant(milvus, names["unknown1"], PairState.AWAITING_APPROVAL, 3, flow_run_id=unknown_run)
    return names


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
    waiting = start(settings, promotion_params(demo_versions["tfidf"], ALIAS))
    assert waiting["state_type"] == "PAUSED", waiting
    candidate = build_name(waiting, demo_versions["tfidf"])
    # Planted after the promote run started, so its own reaper never saw them.
    planted = _plant_for_gc(milvus)
    dropped = [planted[k] for k in ("prev001", "fail001", "rbold001", "apold001")]
    policy = RetentionPolicy(keep_previous=1, max_age_days=1, abandoned_after_hours=1)
    try:
        params = {"policy": policy.model_dump()}
        dry = _run_deployment(settings, "collect-garbage/daily", params)
        assert dry["state_type"] == "COMPLETED", dry
        assert all(milvus.exists(name) for name in dropped), "dry run dropped"

        real = _run_deployment(settings, "collect-garbage/daily", params | {"dry_run": False})
        assert real["state_type"] == "COMPLETED", real
        assert not any(milvus.exists(name) for name in dropped), dropped
        kept = [history["tfidf"], history["minilm"], candidate, foreign]
        kept += [planted[k] for k in ("recent01", "rbnew001", "apnew001", "unknown1")]
        assert all(milvus.exists(name) for name in kept), kept
        assert milvus.alias_target(ALIAS) == history["tfidf"]
        # Garbage collection kept exactly the pair a rollback would pick now.
        assert prepare(settings, ALIAS).target == planted["recent01"]
        table = _artifact_rows(settings, real["id"])
        assert "rollback target 1 of 1" in table[planted["recent01"]]["reason"]
        assert table[candidate]["action"] == "keep" and "in flight" in table[candidate]["reason"]
        assert "unknown to the Prefect API" in table[planted["unknown1"]]["reason"]
        assert "never a rollback target" in table[planted["rbnew001"]]["reason"]
        assert "indexpair switch-approved" in table[planted["apnew001"]]["reason"]
        assert table[foreign]["reason"].startswith("not created by indexpair")
        assert table[planted["prev001"]]["outcome"] == "dropped"
        status = CliRunner().invoke(app, ["status", "--json"])
        assert status.exit_code == 0, status.output
        shown = {c["name"]: c for c in json.loads(status.stdout)["collections"]}
        assert shown[candidate]["gc"] == "keep" and shown[history["minilm"]]["gc"] == "keep"
        assert shown[candidate]["age_hours"] is not None
    finally:
        decide(settings, waiting, approve=False)
        for name in planted.values():
            milvus.drop(name)
    assert not milvus.exists(candidate)


def test_reaper_waits_out_the_grace_period_and_keeps_unknown_runs(
    stack_settings: Settings, milvus: MilvusGateway
) -> None:
    settings = stack_settings
    ended = _run_deployment(settings, "collect-garbage/daily", {"dry_run": True})
    assert ended["state_type"] == "COMPLETED", ended
    # Another model name than the demo's: the reaper's MLflow tags must not touch it.
    model = "planted-model"
    fresh, stale, unknown = (
        collection_name("planted-model", "1", f"plantreap{i}") for i in ("01", "02", "03")
    )
    _plant(
        milvus,
        fresh,
        PairState.AWAITING_APPROVAL,
        2 / 24,
        flow_run_id=ended["id"],
        model_name=model,
    )
    _plant(
        milvus,
        stale,
        PairState.AWAITING_APPROVAL,
        7 / 24,
        flow_run_id=ended["id"],
        model_name=model,
    )
    _plant(milvus, unknown, PairState.BUILDING, 3, flow_run_id=str(uuid.uuid4()), model_name=model)
    try:
        with prefect_api.prefect_api(settings):
            own = reap_abandoned(settings, current_run=ended["id"])
            assert stale not in own and milvus.exists(stale), "a run's own build is skipped"
            reaped = reap_abandoned(settings)
        assert stale in reaped and not milvus.exists(stale), reaped
        assert fresh not in reaped and unknown not in reaped, reaped
        assert milvus.read_pair(fresh).state == PairState.AWAITING_APPROVAL, "within 6 h grace"
        assert milvus.read_pair(unknown).state == PairState.BUILDING, "unknown run kept"
    finally:
        for name in (fresh, stale, unknown):
            milvus.drop(name)


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
