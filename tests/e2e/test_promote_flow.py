"""The promote flow end to end: real Prefect server + worker, Milvus Lite, MLflow, Ray."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from indexpair import notifications
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairState
from indexpair.serving.query import PairSearcher
from indexpair.settings import Settings
from tasks.retention import reap_abandoned
from tests.conftest import MODEL_NAME, free_port
from tests.e2e.conftest import build_name, decide, promotion_params, start
from tests.support.notify import NotifyReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def approval_form(settings: Settings, flow_run_id: str) -> dict[str, Any]:
    """The form the Prefect UI shows for a suspended run: its JSON schema and description."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state

    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        assert run.state is not None
        keys = keyset_from_paused_state(run.state)
        return {
            "schema": json.loads(client.read_flow_run_input(run.id, keys["schema"])),
            "description": json.loads(client.read_flow_run_input(run.id, keys["description"])),
        }


def task_states(settings: Settings, flow_run_id: str) -> dict[str, list[str]]:
    """State names of a flow run's task runs, by task name, oldest first."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    states: dict[str, list[str]] = {}
    for run in runs:
        name = run.name.rsplit("-", 1)[0]
        states.setdefault(name, []).append(run.state.name if run.state else "?")
    return states


def test_approve_moves_alias_and_mirrors_mlflow(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    notified: NotifyReceiver,
) -> None:
    alias = "e2e_approve"
    first = start(stack_settings, promotion_params(demo_versions["tfidf"], alias))
    assert first["state_type"] == "PAUSED", first
    v1 = build_name(first, demo_versions["tfidf"])
    # The team's webhook hears that a person is needed: version, verdict, link.
    model = f"{MODEL_NAME} v{demo_versions['tfidf']}"
    waiting = notified.wait_for(first["id"], f"Approval needed: {model} (candidate {v1})")
    assert "Validation: passed: recall@10 " in waiting
    assert f"{stack_settings.prefect_ui_url}/runs/flow-run/{first['id']}" in waiting
    assert milvus.read_pair(v1).state == PairState.AWAITING_APPROVAL
    form = approval_form(stack_settings, first["id"])
    # The form is bound to this build: it names it, pre-filled, and the run checks it.
    fields = form["schema"]["properties"]
    bound = {"candidate", "model_name", "model_version", "source_fingerprint", "report_digest"}
    assert set(fields) == {"approve", "approver", "comment"} | bound
    pair = milvus.read_pair(v1)
    assert fields["candidate"]["default"] == v1
    assert fields["model_version"]["default"] == demo_versions["tfidf"]
    assert fields["source_fingerprint"]["default"] == pair.source_fingerprint
    assert fields["report_digest"]["default"] == pair.report_digest
    assert pair.report_digest.startswith("sha256:") and pair.report
    assert f"Candidate pair `{v1}`" in form["description"]
    assert "| recall_at_k |" in form["description"]
    assert milvus.alias_target(alias) is None  # nothing changes before approval
    assert decide(stack_settings, first, approve=True)["state_type"] == "COMPLETED"
    assert milvus.alias_target(alias) == v1
    # The resumed run re-ran the flow body without task caches: it found its build in
    # Milvus, repeated no finished stage (one embedding, one validation) and switched.
    states = task_states(stack_settings, first["id"])
    assert states["pin-build"] == ["Completed", "Completed"]
    for step in ("embed-and-insert", "validate-candidate"):
        assert states[step] == ["Completed"], (step, states[step])
    assert states["switch-alias"] == ["Completed"]
    assert milvus.read_pair(v1).state == PairState.LIVE
    assert milvus.read_pair(v1).approved_by == "pytest"
    promoted = notified.wait_for(first["id"], f"Promoted: {model} is live behind {alias}")
    assert "approved by pytest: from the e2e tests" in promoted

    # A notification receiver that is down changes nothing for the promotion.
    down = SecretStr(f"http://127.0.0.1:{free_port()}/hooks")
    notifications.apply(stack_settings.model_copy(update={"notify_url": down}))
    try:
        second = start(stack_settings, promotion_params(demo_versions["minilm"], alias))
        v2 = build_name(second, demo_versions["minilm"])
        done = decide(stack_settings, second, approve=True, approver="alice")
    finally:
        notifications.apply(stack_settings)
    assert done["state_type"] == "COMPLETED", done
    assert notified.about(second["id"]) == []

    assert milvus.alias_target(alias) == v2
    pair = milvus.read_pair(v2)
    assert (pair.state, pair.model_version, pair.dim) == (
        PairState.LIVE,
        demo_versions["minilm"],
        384,
    )
    assert pair.source_rows == milvus.row_count(v2) > 0
    assert pair.source_fingerprint.startswith("sha256:")
    assert milvus.read_pair(v1).state == PairState.PREVIOUS
    assert milvus.read_pair(v1).previous_since
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["minilm"])
    assert tags["indexpair.status"] == "live"
    assert tags["indexpair.collection"] == v2
    assert tags["indexpair.approved_by"] == "alice"
    assert float(tags["indexpair.recall_at_10"]) > 0.5
    with MlflowRegistry(stack_settings) as registry:
        production = registry.alias_version(MODEL_NAME, stack_settings.production_model_alias)
    assert production == demo_versions["minilm"]
    searcher = PairSearcher(stack_settings, alias)
    response = searcher.search("waterproof hiking boots", k=5)
    searcher.close()
    assert (response.collection, response.model_version) == (v2, demo_versions["minilm"])
    assert len(response.hits) == 5


def test_deny_removes_candidate_and_keeps_alias(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    base_alias: str,
    notified: NotifyReceiver,
) -> None:
    live_before = milvus.alias_target(base_alias)
    snap = start(stack_settings, promotion_params(demo_versions["minilm"], base_alias))
    candidate = build_name(snap, demo_versions["minilm"])
    assert milvus.exists(candidate)
    done = decide(stack_settings, snap, approve=False, approver="bob")
    assert (done["state_type"], done["state_name"]) == ("COMPLETED", "Denied")
    assert "denied by bob" in done["message"]
    assert not milvus.exists(candidate)
    assert milvus.alias_target(base_alias) == live_before
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["minilm"])
    assert "denied by bob" in tags["indexpair.reject_reason"]
    assert tags["indexpair.rejected_collection"] == candidate
    denied = notified.wait_for(snap["id"], f"Denied: {MODEL_NAME} v{demo_versions['minilm']}")
    assert "denied by bob: from the e2e tests" in denied


def test_broken_model_is_rejected_by_validation(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    base_alias: str,
    notified: NotifyReceiver,
) -> None:
    live_before = milvus.alias_target(base_alias)
    snap = start(stack_settings, promotion_params(demo_versions["broken"], base_alias))
    assert snap["state_type"] == "FAILED", snap
    assert "ValidationFailed" in snap["message"]
    assert "recall_at_k" in snap["message"]
    assert not milvus.exists(build_name(snap, demo_versions["broken"]))
    assert milvus.alias_target(base_alias) == live_before
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["broken"])
    assert tags["indexpair.status"] == "rejected"
    assert "ValidationFailed" in tags["indexpair.reject_reason"]
    failed = notified.wait_for(snap["id"], f"Failed: {MODEL_NAME} v{demo_versions['broken']}")
    assert "production untouched" in failed and "ValidationFailed" in failed


def test_approval_timeout_fails_run_and_build_is_cleaned(
    stack_settings: Settings, milvus: MilvusGateway, demo_versions: dict[str, str], base_alias: str
) -> None:
    live_before = milvus.alias_target(base_alias)
    snap = start(
        stack_settings, promotion_params(demo_versions["tfidf"], base_alias, approval_timeout_s=3)
    )
    assert snap["state_type"] == "PAUSED", snap
    candidate = build_name(snap, demo_versions["tfidf"])
    with prefect_api.prefect_api(stack_settings):
        deadline = time.monotonic() + 120
        while not (state := prefect_api.snapshot(stack_settings, snap["id"])).final:
            assert time.monotonic() < deadline, state
            time.sleep(1)
        assert state["state_type"] == "FAILED", state
        assert milvus.read_pair(candidate).state == PairState.AWAITING_APPROVAL
        assert candidate not in reap_abandoned(stack_settings)  # within the grace period
        assert milvus.exists(candidate)
        milvus.update_pair(
            candidate, created_at=(datetime.now(UTC) - timedelta(hours=7)).isoformat()
        )
        assert candidate in reap_abandoned(stack_settings)  # past it: rejected and dropped
    assert not milvus.exists(candidate)
    assert milvus.alias_target(base_alias) == live_before
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["tfidf"])
    assert "abandoned" in tags["indexpair.reject_reason"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"model_name": "no-such-model"}, "model 'no-such-model' is not registered"),
        ({"model_version": "999"}, "has no version '999'"),
        ({"golden_queries": "/nonexistent/golden.json"}, "does not exist"),
        ({"source": {"uri": "/nonexistent/products.parquet"}}, "does not exist"),
        ({"alias": "bad-alias"}, "not a valid Milvus name"),
    ],
)
def test_bad_parameters_fail_clearly_and_touch_nothing(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    base_alias: str,
    params: dict[str, object],
    fragment: str,
) -> None:
    before = {name for name, _ in milvus.list_pairs()}
    live_before = milvus.alias_target(base_alias)
    overridden = promotion_params(demo_versions["tfidf"], base_alias)
    overridden.update(params)
    snap = start(stack_settings, overridden)
    assert snap["state_type"] == "FAILED", snap
    assert fragment in snap["message"], snap["message"]
    assert {name for name, _ in milvus.list_pairs()} <= before
    assert milvus.alias_target(base_alias) == live_before


def test_live_pair_is_served_after_a_milvus_restart(
    stack_settings: Settings, demo_versions: dict[str, str], base_alias: str
) -> None:
    # Milvus Lite releases every collection when it restarts; `stack up` loads the
    # aliased pairs again, so production answers at once.
    from indexpair import stack
    from indexpair.stack import procs
    from tests.conftest import PROJECT_DIR

    (milvus_status,) = stack.status(stack_settings, ["milvus"])
    assert milvus_status.pid is not None
    procs.terminate(milvus_status.pid, 15)
    stack.up(stack_settings, PROJECT_DIR, services=["milvus"])
    with MilvusGateway(stack_settings) as milvus:
        live = milvus.alias_target(base_alias)
        assert live is not None
        assert milvus.is_loaded(live)
    searcher = PairSearcher(stack_settings, base_alias)
    try:
        assert searcher.search("hiking boots", k=3).collection == live
    finally:
        searcher.close()
