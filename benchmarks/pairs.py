"""Benchmark fixtures: a local stack on free ports, and pairs built by the flow's own stages."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import tempfile
from pathlib import Path

from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairState, collection_name
from indexpair.settings import Settings, load_settings
from tasks.collections import create, finalize, set_state
from tasks.embedding import embed_into
from tasks.registry import probe
from tasks.source import SourceSpec, check_source, sample_texts

log = logging.getLogger(__name__)
PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "demo" / "data"
MODEL_NAME = "product-embedder"
ALT_ROLE = "bench_tfidf_alt"
STACK_SERVICES = ["milvus", "mlflow", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_stack_env() -> dict[str, str]:
    """Environment for a stack of our own: a temporary state dir and free loopback ports."""
    state = tempfile.mkdtemp(prefix="indexpair-bench-")
    return {
        "INDEXPAIR_STATE_DIR": state,
        "MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
        "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


def add_reuse_stack(parser: argparse.ArgumentParser) -> None:
    """The ``--reuse-stack`` option every benchmark that needs the stack takes."""
    parser.add_argument(
        "--reuse-stack",
        action="store_true",
        default=os.environ.get("INDEXPAIR_BENCH_REUSE_STACK") == "1",
        help="use the running stack of the environment (INDEXPAIR_BENCH_REUSE_STACK=1)",
    )


def start_stack(reuse: bool) -> tuple[Settings, bool]:
    """Settings of the stack to use; starts a private one unless ``reuse``.

    Returns:
        The settings, and whether this process started the stack (and must stop it).
    """
    from indexpair import stack
    from indexpair.settings import LIBRARY_ENV

    for key, value in LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    if not reuse:
        os.environ.update(private_stack_env())
    settings = load_settings()
    if not reuse:
        stack.up(settings, PROJECT_DIR, STACK_SERVICES)
    return settings, not reuse


def register_versions(settings: Settings, source: Path) -> dict[str, str]:
    """The demo versions, plus a second TF-IDF fitted on ``source`` (same width, other space)."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from demo.catalog import product_texts
    from demo.models import register_demo_models
    from indexpair.models.helpers import log_tfidf_model

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    catalog = pd.read_parquet(DATA_DIR / "products.parquet")
    versions = register_demo_models(MODEL_NAME, catalog, settings.state_dir / "demo-models")
    client = MlflowClient(settings.mlflow_tracking_uri)
    for mv in client.search_model_versions(f"name='{MODEL_NAME}'"):
        if mv.tags.get("indexpair.demo_role") == ALT_ROLE:
            versions["tfidf_alt"] = str(mv.version)
            return versions
    texts = product_texts(pd.read_parquet(source))
    versions["tfidf_alt"] = log_tfidf_model(
        texts, MODEL_NAME, settings.state_dir / "bench-tfidf-alt", {"indexpair.demo_role": ALT_ROLE}
    )
    return versions


def build_pair(
    settings: Settings, version: str, source: Path, build_id: str, alias: str = ""
) -> str:
    """Build, fill and load one pair with the promote flow's stage functions (no approval).

    Returns:
        The collection name (reused when it already holds the source).
    """
    with MlflowRegistry(settings) as registry:
        ref = registry.resolve_version(MODEL_NAME, version)
    spec = SourceSpec(uri=str(source))
    summary, _ = check_source(settings, spec)
    model = probe(settings, ref, sample_texts(settings, spec))
    name = collection_name(ref.name, ref.version, build_id)
    from indexpair.gateways.milvus import MilvusGateway
    from indexpair.pair import PairMetadata

    with MilvusGateway(settings) as milvus:
        if milvus.exists(name) and milvus.row_count(name) == summary.rows:
            milvus.ensure_loaded(name)
            if alias:  # a candidate again, as when built (the alias's own target stays live)
                waiting = {"state": PairState.AWAITING_APPROVAL.value}
                live = milvus.alias_target(alias) == name
                milvus.update_pair(name, alias=alias, **({} if live else waiting))
            return name
    meta = PairMetadata(
        model_name=ref.name,
        model_version=ref.version,
        model_uri=ref.uri,
        dim=model.dim,
        build_id=build_id,
        source_uri=summary.uri,
        source_fingerprint=summary.fingerprint,
        source_rows=summary.rows,
        alias=alias,
        metric=model.contract.metric,
        query_prompt=model.contract.query_prompt,
        document_prompt=model.contract.document_prompt,
    )
    create(settings, name, meta)
    embed_into(settings, spec, model, name, lambda done: None)
    finalize(settings, name, summary.rows)
    set_state(settings, name, PairState.AWAITING_APPROVAL)
    log.info("built %s (%d rows)", name, summary.rows)
    return name
