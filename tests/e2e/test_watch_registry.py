"""The registry watcher builds a version in the legacy Staging stage (which fires no
webhook) once, and leaves a denied one alone."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from deployments.promotions import answer
from flows.watch_registry import watch_registry
from indexpair.gateways import prefect as prefect_api
from indexpair.settings import Settings
from tests.conftest import MODEL_NAME
from tests.e2e.conftest import new_version_like

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def watch(settings: Settings, version: str) -> list[Any]:
    """One watcher run (the flow, on the test Prefect server); its results for ``version``."""
    with prefect_api.prefect_api(settings):
        # An unknown model in the list is logged and skipped, not fatal to the others.
        results = watch_registry(model_names=["no-such-model", MODEL_NAME])
    return [r for r in results if r.model_version == version]


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
        (first,) = watch(stack_settings, version)
        assert first.outcome == "started", first
        (second,) = watch(stack_settings, version)
        assert (second.outcome, second.run_id) == ("in_flight", first.run_id)
        with prefect_api.prefect_api(stack_settings):
            snap = prefect_api.wait(stack_settings, str(first.run_id), 600)
        assert snap["state_type"] == "PAUSED", snap
        denied = answer(stack_settings, str(first.run_id), False, "pytest", "not this one")
        assert denied["state_name"] == "Denied"
        # Still in Staging, but its build was denied: the watcher does not rebuild it.
        assert watch(stack_settings, version) == []
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            client.transition_model_version_stage(MODEL_NAME, version, "Archived")
