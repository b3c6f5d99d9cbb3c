"""A real `mlflow server` delivers a real webhook to the receiver on loopback; the staging
alias set on a version starts one promote build, however often it is announced."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deployments.promotions import answer
from indexpair.gateways import prefect as prefect_api
from indexpair.settings import Settings
from indexpair.stack.specs import service_env
from tests.conftest import MODEL_NAME, free_port
from tests.e2e.conftest import new_version_like, wait_for
from tests.support.webhooks import INDEXPAIR, receiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
SECRET = "whsec-e2e-0c4b7a19d2"
HOOK = "indexpair-e2e"


def promote_runs(settings: Settings, version: str) -> list[dict[str, Any]]:
    """Active promote runs building this version."""
    with prefect_api.prefect_api(settings):
        runs = prefect_api.active_runs("promote")
    return [r for r in runs if r["parameters"].get("model_version") == version]


def test_staging_alias_in_mlflow_starts_one_build(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    trigger_defaults: dict[str, Any],
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(stack_settings.mlflow_tracking_uri, stack_settings.mlflow_tracking_uri)
    version = new_version_like(stack_settings, demo_versions["tfidf"])
    env = {
        **service_env(stack_settings),
        "INDEXPAIR_WEBHOOK_SECRET": SECRET,
        "INDEXPAIR_WEBHOOK_TARGET": "prefect",
        "INDEXPAIR_TRIGGER_MODELS": MODEL_NAME,
    }
    log = tmp_path / "receiver.log"
    with receiver(free_port(), env, log) as url:
        registered = subprocess.run(  # noqa: S603 - our own CLI, as the README shows it
            [INDEXPAIR, "webhook", "register", "--url", url, "--name", HOOK],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert registered.returncode == 0, registered.stdout + registered.stderr
        (hook,) = [h for h in client.list_webhooks() if h.name == HOOK]
        try:
            # MLflow's own test delivery (an example payload for 'example_model'), signed by
            # the server with the stored secret: verified, then ignored.
            probe = client.test_webhook(hook.webhook_id)
            assert probe.success and probe.response_status == 200, probe
            assert "alias 'example_alias' is not 'staging'" in str(probe.response_body)

            client.set_registered_model_alias(MODEL_NAME, "staging", version)
            (run,) = wait_for(lambda: promote_runs(stack_settings, version), 90, "a promote run")
            # Announced again (a new delivery, as a webhook retry or a second alias set is):
            client.set_registered_model_alias(MODEL_NAME, "staging", version)
            wait_for(lambda: "already in flight" in log.read_text(), 90, "the second delivery")
            assert [r["id"] for r in promote_runs(stack_settings, version)] == [run["id"]]

            with prefect_api.prefect_api(stack_settings):
                snap = prefect_api.wait(stack_settings, run["id"], 600)
            assert snap["state_type"] == "PAUSED", snap
            assert answer(stack_settings, run["id"], False, "pytest", "clean up")["state_name"] == (
                "Denied"
            )
        finally:
            client.delete_registered_model_alias(MODEL_NAME, "staging")
            client.delete_webhook(hook.webhook_id)
    text = log.read_text()
    assert text.count(f"{MODEL_NAME} v{version} at alias 'staging'") == 2
    assert "started " in text and f"for {MODEL_NAME} v{version}" in text
    assert SECRET not in text
