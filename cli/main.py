"""The ``indexpair`` command line: the Typer ``app`` and where each command comes from.

The composition root: it imports the library, the tasks, the flows, the deployment
helpers and the demo runner; nothing imports it. Each sub-command group is a module of
this package; :class:`cli.common.Commands` reports the project's error for all of them.
"""

from __future__ import annotations

import typer

from cli import lifecycle, promotion, serving
from cli.common import PROJECT_DIR, Commands, console, startup_settings
from cli.models import models_app
from cli.stack import stack_app
from cli.triggers import trigger_app, webhook_app

app = typer.Typer(
    cls=Commands,
    help="Promote an embedding model and its Milvus index as one pair.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def demo() -> None:
    """The whole mission on the embedded stack (what `make demo` runs)."""
    from demo.run import run_demo

    run_demo(startup_settings(), PROJECT_DIR, console)


# Registration order is the order `indexpair --help` lists the commands in.
app.command()(promotion.promote)
app.command()(promotion.approve)
app.command()(promotion.deny)
app.command()(lifecycle.status)
app.command()(serving.search)
app.command()(serving.serve)
app.command()(lifecycle.cleanup)
app.command()(demo)
app.command()(lifecycle.rollback)
app.command()(lifecycle.gc)
app.command()(promotion.refresh)
app.command()(lifecycle.reconcile)
app.command("switch-approved")(promotion.switch_approved)
app.add_typer(models_app, name="models")
app.add_typer(stack_app, name="stack")
app.add_typer(trigger_app, name="trigger")
app.add_typer(webhook_app, name="webhook")

if __name__ == "__main__":
    app()
