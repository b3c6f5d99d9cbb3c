"""``indexpair trigger ...`` (the CI client) and ``indexpair webhook ...`` (the receiver).

Added to ``app`` by :mod:`cli.main`; shared helpers in :mod:`cli.common`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from cli.common import console, startup_settings
from indexpair.errors import IndexPairError
from indexpair.gateways.prefect import RunSnapshot

trigger_app = typer.Typer(
    help="Start a promotion from CI and carry it through approval (Prefect API).",
    no_args_is_help=True,
)
webhook_app = typer.Typer(help="The MLflow webhook receiver.", no_args_is_help=True)

RunIdFile = Annotated[
    Path, typer.Option("--run-id-file", help="File holding the flow-run id (CI workspace)")
]


def _show(snap: RunSnapshot) -> None:
    message = f": {snap['message']}" if snap["message"] else ""
    console.print(f"flow run {snap['name']} ({snap['id']}) is {snap['state_name']}{message}")
    console.print(f"Prefect UI: {snap['url']}")


def _heartbeat(snap: RunSnapshot) -> None:
    console.print(f"... still {snap['state_name']}: {snap['url']}")


def _finish(snap: RunSnapshot, until_paused: bool) -> None:
    from deployments.ci import OK, STILL_RUNNING, exit_code

    _show(snap)
    code = exit_code(snap, until_paused)
    if code == OK and snap.awaiting_approval:
        console.print(f"[bold yellow]awaiting approval[/]: {snap['url']}")
    elif code == STILL_RUNNING:
        console.print("[yellow]gave up waiting; the run goes on[/]")
    elif code != OK:
        console.print(f"[bold red]promotion did not complete: {snap['state_name']}[/]")
    raise typer.Exit(code)


def _nothing_started(run_id_file: Path) -> NoReturn:
    console.print(f"{run_id_file} names no run: the start job found the pair built already")
    raise typer.Exit(0)


@trigger_app.command("start")
def trigger_start(
    model: Annotated[str, typer.Option(help="Registered model name")],
    version: Annotated[
        str, typer.Option(help="Model version; empty: the staging alias, then stage Staging")
    ] = "",
    run_id_file: RunIdFile = Path("workspace/flow-run-id"),
    wait: Annotated[float, typer.Option(help="Seconds to wait for the approval point")] = 3600,
) -> None:
    """Start the promote deployment (once per version); return when it awaits approval.

    Exit 0 when the run is suspended awaiting approval, 1 when it failed (its state and
    message are printed), 3 when it is still running after --wait seconds.
    """
    from deployments import ci

    settings = startup_settings()
    result = ci.start(settings, model, version or None)
    console.print(result.message)
    # No run id when a live or previous pair of this version exists: the later jobs
    # find an empty file and have nothing to approve.
    ci.write_run_id(run_id_file, result.run_id or "")
    if result.run_id is None:
        console.print("nothing to build")
        raise typer.Exit(0)
    console.print(f"flow-run id written to {run_id_file}; Prefect UI: {result.run_url}")
    _finish(ci.watch(settings, result.run_id, wait, True, _heartbeat), until_paused=True)


@trigger_app.command("approve")
def trigger_approve(
    run_id_file: RunIdFile = Path("workspace/flow-run-id"),
    approver: Annotated[str, typer.Option(help="Who approves (a name or e-mail)")] = "",
    approval_job: Annotated[
        str,
        typer.Option(
            help="Read the approver from this CircleCI approval job of the workflow "
            "$CIRCLE_WORKFLOW_ID (CircleCI API; needs INDEXPAIR_CIRCLECI_TOKEN)"
        ),
    ] = "",
    comment: Annotated[str, typer.Option(help="Recorded with the approval")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the switch")] = 1800,
) -> None:
    """Approve the waiting run, then wait until it completes (exit 0 only if promoted).

    A run already decided in the Prefect UI is not answered again; its end is awaited.
    """
    from deployments import ci

    settings = startup_settings()
    if approver and approval_job:
        raise IndexPairError("give --approver or --approval-job, not both")
    flow_run_id = ci.read_run_id(run_id_file)
    if flow_run_id is None:
        _nothing_started(run_id_file)
    who = approver
    if approval_job:
        workflow = os.environ.get("CIRCLE_WORKFLOW_ID", "")
        who = ci.approver_of_job(settings, workflow, approval_job)
        console.print(f"{approval_job!r} of workflow {workflow} was approved by {who!r}")
    snap = ci.approve(settings, flow_run_id, who, comment or "approved in CircleCI")
    console.print(f"approval by {who!r} sent; run is {snap['state_name']}")
    _finish(ci.watch(settings, flow_run_id, wait, False, _heartbeat), until_paused=False)


@trigger_app.command("wait")
def trigger_wait(
    run_id_file: RunIdFile = Path("workspace/flow-run-id"),
    wait: Annotated[float, typer.Option(help="Seconds to wait for the decision")] = 14_400,
) -> None:
    """Wait until the run is decided (e.g. in the Prefect UI) and ends; exit 0 if promoted."""
    from deployments import ci

    settings = startup_settings()
    flow_run_id = ci.read_run_id(run_id_file)
    if flow_run_id is None:
        _nothing_started(run_id_file)
    snap = ci.watch(settings, flow_run_id, wait, False, _heartbeat)
    _finish(snap, until_paused=False)


@webhook_app.command("serve")
def webhook_serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8787,
) -> None:
    """Serve the MLflow webhook receiver (POST /mlflow/webhook)."""
    import uvicorn

    from deployments.webhook import create_app

    settings = startup_settings()
    logging.getLogger("indexpair").setLevel(logging.INFO)
    logging.getLogger("deployments").setLevel(logging.INFO)
    application = create_app(settings)
    console.print(f"receiving MLflow webhooks on http://{host}:{port}/mlflow/webhook")
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=True)


@webhook_app.command("register")
def webhook_register(
    url: Annotated[
        str, typer.Option(help="Receiver URL, e.g. https://hooks.example/mlflow/webhook")
    ],
    name: Annotated[str, typer.Option(help="Webhook name in MLflow")] = "indexpair-promote",
) -> None:
    """Register (or re-point) the MLflow webhook for model_version_alias.created.

    The signing secret is INDEXPAIR_WEBHOOK_SECRET, the same the receiver verifies with.
    """
    from mlflow.exceptions import MlflowException

    from indexpair.gateways.mlflow import MlflowRegistry

    settings = startup_settings()
    if settings.webhook_secret is None:
        raise IndexPairError("INDEXPAIR_WEBHOOK_SECRET is not set")
    try:
        with MlflowRegistry(settings) as registry:
            hook_id = registry.register_webhook(
                name, url, settings.webhook_secret.get_secret_value()
            )
    except MlflowException as exc:
        raise IndexPairError(
            f"MLflow at {settings.mlflow_tracking_uri} refused the webhook: {exc}"
        ) from exc
    console.print(f"webhook {name} ({hook_id}) -> {url} for model_version_alias.created")
