"""Triggers through the real Prefect server: one build per version, and the CircleCI jobs'
exact commands run by hand through approval."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from deployments.promotions import answer
from indexpair import triggers
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.settings import Settings
from indexpair.triggers import trigger_promotion
from tests.conftest import MODEL_NAME
from tests.e2e.conftest import TRIGGER_ALIAS, build_name, new_version_like
from tests.support.circleci import JobResult, fake_circleci_api, load_config, run_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture()
def exit_stack() -> Iterator[ExitStack]:
    with ExitStack() as contexts:
        yield contexts


def wait_paused(settings: Settings, flow_run_id: str) -> dict[str, Any]:
    with prefect_api.prefect_api(settings):
        return prefect_api.wait(settings, flow_run_id, 600)


def test_concurrent_triggers_start_one_build(
    stack_settings: Settings, demo_versions: dict[str, str], trigger_defaults: dict[str, Any]
) -> None:
    version = new_version_like(stack_settings, demo_versions["tfidf"])
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: trigger_promotion(stack_settings, MODEL_NAME, version), range(4))
        )
    started = [r for r in results if r.outcome == "started"]
    assert len(started) == 1, [r.message for r in results]
    assert {r.run_id for r in results} == {started[0].run_id}
    assert sorted(r.outcome for r in results) == ["in_flight"] * 3 + ["started"]
    run_id = str(started[0].run_id)
    snap = wait_paused(stack_settings, run_id)
    assert snap["state_type"] == "PAUSED", snap
    # The run got only the version from the trigger; the rest is the deployment's default.
    assert snap["parameters"]["model_version"] == version
    assert snap["parameters"]["alias"] == TRIGGER_ALIAS
    again = trigger_promotion(stack_settings, MODEL_NAME, version)
    assert (again.outcome, again.run_id) == ("in_flight", run_id)
    assert "already in flight (Suspended)" in again.message
    done = answer(stack_settings, run_id, False, "pytest", "clean up")
    assert (done["state_type"], done["state_name"]) == ("COMPLETED", "Denied")
    # A denied build is gone and blocks nothing: the version can be built again later.
    with prefect_api.prefect_api(stack_settings):  # as trigger_promotion calls it
        assert triggers._decide(stack_settings, MODEL_NAME, version) is None


def job_env(settings: Settings) -> dict[str, str]:
    """The job's environment: the context (the stack's endpoints) and the venv on PATH."""
    from indexpair.stack.specs import service_env

    return {
        **service_env(settings),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CIRCLE_USERNAME": "ci-alice",
    }


def test_circleci_jobs_through_approval(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    trigger_defaults: dict[str, Any],
    tmp_path: Path,
    exit_stack: ExitStack,
) -> None:
    version = new_version_like(stack_settings, demo_versions["tfidf"])
    config = load_config()
    pipeline = {
        "number": 42,
        "parameters": {"model_name": MODEL_NAME, "model_version": version},
    }
    env = job_env(stack_settings)
    workspace = tmp_path / "workspace"
    # CircleCI's API, as the approve job reads it: bob approved the approval job, while
    # the pipeline was triggered by ci-alice ($CIRCLE_USERNAME).
    circleci = exit_stack.enter_context(fake_circleci_api("circle-token-e2e-93b1"))
    workflow = "8e9f1c4a-3b6d-4f0e-9a51-2c7d8e6f1b30"
    circleci.approval(workflow, "hold-for-approval", "bob-approver", "user-bob")
    env |= {
        "CIRCLE_WORKFLOW_ID": workflow,
        "INDEXPAIR_CIRCLECI_API_URL": circleci.url,
        "INDEXPAIR_CIRCLECI_TOKEN": circleci.token,
    }

    start = run_job(config, "start-promotion", pipeline, tmp_path / "start", workspace, env)
    assert start.returncode == 0, start.output
    out = " ".join(start.output.split())
    assert f") for {MODEL_NAME} v{version}" in out and out.startswith("started ")
    assert "awaiting approval" in out and stack_settings.prefect_ui_url in out
    run_id = (workspace / "flow-run-id").read_text().strip()
    assert f"/runs/flow-run/{run_id}" in out

    # A second pipeline for the same version starts nothing and follows the same run.
    other = tmp_path / "workspace-2"
    second = run_job(config, "start-promotion", pipeline, tmp_path / "start-2", other, env)
    assert second.returncode == 0, second.output
    assert "already in flight" in " ".join(second.output.split())
    assert (other / "flow-run-id").read_text().strip() == run_id

    # The Prefect-UI workflow's job waits meanwhile; the approval job answers.
    waited: list[JobResult] = []
    waiter = threading.Thread(
        target=lambda: waited.append(
            run_job(config, "wait-for-approval", pipeline, tmp_path / "wait", workspace, env)
        )
    )
    waiter.start()
    approve = run_job(config, "approve-promotion", pipeline, tmp_path / "approve", workspace, env)
    waiter.join(600)
    assert approve.returncode == 0, approve.output
    assert "approval by 'bob-approver' sent" in approve.output
    assert waited and waited[0].returncode == 0, waited[0].output if waited else "no result"
    assert "is Completed" in waited[0].output

    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, version)
    assert tags["indexpair.approved_by"] == "bob-approver"
    assert tags["indexpair.approval_comment"] == "approved in CircleCI pipeline 42"
    with MilvusGateway(stack_settings) as milvus:
        assert milvus.alias_target(TRIGGER_ALIAS) == build_name({"id": run_id}, version)
    # Once the pair is live, another pipeline has nothing to build or approve.
    third_ws = tmp_path / "workspace-3"
    third = run_job(config, "start-promotion", pipeline, tmp_path / "start-3", third_ws, env)
    assert third.returncode == 0, third.output
    assert "is live" in third.output and "nothing to build" in third.output
    after = run_job(config, "approve-promotion", pipeline, tmp_path / "approve-3", third_ws, env)
    assert after.returncode == 0, after.output
    assert "names no run" in " ".join(after.output.split())


def test_start_job_fails_with_the_runs_state_and_message(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    trigger_defaults: dict[str, Any],
    tmp_path: Path,
) -> None:
    config = load_config()
    # A version the registry does not have: the run starts, then fails at its first step.
    pipeline = {"number": 43, "parameters": {"model_name": MODEL_NAME, "model_version": "999"}}
    env = job_env(stack_settings)
    result = run_job(config, "start-promotion", pipeline, tmp_path, tmp_path / "ws", env)
    assert result.returncode == 1, result.output
    out = " ".join(result.output.split())
    assert "is Failed" in out and "model 'product-embedder' has no version '999'" in out
    assert "promotion did not complete: Failed" in out


def test_prefect_down_starts_nothing(stack_settings: Settings, tmp_path: Path) -> None:
    config = load_config()
    pipeline = {"number": 44, "parameters": {"model_name": MODEL_NAME, "model_version": "1"}}
    env = {**job_env(stack_settings), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    result = run_job(config, "start-promotion", pipeline, tmp_path, tmp_path / "ws", env)
    assert result.returncode == 1
    assert "Prefect API at http://127.0.0.1:9/api is unreachable" in " ".join(result.output.split())
    assert not (tmp_path / "workspace" / "flow-run-id").exists()
