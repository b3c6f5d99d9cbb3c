"""The CI side of a promotion: start it, wait for the approval point, approve, wait for the end.

`prefect deployment run --watch` never returns on a suspended run, so CI jobs use these
calls (through ``indexpair trigger ...``) instead. The flow-run id travels between jobs
in a file (a CircleCI workspace).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from indexpair.errors import IndexPairError
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.circleci import CircleCiGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.gateways.prefect import RunSnapshot
from indexpair.settings import Settings
from indexpair.triggers import TriggerResult, trigger_promotion

HEARTBEAT_S = 60.0
# Exit codes of the CI commands.
OK, FAILED, STILL_RUNNING = 0, 1, 3


def write_run_id(path: Path, flow_run_id: str) -> None:
    """Store the flow-run id for the next job (creates the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(flow_run_id + "\n" if flow_run_id else "", encoding="utf-8")


def read_run_id(path: Path) -> str | None:
    """The flow-run id a previous job stored; None when it stored none (the version
    already had a live or previous pair, so nothing was started).

    Raises:
        IndexPairError: the file is missing or holds no flow-run id.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexPairError(
            f"run-id file {str(path)!r} does not exist; did the start job persist it "
            "to the workspace?"
        ) from None
    return str(prefect_api.run_id(text)) if text else None


def resolve_version(settings: Settings, model_name: str, version: str | None) -> str:
    """The version to build: the explicit one, else the staging alias, else stage Staging.

    Raises:
        RegistryError: nothing to build for this model.
    """
    with MlflowRegistry(settings) as registry:
        return version or registry.resolve_version(model_name).version


def watch(
    settings: Settings,
    flow_run_id: str,
    timeout_s: float,
    until_paused: bool,
    heartbeat: Callable[[RunSnapshot], None] | None = None,
    poll_s: float = 2.0,
) -> RunSnapshot:
    """Poll a run until it awaits approval (if asked) or is final, or the timeout passes.

    ``heartbeat`` hears the current state every `HEARTBEAT_S` (CI kills silent jobs).
    """
    deadline = time.monotonic() + timeout_s
    next_beat = time.monotonic() + HEARTBEAT_S
    with prefect_api.prefect_api(settings):
        while True:
            snap = prefect_api.snapshot(settings, flow_run_id)
            if snap.final or (until_paused and snap.awaiting_approval):
                return snap
            now = time.monotonic()
            if now >= deadline:
                return snap
            if heartbeat is not None and now >= next_beat:
                heartbeat(snap)
                next_beat = now + HEARTBEAT_S
            time.sleep(poll_s)


def start(settings: Settings, model_name: str, version: str | None) -> TriggerResult:
    """Start (or find in flight) the promotion of one model version.

    Raises:
        IndexPairError: Prefect, Milvus or MLflow unreachable, or no such version.
    """
    with prefect_api.prefect_api(settings):
        prefect_api.require_api(settings)
    return trigger_promotion(settings, model_name, resolve_version(settings, model_name, version))


def approver_of_job(settings: Settings, workflow_id: str, job_name: str) -> str:
    """Who approved the CircleCI approval job ``job_name`` of this workflow (their login).

    Read from CircleCI's API, never from ``$CIRCLE_USERNAME`` (the user who triggered the
    pipeline, often a bot or the webhook). There is no fallback: when the API cannot say
    who approved, the job fails and nothing is approved, because an approval recorded
    under the wrong name is worse than a job to re-run (the run keeps waiting).

    Raises:
        IndexPairError: no workflow id, no token, the API unreadable, or the job not
            approved.
    """
    if not workflow_id.strip():
        raise IndexPairError(
            "no CircleCI workflow id (CIRCLE_WORKFLOW_ID is empty); cannot read who "
            f"approved {job_name!r}"
        )
    with CircleCiGateway(settings) as circleci:
        return circleci.approver(workflow_id.strip(), job_name)


def approve(settings: Settings, flow_run_id: str, approver: str, comment: str) -> RunSnapshot:
    """Resume a waiting run with an approval; a run decided already (in the Prefect UI)
    is left as it is.

    Returns:
        The run's state right after the approval was sent (or found decided).

    Raises:
        IndexPairError: no approver, or the run does not exist.
    """
    if not approver.strip():
        raise IndexPairError("an approval needs an approver name (--approver or --approval-job)")
    with prefect_api.prefect_api(settings):
        snap = prefect_api.snapshot(settings, flow_run_id)
        if not snap.awaiting_approval:
            return snap
        decision = {"approve": True, "approver": approver, "comment": comment}
        prefect_api.answer_form(settings, flow_run_id, decision)
        return prefect_api.snapshot(settings, flow_run_id)


def exit_code(snap: RunSnapshot, until_paused: bool) -> int:
    """Exit status for a CI job: 0 when the run got where the job waits for.

    A run suspended for approval is a success for the start job; for the later jobs only
    a completed promotion is (``Denied`` ends Completed, but the model was not promoted).
    """
    if until_paused and snap.awaiting_approval:
        return OK
    if not snap.final:
        return STILL_RUNNING
    if snap["state_type"] == "COMPLETED" and snap["state_name"] != "Denied":
        return OK
    return FAILED
