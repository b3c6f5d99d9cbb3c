"""The ``indexpair`` command line."""

from __future__ import annotations

import getpass
import json
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from indexpair import lifecycle_cli, trigger_cli
from indexpair.cli_common import (
    DEMO_DATA,
    PROJECT_DIR,
    console,
    fail,
    report_run,
    require_files,
    settings_or_exit,
)
from indexpair.errors import IndexPairError
from indexpair.settings import Settings

app = typer.Typer(
    help="Promote an embedding model and its Milvus index as one pair.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="Start, stop and inspect the local embedded stack.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
# Wide tables when the output goes to a file or CI log instead of a terminal.


def _services_table(rows: list[Any]) -> Table:
    table = Table("service", "pid", "running", "healthy", "url", "log")
    for s in rows:
        table.add_row(
            s.name,
            str(s.pid or "—"),
            "yes" if s.running else "no",
            "yes" if s.healthy else "no",
            s.url,
            str(s.log),
        )
    return table


@stack_app.command("up")
def stack_up() -> None:
    """Start Milvus Lite, MLflow, Prefect and the worker (idempotent)."""
    from indexpair import stack

    settings = settings_or_exit()
    try:
        rows = stack.up(settings, PROJECT_DIR)
    except IndexPairError as exc:
        fail(exc)
    console.print(_services_table(rows))
    console.print(
        f"Prefect UI: {settings.prefect_ui_url}   MLflow UI: {settings.mlflow_tracking_uri}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` started."""
    from indexpair import stack

    stopped = stack.down(settings_or_exit())
    console.print("stopped: " + (", ".join(stopped) or "nothing was running"))


@stack_app.command("status")
def stack_status() -> None:
    """Show each local service: pid, health, URL and log."""
    from indexpair import stack

    console.print(_services_table(stack.status(settings_or_exit())))


@app.command()
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

    settings = settings_or_exit()
    require_files(source, golden)
    params = promotion_parameters(
        model, source, golden, version, alias, approval_timeout_s=approval_timeout
    )

    def started(run: dict[str, Any]) -> None:
        console.print(
            f"started {run['name']} ({run['id']}): {run['url']}\n"
            "building and validating; waiting until it asks for approval ..."
        )

    try:
        snap = start_promotion(settings, params, wait, on_started=started)
    except IndexPairError as exc:
        fail(exc)
    report_run(snap)


def _decide(run_id: str, approve: bool, approver: str | None, comment: str, wait: float) -> None:
    from deployments.promotions import answer

    settings = settings_or_exit()
    who = approver or os.environ.get("INDEXPAIR_APPROVER") or getpass.getuser()
    console.print(f"{'approving' if approve else 'denying'} {run_id} as {who}")
    try:
        snap = answer(settings, run_id, approve, who, comment, wait)
    except IndexPairError as exc:
        fail(exc)
    report_run(snap)


@app.command()
def approve(
    run_id: str,
    approver: Annotated[str | None, typer.Option(help="Who approves")] = None,
    comment: Annotated[str, typer.Option(help="Why")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the switch")] = 600,
) -> None:
    """Approve a candidate waiting in RUN_ID (the same API the Prefect UI form uses)."""
    _decide(run_id, True, approver, comment, wait)


@app.command()
def deny(
    run_id: str,
    approver: Annotated[str | None, typer.Option(help="Who denies")] = None,
    comment: Annotated[str, typer.Option(help="Why")] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for the clean-up")] = 600,
) -> None:
    """Deny a candidate waiting in RUN_ID; its collection is removed."""
    _decide(run_id, False, approver, comment, wait)


def _add_retention(settings: Settings, collections: list[dict[str, Any]]) -> None:
    """Add each collection's age and what garbage collection (default policy) would do."""
    import httpx

    from indexpair.gateways import prefect as prefect_api
    from tasks.retention import RetentionPolicy, plan

    try:
        with prefect_api.prefect_api(settings):
            verdicts = {v.name: v for v in plan(settings, RetentionPolicy())}
    except (IndexPairError, httpx.HTTPError) as exc:
        verdicts = {}
        message = f"retention unknown: {type(exc).__name__}: {str(exc)[:120]}"
        Console(stderr=True).print(f"[yellow]{message}[/]")
    for c in collections:
        verdict = verdicts.get(c["name"])
        c["age_hours"] = verdict.age_hours if verdict else None
        c["gc"] = verdict.action if verdict else "unknown"
        c["gc_reason"] = verdict.reason if verdict else ""


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Alias → collection → model version, and every managed collection with its state."""
    from indexpair.status import collect_status

    settings = settings_or_exit()
    try:
        data = collect_status(settings)
    except IndexPairError as exc:
        fail(exc)
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
    for model, registry_aliases in data["mlflow_aliases"].items():
        console.print(
            f"MLflow {model}: "
            + ", ".join(f"{a}→v{v}" if v else f"{a}→none" for a, v in registry_aliases.items())
        )


@app.command()
def search(
    text: str,
    k: Annotated[int, typer.Option("-k", "--k", help="How many hits")] = 5,
    alias: Annotated[str | None, typer.Option(help="Alias to search")] = None,
) -> None:
    """Search through the production alias with the model of the pair behind it."""
    from indexpair.serving.query import PairSearcher, source_titles

    settings = settings_or_exit()
    try:
        searcher = PairSearcher(settings, alias)
        response = searcher.search(text, k)
        searcher.close()
    except IndexPairError as exc:
        fail(exc)
    titles = source_titles(settings, response)
    table = Table(
        "rank",
        "id",
        "score",
        "title",
        title=f"{text!r} via {response.alias} → "
        f"{response.collection} ({response.model_name} v{response.model_version})",
    )
    for rank, hit in enumerate(response.hits, 1):
        table.add_row(str(rank), hit.id, f"{hit.score:.4f}", titles.get(hit.id, ""))
    console.print(table)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (INDEXPAIR_SERVE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (INDEXPAIR_SERVE_PORT)")] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to serve")] = None,
    ttl: Annotated[
        float | None, typer.Option(help="Seconds a resolved alias is trusted (0: per request)")
    ] = None,
) -> None:
    """Serve GET /search, /pair, /healthz and /metrics over HTTP for the alias."""
    from indexpair.serving.app import serve as run_service

    settings = settings_or_exit()
    overrides = {k: v for k, v in (("serve_host", host), ("serve_port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    console.print(
        f"serving alias {alias or settings.production_alias} on "
        f"http://{settings.serve_host}:{settings.serve_port} (search, pair, healthz, metrics)"
    )
    try:
        run_service(settings, alias, ttl)
    except IndexPairError as exc:
        fail(exc)


@app.command()
def cleanup() -> None:
    """Remove builds whose flow run ended without finishing them (e.g. approval timeout)."""
    from indexpair.gateways import prefect as prefect_api
    from tasks.retention import reap_abandoned

    settings = settings_or_exit()
    with prefect_api.prefect_api(settings):
        reaped = reap_abandoned(settings)
    console.print("removed: " + (", ".join(reaped) or "nothing abandoned"))


@app.command()
def demo() -> None:
    """The whole mission on the embedded stack (what `make demo` runs)."""
    from demo.run import run_demo

    try:
        run_demo(settings_or_exit(), PROJECT_DIR, console)
    except IndexPairError as exc:
        fail(exc)


app.command()(lifecycle_cli.rollback)
app.command()(lifecycle_cli.gc)
app.command()(lifecycle_cli.refresh)
app.command()(lifecycle_cli.reconcile)
app.command("switch-approved")(lifecycle_cli.switch_approved)
app.add_typer(trigger_cli.trigger_app, name="trigger")
app.add_typer(trigger_cli.webhook_app, name="webhook")

if __name__ == "__main__":
    app()
