"""What every ``indexpair`` command shares: the console, settings at start, failing."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from indexpair.errors import ConfigError, IndexPairError
from indexpair.gateways.prefect import RunSnapshot
from indexpair.settings import LIBRARY_ENV, Settings, load_settings

# Wide tables when the output goes to a file or CI log instead of a terminal.
console = Console(width=None if sys.stdout.isatty() else 150)
PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_DATA = PROJECT_DIR / "demo" / "data"


def settings_or_exit() -> Settings:
    """Settings from the environment, libraries quietened; a bad setting exits 1."""
    for key, value in LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return load_settings()
    except ConfigError as exc:
        fail(exc)


def fail(exc: Exception) -> NoReturn:
    """Print the error (it names the value at fault) and exit 1."""
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


def require_files(source: str, golden: str) -> None:
    """Exit 1 naming a local source or golden-query file that does not exist."""
    for what, path in (("source", source), ("golden-query file", golden)):
        if "://" not in path and not Path(path).is_file():
            fail(IndexPairError(f"{what} {path!r} does not exist"))


def report_run(snap: RunSnapshot) -> None:
    """Print a run's state and what to do next; exit 1 if it failed, 3 if still going."""
    console.print(f"flow run {snap['name']} ({snap['id']})")
    if snap["state_type"] == "PAUSED":
        console.print(
            f"[bold yellow]awaiting approval[/]: {snap['url']}\n"
            f"  approve: indexpair approve {snap['id']}\n"
            f"  deny:    indexpair deny {snap['id']}"
        )
        return
    if not snap.final:
        console.print(f"[yellow]still {snap['state_name']}[/]; follow it at {snap['url']}")
        raise typer.Exit(3)
    colour = "green" if snap["state_type"] == "COMPLETED" else "red"
    console.print(f"[bold {colour}]{snap['state_name']}[/]: {snap['message']}  {snap['url']}")
    if snap["state_type"] not in ("COMPLETED",):
        raise typer.Exit(1)
