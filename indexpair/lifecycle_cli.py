"""``indexpair rollback``, ``gc`` and ``refresh``: the life cycle of a live pair.

Imported at the end of :mod:`indexpair.cli`, which owns ``app`` and the shared helpers.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from indexpair.cli import DEMO_DATA, _fail, _report_run, _require_files, _settings, app, console
from indexpair.errors import ConfigError, IndexPairError


@app.command()
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

    settings = _settings()
    try:
        prefect_api.require_api(settings)
        with prefect_api.prefect_api(settings):
            result = rollback_flow(alias=alias, to=to, reason=reason)
    except IndexPairError as exc:
        _fail(exc)
    console.print(
        f"[bold green]rolled back[/] {result.alias}: {result.rolled_back_from} "
        f"(v{result.from_model_version}) → {result.collection} ({result.model_name} "
        f"v{result.model_version}); alias switch {result.switch_ms:.1f} ms"
    )


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
        _fail(ConfigError(f"bad retention policy: {bad}"))


@app.command()
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
    settings = _settings()
    try:
        prefect_api.require_api(settings)
        with prefect_api.prefect_api(settings):
            verdicts = collect_garbage(policy=policy, dry_run=not apply)
    except IndexPairError as exc:
        _fail(exc)
    table = Table("collection", "state", "age h", "rows", "action", "outcome", "why")
    for v in verdicts:
        age = "" if v.age_hours is None else f"{v.age_hours:.1f}"
        table.add_row(v.name, v.state, age, str(v.rows or ""), v.action, v.outcome, v.reason)
    console.print(table)


@app.command()
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

    settings = _settings()
    _require_files(source, golden)
    params = refresh_parameters(source, golden, alias, auto_approve)
    try:
        snap = start_promotion(settings, params, wait, deployment=settings.refresh_deployment)
    except IndexPairError as exc:
        _fail(exc)
    _report_run(snap)
