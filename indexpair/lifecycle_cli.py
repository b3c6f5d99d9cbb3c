"""``indexpair rollback``, ``gc`` and ``refresh``: the life cycle of a live pair.

Registered on ``app`` by :mod:`indexpair.cli`; shared helpers in :mod:`indexpair.cli_common`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from indexpair.cli_common import (
    DEMO_DATA,
    console,
    fail,
    report_run,
    require_files,
    settings_or_exit,
)
from indexpair.errors import ConfigError, IndexPairError


def rollback(
    alias: Annotated[str | None, typer.Option(help="Production alias")] = None,
    to: Annotated[
        str | None, typer.Option(help="Collection to go back to (default: latest previous)")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded on the MLflow version")] = "",
) -> None:
    """Point the alias back at the previous pair (runs the rollback flow in this process).

    In-process on purpose: the way back must not wait for a worker to pick it up. It is a
    Prefect flow run all the same, with its logs and artifact on the server.
    """
    from flows.rollback import rollback as rollback_flow
    from indexpair.gateways import prefect as prefect_api

    settings = settings_or_exit()
    try:
        prefect_api.require_api(settings)
        with prefect_api.prefect_api(settings):
            result = rollback_flow(alias=alias, to=to, reason=reason)
    except IndexPairError as exc:
        fail(exc)
    console.print(
        f"[bold green]rolled back[/] {result.alias}: {result.rolled_back_from} "
        f"(v{result.from_model_version}) → {result.collection} ({result.model_name} "
        f"v{result.model_version}); alias switch {result.switch_ms:.1f} ms"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def _policy(keep_previous: int, max_age_days: float, abandoned_after_hours: float) -> Any:
    from pydantic import ValidationError

    from tasks.retention import RetentionPolicy

    try:
        return RetentionPolicy(
            keep_previous=keep_previous,
            max_age_days=max_age_days,
            abandoned_after_hours=abandoned_after_hours,
        )
    except ValidationError as exc:
        bad = "; ".join(f"{e['loc'][0]}={e['input']!r}: {e['msg']}" for e in exc.errors())
        fail(ConfigError(f"bad retention policy: {bad}"))


def gc(
    apply: Annotated[bool, typer.Option("--apply", help="Drop for real, not a dry run")] = False,
    keep_previous: Annotated[int, typer.Option(help="Previous pairs kept per alias")] = 1,
    max_age_days: Annotated[float, typer.Option(help="Drop other unaliased pairs after")] = 7,
    abandoned_after_hours: Annotated[
        float, typer.Option(help="Drop failed or abandoned builds after")
    ] = 6,
) -> None:
    """Garbage collection: show (or with --apply, do) what retention drops, and why."""
    from flows.collect_garbage import collect_garbage
    from indexpair.gateways import prefect as prefect_api

    policy = _policy(keep_previous, max_age_days, abandoned_after_hours)
    settings = settings_or_exit()
    try:
        prefect_api.require_api(settings)
        with prefect_api.prefect_api(settings):
            verdicts = collect_garbage(policy=policy, dry_run=not apply)
    except IndexPairError as exc:
        fail(exc)
    table = Table("collection", "state", "age h", "rows", "action", "outcome", "why")
    for v in verdicts:
        age = "" if v.age_hours is None else f"{v.age_hours:.1f}"
        table.add_row(v.name, v.state, age, str(v.rows or ""), v.action, v.outcome, v.reason)
    console.print(table)


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

    settings = settings_or_exit()
    require_files(source, golden)
    params = refresh_parameters(source, golden, alias, auto_approve)
    try:
        snap = start_promotion(settings, params, wait, deployment=settings.refresh_deployment)
    except IndexPairError as exc:
        fail(exc)
    report_run(snap)


def reconcile(
    alias: Annotated[str | None, typer.Option(help="Only this alias (default: all)")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Write the fixes, not a dry run")] = False,
) -> None:
    """Compare pair states and the MLflow production alias and tags with the alias truth;
    show what disagrees, and with --apply repair it (each alias under its lock)."""
    from indexpair.gateways import prefect as prefect_api
    from indexpair.pair import check_name
    from indexpair.reconcile import reconcile as run_reconcile
    from tasks.reconcile import describe

    settings = settings_or_exit()
    try:
        if alias is not None:
            check_name(alias, "alias name")
        if apply:
            prefect_api.require_api(settings)
        with prefect_api.prefect_api(settings):
            fixes = run_reconcile(settings, alias, apply=apply)
    except IndexPairError as exc:
        fail(exc)
    for fix in fixes:
        console.print(describe(fix))
    if not fixes:
        console.print("[bold green]every record agrees with the aliases[/]")
    elif not apply:
        console.print(f"{len(fixes)} to fix; run again with --apply to write them")
    if any(f.error for f in fixes):
        raise typer.Exit(1)


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

    settings = settings_or_exit()
    try:
        prefect_api.require_api(settings)
        with prefect_api.prefect_api(settings):
            result = switch_flow(collection=collection, alias=alias)
    except IndexPairError as exc:
        fail(exc)
    console.print(
        f"[bold green]switched[/] {result.alias}: {result.previous} → {result.collection} "
        f"({result.model_name} v{result.model_version}); alias switch {result.switch_ms:.1f} ms"
    )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
