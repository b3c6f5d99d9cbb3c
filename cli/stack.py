"""``indexpair stack up | down | status``: the local embedded stack."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.common import PROJECT_DIR, console, startup_settings
from indexpair import stack

stack_app = typer.Typer(
    help="Start, stop and inspect the local embedded stack.", no_args_is_help=True
)


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
    settings = startup_settings()
    rows = stack.up(settings, PROJECT_DIR)
    console.print(_services_table(rows))
    console.print(
        f"Prefect UI: {settings.prefect_ui_url}   MLflow UI: {settings.mlflow_tracking_uri}"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `stack up` started."""
    stopped = stack.down(startup_settings())
    console.print("stopped: " + (", ".join(stopped) or "nothing was running"))


@stack_app.command("status")
def stack_status() -> None:
    """Show each local service: pid, health, URL and log."""
    console.print(_services_table(stack.status(startup_settings())))
