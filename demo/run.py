"""The demo the README's first command runs: the whole mission on the embedded stack.

It calls the library, the deployment helpers and the flows directly (never the CLI's
commands): ``indexpair demo`` only hands it the settings and the console.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from demo.models import register_demo_models
from deployments.promotions import answer, promotion_parameters, start_promotion
from flows.collect_garbage import collect_garbage
from flows.rollback import rollback
from indexpair import stack
from indexpair.errors import IndexPairError
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.serving.query import PairSearcher, source_titles
from indexpair.settings import Settings
from indexpair.status import collect_status
from tasks.retention import RetentionPolicy

MODEL_NAME = "product-embedder"
DATA_DIR = Path(__file__).resolve().parent / "data"
SUSPEND_WAIT_S = 1800


def _stage(settings: Settings, console: Console, version: str) -> None:
    """Move the MLflow staging alias, as a data scientist would."""
    ref = ModelVersionRef(name=MODEL_NAME, version=version, uri=f"models:/{MODEL_NAME}/{version}")
    with MlflowRegistry(settings) as registry:
        registry.set_alias(ref, settings.staging_model_alias)
    console.print(f"MLflow: {MODEL_NAME} alias '{settings.staging_model_alias}' → v{version}")


def _promote(settings: Settings, console: Console, version: str) -> dict[str, Any]:
    """Stage ``version`` and start the promote deployment for whatever is at staging."""
    _stage(settings, console, version)
    snap = start_promotion(
        settings,
        promotion_parameters(
            MODEL_NAME, str(DATA_DIR / "products.parquet"), str(DATA_DIR / "golden_queries.json")
        ),
        SUSPEND_WAIT_S,
    )
    console.print(
        f"promote run {snap['name']} ({snap['url']}) is {snap['state_name']}"
        + (f": {snap['message']}" if snap["message"] else "")
    )
    return snap


def _approve(
    settings: Settings, console: Console, snap: dict[str, Any], approver: str, comment: str
) -> None:
    if snap["state_type"] != "PAUSED":
        raise IndexPairError(
            f"run {snap['name']} should await approval but is "
            f"{snap['state_name']}: {snap['message']}"
        )
    done = answer(settings, snap["id"], True, approver, comment)
    if done["state_type"] != "COMPLETED":
        raise IndexPairError(f"run {snap['name']} ended {done['state_name']}: {done['message']}")
    console.print(f"[green]approved by {approver}[/]; run {snap['name']} completed")


def _register(settings: Settings, console: Console) -> dict[str, str]:
    import mlflow
    import pandas as pd

    catalog = pd.read_parquet(DATA_DIR / "products.parquet")
    console.print(
        f"catalog: {len(catalog)} products; golden queries: {DATA_DIR / 'golden_queries.json'}"
    )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    versions = register_demo_models(MODEL_NAME, catalog, settings.state_dir / "demo-models")
    console.print("registered " + ", ".join(f"v{v} {role}" for role, v in versions.items()))
    return versions


def _promotions(settings: Settings, console: Console, versions: dict[str, str]) -> None:
    console.rule("3. v1 (TF-IDF): build, validate, approved by this command")
    with MlflowRegistry(settings) as registry:
        live = registry.alias_version(MODEL_NAME, settings.production_model_alias)
    if live is None:
        snap = _promote(settings, console, versions["tfidf"])
        _approve(
            settings,
            console,
            snap,
            "make demo (auto-approval of the first pair)",
            "first pair of the demo",
        )
    else:
        console.print(f"production is already v{live} from an earlier demo; v1 skipped")
    console.rule("4. v2 (all-MiniLM-L6-v2): build, validate, wait for a person")
    snap = _promote(settings, console, versions["minilm"])
    if snap["state_type"] != "PAUSED":
        raise IndexPairError(
            f"v2 should await approval but is {snap['state_name']}: {snap['message']}"
        )
    console.print(
        f"[bold yellow]v2 awaits approval[/]: open {snap['url']} and resume it "
        f"with the form, or run `indexpair approve {snap['id']}`"
    )
    console.print("the demo now approves it through the same API the form uses")
    _approve(settings, console, snap, "demo reviewer", "MiniLM beats TF-IDF on the golden set")
    console.rule("5. broken model (permuted weights): validation must reject it")
    snap = _promote(settings, console, versions["broken"])
    if snap["state_type"] != "FAILED" or "ValidationFailed" not in snap["message"]:
        raise IndexPairError(
            f"the broken model was not rejected by validation: "
            f"{snap['state_name']} {snap['message']}"
        )
    console.print(
        "[green]broken model rejected[/]: its collection was removed and production is untouched"
    )
    _stage(settings, console, versions["minilm"])


def _rollback(settings: Settings, console: Console, reason: str, to: str | None = None) -> str:
    """Run the rollback flow in this process, as ``indexpair rollback [--to]`` does.

    Returns:
        The collection rolled back from.
    """
    with prefect_api.prefect_api(settings):
        result = rollback(alias=None, to=to, reason=reason)
    console.print(f"[bold green]rolled back[/] {result.summary()}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    return result.rolled_back_from


def _search(settings: Settings, console: Console, text: str, k: int) -> None:
    """Search through the production alias and show the hits with their titles."""
    searcher = PairSearcher(settings)
    try:
        response = searcher.search(text, k)
    finally:
        searcher.close()
    titles = source_titles(settings, response)
    console.print(
        f"{text!r} via {response.alias} → {response.collection} "
        f"({response.model_name} v{response.model_version})"
    )
    for rank, hit in enumerate(response.hits, 1):
        console.print(f"  {rank}. {hit.id}  {hit.score:.4f}  {titles.get(hit.id, '')}")


def _garbage(settings: Settings, console: Console) -> None:
    """What the daily garbage collection would drop, and why (a dry run)."""
    with prefect_api.prefect_api(settings):
        verdicts = collect_garbage(policy=RetentionPolicy(), dry_run=True)
    table = Table("collection", "state", "action", "why")
    for v in verdicts:
        table.add_row(v.name, v.state, v.action, v.reason)
    console.print(table)


def _status(settings: Settings, console: Console) -> None:
    """Each alias → collection → model version, and every managed collection's state."""
    data = collect_status(settings)
    for alias, a in data["aliases"].items():
        pair = f"{a['model_name']} v{a['model_version']}"
        console.print(f"alias {alias} → {a['collection']} ({pair})")
    for c in data["collections"]:
        aliases = ",".join(c["aliases"]) or "—"
        console.print(
            f"  {c['name']}: {c['state']}, v{c['model_version']}, {c['rows']} rows, "
            f"aliases {aliases}"
        )


