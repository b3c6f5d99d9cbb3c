"""What was approved is what goes live, through the real worker: the build's step
boundaries crashed one after another in one flow run, and the approval wait survived by
a moved ``staging`` alias plus a redeployed worker with another setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deployments.promotions import answer
from indexpair import faults
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairState
from indexpair.roles import group_of
from indexpair.settings import Settings
from tests.conftest import MODEL_NAME
from tests.e2e.conftest import build_name, decide, new_version_like, promotion_params
from tests.faults.conftest import reschedule, restart_service, wait_run, worker_log_size

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
BUILD_POINTS = ["build.created", "build.inserted", "build.validated"]


def _crash_and_resume(settings: Settings, run_id: str, since: int) -> dict[str, str]:
    """Wait for the armed crash to kill the run, put it back in the queue, wait again."""
    crashed = wait_run(settings, run_id, 600, paused=False)
    assert crashed["state_type"] == "CRASHED", crashed
    reschedule(settings, run_id, since)
    return wait_run(settings, run_id, 600)


def _approve_through_a_crash(settings: Settings, snap: dict[str, str], comment: str) -> None:
    """Approve with ``approval.verified`` armed: the run dies there, resumes, completes."""
    faults.arm(Path(os.environ[faults.ENV]), "approval.verified")
    since = worker_log_size(settings)
    crashed = answer(settings, snap["id"], True, "crash-matrix", comment)
    assert crashed["state_type"] == "CRASHED", crashed
    reschedule(settings, snap["id"], since)
    done = wait_run(settings, snap["id"], 600, paused=False)
    assert done["state_type"] == "COMPLETED", done


def test_every_build_boundary_crashed_then_resumed_promotes_the_one_build(
    stack_settings: Settings, milvus: MilvusGateway, demo_versions: dict[str, str]
) -> None:
    alias, version = "crash_flow", demo_versions["tfidf"]
    armed = Path(os.environ[faults.ENV])
    faults.arm(armed, *BUILD_POINTS)
    since = worker_log_size(stack_settings)
    with prefect_api.prefect_api(stack_settings):
        run = prefect_api.start_deployment(stack_settings, promotion_params(version, alias))
    candidate = build_name(run, version)
    snap: dict[str, str] = {}
    for point in BUILD_POINTS:
        snap = _crash_and_resume(stack_settings, run["id"], since)
        since = worker_log_size(stack_settings)
        assert point not in armed.read_text(encoding="utf-8").split(), f"{point} never fired"
        assert milvus.alias_target(alias) is None  # production untouched before approval
        ours = [n for n, p in milvus.list_pairs() if p.flow_run_id == run["id"]]
        assert ours == [candidate], ours  # one build, however often it resumed
    assert snap["state_type"] == "PAUSED", snap
    assert milvus.read_pair(candidate).state == PairState.AWAITING_APPROVAL

    _approve_through_a_crash(stack_settings, snap, "approved, then a crash")
    assert milvus.alias_target(alias) == candidate
    states = {n: p.state for n, p in milvus.list_pairs() if group_of(p) == alias}
    assert states == {candidate: PairState.LIVE}, states
    assert milvus.row_count(candidate) == milvus.read_pair(candidate).source_rows
    with MlflowRegistry(stack_settings) as registry:
        assert registry.alias_version(MODEL_NAME, "production") == version


def test_staging_moved_and_worker_redeployed_while_waiting_promotes_what_was_approved(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    alias = "bound_approval"
    client = MlflowClient(stack_settings.mlflow_tracking_uri, stack_settings.mlflow_tracking_uri)
    first = new_version_like(stack_settings, demo_versions["tfidf"])
    client.set_registered_model_alias(MODEL_NAME, "staging", first)
    try:
        params = promotion_params(demo_versions["tfidf"], alias) | {"model_version": None}
        with prefect_api.prefect_api(stack_settings):
            run = prefect_api.start_deployment(stack_settings, params)
        snap = wait_run(stack_settings, run["id"], 600)
        assert snap["state_type"] == "PAUSED", snap
        reviewed = build_name(snap, first)
        assert milvus.read_pair(reviewed).state == PairState.AWAITING_APPROVAL

        second = new_version_like(stack_settings, demo_versions["tfidf"])
        client.set_registered_model_alias(MODEL_NAME, "staging", second)
        monkeypatch.setenv("INDEXPAIR_EMBED_BATCH_SIZE", "97")  # a routine redeploy
        restart_service(stack_settings, ["worker"])

        done = decide(stack_settings, snap, approve=True, approver="reviewer-of-v" + first)
        assert done["state_type"] == "COMPLETED", done
        assert milvus.alias_target(alias) == reviewed
        assert milvus.read_pair(reviewed).state == PairState.LIVE
        assert not milvus.exists(build_name(snap, second)), "a build nobody reviewed"
        ours = [n for n, p in milvus.list_pairs() if p.flow_run_id == snap["id"]]
        assert ours == [reviewed]
        with MlflowRegistry(stack_settings) as registry:
            assert registry.alias_version(MODEL_NAME, "production") == first
    finally:
        client.delete_registered_model_alias(MODEL_NAME, "staging")
        monkeypatch.undo()
        restart_service(stack_settings, ["worker"])


def test_refresh_crashed_after_copying_and_after_approval_switches_exact_rows(
    stack_settings: Settings, milvus: MilvusGateway, demo_versions: dict[str, str], tmp_path: Path
) -> None:
    from deployments.promotions import refresh_parameters
    from tests.e2e.conftest import SMALL_POLICY, start
    from tests.e2e.test_refresh import GOLDEN, _edited_source
    from tests.faults.conftest import collection_ids, source_ids

    alias = "crash_flow"  # the pair the test above promoted; promoted here if it did not
    if milvus.alias_target(alias) is None:
        snap = start(stack_settings, promotion_params(demo_versions["tfidf"], alias))
        assert decide(stack_settings, snap, approve=True)["state_type"] == "COMPLETED"
    old = milvus.alias_target(alias)
    source, _ = _edited_source(tmp_path)
    armed = Path(os.environ[faults.ENV])
    faults.arm(armed, "refresh.copied")
    since = worker_log_size(stack_settings)
    params = refresh_parameters(str(source), GOLDEN, alias) | {"validation": SMALL_POLICY}
    with prefect_api.prefect_api(stack_settings):
        run = prefect_api.start_deployment(stack_settings, params, "refresh/weekly")
    snap = _crash_and_resume(stack_settings, run["id"], since)
    assert snap["state_type"] == "PAUSED", snap
    (candidate,) = [n for n, p in milvus.list_pairs() if p.flow_run_id == run["id"]]

    _approve_through_a_crash(stack_settings, snap, "refresh approved")
    assert milvus.alias_target(alias) == candidate
    states = {n: p.state for n, p in milvus.list_pairs() if group_of(p) == alias}
    assert states[candidate] == PairState.LIVE and states[old] == PairState.PREVIOUS, states
    assert list(states.values()).count(PairState.LIVE) == 1
    stored = collection_ids(milvus, candidate)  # no production row lost, none twice
    assert sorted(stored) == sorted(source_ids(source))
