"""``indexpair stack up | down | status``: the local embedded stack."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from cli.common import PROJECT_DIR, console, startup_settings
from indexpair import stack
from indexpair.errors import ConfigError
from indexpair.settings import Settings
from indexpair.stack import database

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


def _print_databases(settings: Settings, rows: list[Any]) -> None:
    """The profile, then each service's database URL (never with the password)."""
    console.print(f"database: {settings.database}")
    for s in rows:
        if s.database:
            console.print(f"  {s.name:<8} {s.database}", soft_wrap=True)


def _with_database(settings: Settings, profile: str | None) -> Settings:
    """The settings with ``--database`` applied (it overrides INDEXPAIR_DATABASE)."""
    if profile is None:
        return settings
    if profile not in database.PROFILES:
        raise ConfigError(f"--database {profile!r}: choose one of {', '.join(database.PROFILES)}")
    return settings.model_copy(update={"database": profile})


@stack_app.command("up")
def stack_up(
    profile: str = typer.Option(
        None,
        "--database",
        help="What Prefect and MLflow run on: sqlite or postgres (a local PostgreSQL server);"
        " default: INDEXPAIR_DATABASE, else what the state dir's stack last ran on, else sqlite.",
        show_default=False,
    ),
) -> None:
    """Start PostgreSQL (postgres profile), Milvus Lite, MLflow, Prefect and the worker
    (idempotent)."""
    settings = database.as_running(_with_database(startup_settings(), profile), True)
    rows = stack.up(settings, PROJECT_DIR)
    console.print(_services_table(rows))
    _print_databases(settings, rows)
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
    """Show each local service: pid, health, URL, database (no password) and log."""
    settings = database.as_running(startup_settings())
    rows = stack.status(settings)
    console.print(_services_table(rows))
    _print_databases(settings, rows)
