"""What every ``indexpair`` command shares: the console, settings at start, and the one
place where the project's error becomes the red ``error:`` line and exit status 1."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from indexpair.errors import IndexPairError
from indexpair.gateways.prefect import RunSnapshot
from indexpair.settings import LIBRARY_ENV, Settings, load_settings

# Wide tables when the output goes to a file or CI log instead of a terminal.
console = Console(width=None if sys.stdout.isatty() else 150)
PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_DATA = PROJECT_DIR / "demo" / "data"


class Commands(TyperGroup):
    """The ``indexpair`` command group: runs a command (or a sub-group's) and turns an
    :class:`IndexPairError` it raises into ``error: <message>`` and exit status 1.

    Commands raise the project's error and never catch it themselves; the message names
    the value at fault, so nothing else is printed.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        """Invoke the command line's command, reporting the project's error once."""
        try:
            return super().invoke(ctx)
        except IndexPairError as exc:
            fail(exc)


def fail(exc: Exception) -> NoReturn:
    """Print the error (it names the value at fault) and exit 1."""
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


def startup_settings() -> Settings:
    """Settings from the environment, libraries quietened.

    Raises:
        ConfigError: a setting is missing or bad (reported by :class:`Commands`).
    """
    for key, value in LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return load_settings()


def require_files(source: str, golden: str) -> None:
    """Refuse a local source or golden-query file that does not exist.

    Raises:
        IndexPairError: naming the missing file.
    """
    for what, path in (("source", source), ("golden-query file", golden)):
        if "://" not in path and not Path(path).is_file():
            raise IndexPairError(f"{what} {path!r} does not exist")


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
