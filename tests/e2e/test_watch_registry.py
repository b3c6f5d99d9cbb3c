"""The registry watcher deployment builds a version in the legacy Staging stage (which fires
no webhook) once, and leaves a denied one alone."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from deployments.promotions import answer
from indexpair.gateways import prefect as prefect_api
from indexpair.settings import Settings
from tests.conftest import MODEL_NAME
from tests.e2e.conftest import new_version_like

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
WATCHER = "watch-registry/watch-registry"


def watch(settings: Settings) -> dict[str, Any]:
    """One run of the watcher deployment on the test worker, waited for to its end."""
    # An unknown model in the list is logged and skipped, not fatal to the others.
    params = {"model_names": ["no-such-model", MODEL_NAME]}
    with prefect_api.prefect_api(settings):
        run = prefect_api.start_deployment(settings, params, deployment=WATCHER)
        done = prefect_api.wait(settings, run["id"], 300, until_paused=False)
    assert done["state_type"] == "COMPLETED", done
    return done


def promote_runs(settings: Settings, version: str) -> list[dict[str, Any]]:
    """Every promote run (any state) started for this version."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["promote"])))
    return [
        {"id": str(r.id), "state": r.state.name if r.state else "?"}
        for r in runs
        if r.parameters.get("model_version") == version
    ]


def test_watcher_builds_a_legacy_staging_version_once(
    stack_settings: Settings, demo_versions: dict[str, str], trigger_defaults: dict[str, Any]
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(stack_settings.mlflow_tracking_uri, stack_settings.mlflow_tracking_uri)
    version = new_version_like(stack_settings, demo_versions["tfidf"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(MODEL_NAME, version, "Staging")
    try:
        watch(stack_settings)
        (run,) = promote_runs(stack_settings, version)
        watch(stack_settings)  # the build is in flight: nothing new
        assert [r["id"] for r in promote_runs(stack_settings, version)] == [run["id"]]
        with prefect_api.prefect_api(stack_settings):
            snap = prefect_api.wait(stack_settings, run["id"], 600)
        assert snap["state_type"] == "PAUSED", snap
        denied = answer(stack_settings, run["id"], False, "pytest", "not this one")
        assert denied["state_name"] == "Denied"
        # Still in Staging, but its build was denied: the watcher does not rebuild it.
        watch(stack_settings)
        assert [r["id"] for r in promote_runs(stack_settings, version)] == [run["id"]]
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client.transition_model_version_stage(MODEL_NAME, version, "Archived")
