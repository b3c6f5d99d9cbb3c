"""``indexpair promote | approve | deny | refresh | switch-approved``: a candidate pair's
way to production (start the deployment, answer its approval, switch it)."""

from __future__ import annotations

import getpass
import os
from typing import Annotated, Any

import typer

from cli.common import DEMO_DATA, console, report_run, require_files, startup_settings


def promote(
    model: Annotated[str, typer.Option(help="Registered model name")] = "product-embedder",
    version: Annotated[str | None, typer.Option(help="Explicit version (default: staging)")] = None,
    source: Annotated[
        str, typer.Option(help="Corpus file (Parquet/CSV/JSONL, local or s3://)")
    ] = str(DEMO_DATA / "products.parquet"),
    golden: Annotated[str, typer.Option(help="Golden-query JSON file")] = str(
        DEMO_DATA / "golden_queries.json"
    ),
    alias: Annotated[str | None, typer.Option(help="Production alias")] = None,
    approval_timeout: Annotated[int, typer.Option(help="Seconds to wait for approval")] = 86_400,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the run to suspend")] = 1800,
) -> None:
    """Start the promote deployment; return when it awaits approval or ends."""
    from deployments.promotions import promotion_parameters, start_promotion

    settings = startup_settings()
    require_files(source, golden)
    params = promotion_parameters(
        model, source, golden, version, alias, approval_timeout_s=approval_timeout
    )

    def started(run: dict[str, Any]) -> None:
        console.print(
            f"started {run['name']} ({run['id']}): {run['url']}\n"
            "building and validating; waiting until it asks for approval ..."
        )

    report_run(start_promotion(settings, params, wait, on_started=started))


def _decide(run_id: str, approve: bool, approver: str | None, comment: str, wait: float) -> None:
    from deployments.promotions import answer

    settings = startup_settings()
    who = approver or os.environ.get("INDEXPAIR_APPROVER") or getpass.getuser()
    console.print(f"{'approving' if approve else 'denying'} {run_id} as {who}")
    report_run(answer(settings, run_id, approve, who, comment, wait))


def approve(
    run_id: str,
    approver: Annotated[str | None, typer.Option(help="Who approves")] = None,
    comment: Annotated[str, typer.Option(help="Why")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the switch")] = 600,
) -> None:
    """Approve a candidate waiting in RUN_ID (the same API the Prefect UI form uses)."""
    _decide(run_id, True, approver, comment, wait)


def deny(
    run_id: str,
    approver: Annotated[str | None, typer.Option(help="Who denies")] = None,
    comment: Annotated[str, typer.Option(help="Why")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the clean-up")] = 600,
) -> None:
    """Deny a candidate waiting in RUN_ID; its collection is removed."""
    _decide(run_id, False, approver, comment, wait)


def refresh(
    source: Annotated[
        str, typer.Option(help="Corpus as it is now (Parquet/CSV/JSONL, local or s3://)")
    ] = str(DEMO_DATA / "products.parquet"),
    golden: Annotated[str, typer.Option(help="Golden-query JSON file")] = str(
        DEMO_DATA / "golden_queries.json"
    ),
    alias: Annotated[str | None, typer.Option(help="Production alias")] = None,
    auto_approve: Annotated[
        bool, typer.Option(help="Approve by itself when no metric regresses")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the run to suspend")] = 1800,
) -> None:
    """Refresh the live pair from changed data (start the refresh deployment): re-embed
    only new and changed rows, then validate and ask for approval like a promotion."""
    from deployments.promotions import refresh_parameters, start_promotion

    settings = startup_settings()
    require_files(source, golden)
    params = refresh_parameters(source, golden, alias, auto_approve)
    report_run(start_promotion(settings, params, wait, deployment=settings.refresh_deployment))


def switch_approved(
    collection: Annotated[str, typer.Argument(help="The approved candidate collection")],
    alias: Annotated[
        str | None, typer.Option(help="Alias (default: the one it was built for)")
    ] = None,
) -> None:
    """Switch an approved candidate that could not be switched (the alias moved, or Milvus
    failed): validated again against the pair live now, then the locked switch."""
    from flows.switch_approved import switch_approved as switch_flow
    from indexpair.gateways import prefect as prefect_api

    settings = startup_settings()
    prefect_api.require_api(settings)
    with prefect_api.prefect_api(settings):
        result = switch_flow(collection=collection, alias=alias)
    console.print(
        f"[bold green]switched[/] {result.alias}: {result.previous} → {result.collection} "
        f"({result.model_name} v{result.model_version}); alias switch {result.switch_ms:.1f} ms"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
