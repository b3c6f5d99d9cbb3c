"""``indexpair search | serve``: queries through an alias, answered by the pair behind it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, startup_settings


def search(
    text: str,
    k: Annotated[int, typer.Option("-k", "--k", help="How many hits")] = 5,
    alias: Annotated[str | None, typer.Option(help="Alias to search")] = None,
) -> None:
    """Search through the production alias with the model of the pair behind it."""
    from indexpair.serving.query import PairSearcher, source_titles

    settings = startup_settings()
    searcher = PairSearcher(settings, alias)
    try:
        response = searcher.search(text, k)
    finally:
        searcher.close()
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

    settings = startup_settings()
    overrides = {k: v for k, v in (("serve_host", host), ("serve_port", port)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    console.print(
        f"serving alias {alias or settings.production_alias} on "
        f"http://{settings.serve_host}:{settings.serve_port} (search, pair, healthz, metrics)"
    )
    run_service(settings, alias, ttl)
