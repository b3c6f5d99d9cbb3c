"""``indexpair status | rollback | gc | cleanup | reconcile``: the life cycle of the live
pair and of the collections kept beside it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.common import console, startup_settings
from indexpair.errors import ConfigError, IndexPairError
from indexpair.settings import Settings


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

    settings = startup_settings()
    prefect_api.require_api(settings)
    with prefect_api.prefect_api(settings):
        result = rollback_flow(alias=alias, to=to, reason=reason)
    console.print(f"[bold green]rolled back[/] {result.summary()}")
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
        raise ConfigError(f"bad retention policy: {bad}") from None


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
    settings = startup_settings()
    prefect_api.require_api(settings)
    with prefect_api.prefect_api(settings):
        verdicts = collect_garbage(policy=policy, dry_run=not apply)
    table = Table("collection", "state", "age h", "rows", "action", "outcome", "why")
    for v in verdicts:
        age = "" if v.age_hours is None else f"{v.age_hours:.1f}"
        table.add_row(v.name, v.state, age, str(v.rows or ""), v.action, v.outcome, v.reason)
    console.print(table)


def cleanup() -> None:
    """Remove builds whose flow run ended without finishing them (e.g. approval timeout)
    more than 6 h ago (the GC grace period); a build whose run Prefect does not know is
    kept (see `indexpair gc` for every verdict)."""
    from indexpair.gateways import prefect as prefect_api
    from tasks.retention import reap_abandoned

    settings = startup_settings()
    with prefect_api.prefect_api(settings):
        reaped = reap_abandoned(settings)
    console.print("removed: " + (", ".join(reaped) or "nothing abandoned"))


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

    settings = startup_settings()
    if alias is not None:
        check_name(alias, "alias name")
    if apply:
        prefect_api.require_api(settings)
    with prefect_api.prefect_api(settings):
        fixes = run_reconcile(settings, alias, apply=apply)
    for fix in fixes:
        console.print(describe(fix))
    if not fixes:
        console.print("[bold green]every record agrees with the aliases[/]")
    elif not apply:
        console.print(f"{len(fixes)} to fix; run again with --apply to write them")
    if any(f.error for f in fixes):
        raise typer.Exit(1)


def _add_retention(settings: Settings, collections: list[dict[str, Any]]) -> None:
    """Add each collection's age and what garbage collection (default policy) would do."""
    import httpx

    from indexpair.gateways import prefect as prefect_api
    from tasks.retention import RetentionPolicy, plan

    try:
        with prefect_api.prefect_api(settings):
            verdicts = {v.name: v for v in plan(settings, RetentionPolicy())}
    except (IndexPairError, httpx.HTTPError) as exc:
        # Status still shows the aliases and collections when Prefect is down.
        verdicts = {}
        message = f"retention unknown: {type(exc).__name__}: {str(exc)[:120]}"
        Console(stderr=True).print(f"[yellow]{message}[/]")
    for c in collections:
        verdict = verdicts.get(c["name"])
        c["age_hours"] = verdict.age_hours if verdict else None
        c["gc"] = verdict.action if verdict else "unknown"
        c["gc_reason"] = verdict.reason if verdict else ""


def _print_canary(collections: list[dict[str, Any]]) -> None:
    """Shadow and interleaving evidence of candidates, with sample sizes."""
    table = Table(
        "candidate",
        "vs live",
        "mirrored",
        "overlap@k",
        "RBO",
        "ms p50 live/cand",
        "interleaved",
        "wins live/cand (ties)",
        "p",
        "leader",
        title="Live evidence (search service canary)",
    )
    for c in collections:
        ev = c.get("canary")
        if not ev:
            continue
        s, i = ev["shadow"], ev["interleave"]
        table.add_row(
            c["name"],
            ev["live"],
            str(s["mirrored"]),
            _num(s["mean_overlap_at_k"]),
            _num(s["mean_rbo"]),
            f"{_num(s['live_ms_p50'])}/{_num(s['candidate_ms_p50'])}",
            str(i["queries"]),
            f"{i['wins']['live']}/{i['wins']['candidate']} ({i['ties']})",
            f"{i['p_value']:.3g}",
            i["leader"] + (" (auto-denied)" if ev["auto_denied"] else ""),
        )
    if table.row_count:
        console.print(table)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Alias → collection → model version, and every managed collection with its state."""
    from indexpair.status import collect_status

    settings = startup_settings()
    data = collect_status(settings)
    _add_retention(settings, data["collections"])
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    aliases = Table("alias", "collection", "model", "version", title="Aliases")
    for name, a in data["aliases"].items():
        aliases.add_row(name, a["collection"], a["model_name"], a["model_version"])
    console.print(aliases)
    cols = Table(
        "collection",
        "state",
        "model",
        "version",
        "rows",
        "age h",
        "aliases",
        "gc",
        "reason",
        title="Managed collections",
    )
    for c in data["collections"]:
        cols.add_row(
            c["name"],
            c["state"],
            c["model_name"],
            c["model_version"],
            str(c["rows"]),
            "" if c["age_hours"] is None else f"{c['age_hours']:.1f}",
            ",".join(c["aliases"]),
            c["gc"],
            (c["reason"] or c["gc_reason"])[:70],
        )
    console.print(cols)
    _print_canary(data["collections"])
    for model, registry_aliases in data["mlflow_aliases"].items():
        console.print(
            f"MLflow {model}: "
            + ", ".join(f"{a}→v{v}" if v else f"{a}→none" for a, v in registry_aliases.items())
        )
