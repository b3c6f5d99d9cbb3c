"""Secrets never leak: a whole promotion (from S3, through the worker) and a failing one run
with known secret values; every log line, artifact, MLflow record, error message and the
`status --json` output are searched for them. The approval is recorded in both systems."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest

from indexpair import stack
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.settings import Settings
from indexpair.stack import procs
from indexpair.stack.specs import service_env
from tests.conftest import MODEL_NAME, PROJECT_DIR
from tests.e2e.conftest import build_name, decide, promotion_params, start
from tests.support.s3 import S3Source, environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SECRETS = {
    "MILVUS_TOKEN": "root:milvus-secret-5d1c8e0b",  # Milvus Lite accepts any token
    "PREFECT_API_KEY": "pnu_prefectsecret9a7b3c2d1e",  # the open-source server ignores it
    "INDEXPAIR_CIRCLECI_TOKEN": "circleci-secret-0f4e2a6b",
    "INDEXPAIR_WEBHOOK_SECRET": "webhook-secret-8c3d7e1f",
}


def restart_worker(settings: Settings) -> None:
    (worker,) = stack.status(settings, ["worker"])
    if worker.pid is not None:
        procs.terminate(worker.pid, 15)
        (settings.state_dir / "pids" / "worker.pid").unlink(missing_ok=True)
    stack.up(settings, PROJECT_DIR, services=["worker"])


@pytest.fixture()
def secret_worker(stack_settings: Settings, s3_source: S3Source) -> Iterator[dict[str, str]]:
    """The worker restarted with every secret in its environment (the S3 keys are real:
    the S3 server checks them); restarted without them afterwards."""
    secrets = {
        **SECRETS,
        "AWS_ACCESS_KEY_ID": s3_source.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_source.secret_key,
    }
    with environment(SECRETS):
        restart_worker(stack_settings)
        (worker,) = stack.status(stack_settings, ["worker"])
        assert worker.pid is not None
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes()
        for value in secrets.values():  # the run really has them
            assert value.encode() in environ
        yield secrets
    restart_worker(stack_settings)


def flow_run_logs(settings: Settings, flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return [log.message for log in logs]


def flow_run_artifacts(settings: Settings, flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    return [f"{a.key} {a.description} {a.data}" for a in found]


def status_json(settings: Settings, secrets: dict[str, str]) -> str:
    env = {**os.environ, **service_env(settings), **secrets, "PYTHONPATH": str(PROJECT_DIR)}
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "cli.main", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_no_secret_in_logs_artifacts_errors_or_status(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    s3_source: S3Source,
    secret_worker: dict[str, str],
) -> None:
    alias = "e2e_secrets"
    params = promotion_params(demo_versions["tfidf"], alias)
    params["source"] = {"uri": s3_source.uri("parquet")}
    snap = start(stack_settings, params)
    assert snap["state_type"] == "PAUSED", snap
    done = decide(stack_settings, snap, approve=True, approver="sec-approver")
    assert done["state_type"] == "COMPLETED", done
    assert milvus.alias_target(alias) == build_name(snap, demo_versions["tfidf"])

    bad = promotion_params(demo_versions["tfidf"], alias)
    bad["source"] = {"uri": f"s3://{s3_source.bucket}/catalog/missing.parquet"}
    failed = start(stack_settings, bad)
    assert failed["state_type"] == "FAILED", failed
    assert "missing.parquet" in failed["message"]

    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["tfidf"])
    logs = flow_run_logs(stack_settings, snap["id"])
    # The approval is on record in Prefect (the run's logs) and on the MLflow version.
    assert any("approved by sec-approver" in line for line in logs), logs[-5:]
    assert tags["indexpair.approved_by"] == "sec-approver"
    assert tags["indexpair.approved_at"]

    captured = {
        "flow-run logs": "\n".join(logs + flow_run_logs(stack_settings, failed["id"])),
        "artifacts": "\n".join(
            flow_run_artifacts(stack_settings, snap["id"])
            + flow_run_artifacts(stack_settings, failed["id"])
        ),
        "run messages": f"{done['message']}\n{failed['message']}",
        "MLflow tags": repr(tags),
        "status --json": status_json(stack_settings, secret_worker),
    }
    for log in sorted((stack_settings.state_dir / "logs").glob("*.log")):
        captured[str(log.name)] = log.read_text(errors="replace")
    assert len(captured["worker.log"]) > 1000  # the logs were really read
    for where, text in captured.items():
        for name, value in secret_worker.items():
            assert value not in text, f"{name} appears in {where}"
