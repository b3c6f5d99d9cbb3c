"""``indexpair models check``: a registered model version against the model contract."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import Commands, console, startup_settings

models_app = typer.Typer(
    cls=Commands,
    help="Registered embedding models: check one against the model contract.",
    no_args_is_help=True,
)


@models_app.command("check")
def check(
    model_uri: Annotated[
        str, typer.Argument(help="models:/NAME/VERSION, models:/NAME@ALIAS or models:/NAME")
    ],
    texts: Annotated[
        int, typer.Option(min=8, max=100_000, help="Texts to encode for the throughput")
    ] = 256,
) -> None:
    """Check a model version against the contract in seconds, building nothing.

    Prints what a build would do with it (flavor, dimension, metric, prompts, maximum
    sequence length) and its encode throughput on this machine; exits 1 naming what is
    wrong when the model is outside the contract.
    """
    from tasks.registry import check_model

    result = check_model(startup_settings(), model_uri, texts)
    console.print(f"{result.ref.display} is inside the model contract")
    table = Table(box=None, show_header=False, pad_edge=False)
    for key, value in result.contract.describe().items():
        table.add_row(key, value)
    table.add_row("load", f"{result.load_s:.1f} s")
    table.add_row("encode", f"{result.texts_per_s:,.0f} texts/s ({result.texts} texts)")
    console.print(table)