def run_demo(settings: Settings, project_dir: Path, console: Console) -> None:
    """Stack up, demo models, v1 promoted, v2 approved, broken v3 rejected, rollback and
    forward, garbage collection (dry run), status, search."""
    console.rule("1. local stack (Milvus Lite, MLflow, Prefect server, worker)")
    stack.up(settings, project_dir)
    console.print(
        f"Prefect UI {settings.prefect_ui_url} · MLflow UI "
        f"{settings.mlflow_tracking_uri} · Milvus {settings.milvus_uri}"
    )
    console.rule("2. demo catalog and models")
    _promotions(settings, console, _register(settings, console))
    console.rule("6. the way back: roll back to the previous pair, then forward again")
    left = _rollback(settings, console, "make demo: the way back")
    _search(settings, console, "waterproof hiking boots for women", k=3)
    console.print(
        f"{left} is now rolled_back: never a default target again, so going forward "
        "names it (`indexpair rollback --to ...`)"
    )
    _rollback(settings, console, "make demo: forward again", to=left)
    console.rule("7. garbage collection (dry run: what the daily schedule would drop)")
    _garbage(settings, console)
    console.rule("8. status")
    _status(settings, console)
    console.rule("9. a search through the production alias")
    _search(settings, console, "waterproof hiking boots for women", k=5)
    console.print(
        f"\nThe stack keeps running: Prefect UI {settings.prefect_ui_url}, MLflow "
        f"UI {settings.mlflow_tracking_uri}. Stop it with `make down`."
    )
