"""The postgres profile: a stack of its own with Prefect and MLflow on a local PostgreSQL
server and MLflow's artifacts in S3 (moto's server), taken through promote, approve, a
second promotion and a rollback by the real worker; then the records are read back from
PostgreSQL and S3 themselves, not through the servers' APIs.

A subset of the e2e suite (the SQLite profile runs the rest): the promote/approve/rollback
path is what depends on the database under Prefect and MLflow.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.settings import Settings
from indexpair.stack import postgres
from tests.conftest import DATA_DIR, MODEL_NAME, free_port, local_stack
from tests.e2e.conftest import build_name, decide, new_version_like, promotion_params, start
from tests.support.s3 import S3Source, s3_server

ALIAS = "pg_profile"
ARTIFACTS_PREFIX = "mlflow-artifacts"


@pytest.fixture(scope="module")
def pg_stack() -> Iterator[tuple[Settings, S3Source]]:
    """The whole stack on the postgres profile, MLflow's artifacts in a real S3 server."""
    # Not under pytest's tmp folder: run as root, PostgreSQL runs as an unprivileged user,
    # who must be able to enter every folder above its data dir (pytest-of-root is 0700).
    state = Path(tempfile.mkdtemp(prefix="indexpair-pg-"))
    state.chmod(0o711)
    try:
        with s3_server(free_port(), DATA_DIR / "products_small.parquet") as s3:
            destination = f"s3://{s3.bucket}/{ARTIFACTS_PREFIX}"
            with local_stack(
                state,
                INDEXPAIR_DATABASE="postgres",
                INDEXPAIR_MLFLOW_ARTIFACTS_DESTINATION=destination,
                **s3.env,
            ) as settings:
                yield settings, s3
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def versions(
    pg_stack: tuple[Settings, S3Source], tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """Two versions of the TF-IDF model (the second shares the first one's artifacts)."""
    import pandas as pd
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from demo.catalog import product_texts
    from demo.models import ROLE_TAG
    from indexpair.models.helpers import log_tfidf_model

    settings, _ = pg_stack
    catalog = pd.read_parquet(DATA_DIR / "products_small.parquet")
    with _use_tracking_uri(settings.mlflow_tracking_uri):
        first = log_tfidf_model(
            product_texts(catalog),
            MODEL_NAME,
            tmp_path_factory.mktemp("tfidf"),
            {ROLE_TAG: "tfidf"},
        )
    return [first, new_version_like(settings, first)]


def _query(settings: Settings, database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows straight from the local PostgreSQL (not through Prefect's or MLflow's API)."""
    import psycopg2

    server = postgres.server(settings)
    login = {"host": server.host, "port": server.port, "user": server.user}
    conn = psycopg2.connect(**login, password=server.password, dbname=database, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def history(pg_stack: tuple[Settings, S3Source], versions: list[str]) -> dict[str, Any]:
    """v1 promoted and approved, then v2 over it, then a rollback through its deployment."""
    settings, _ = pg_stack
    seen: dict[str, Any] = {"runs": []}
    for version in versions:
        snap = start(settings, promotion_params(version, ALIAS))
        done = decide(settings, snap, approve=True)
        assert done["state_type"] == "COMPLETED", done
        seen["runs"].append(snap["id"])
        seen[version] = build_name(snap, version)
        with MilvusGateway(settings) as milvus:
            assert milvus.alias_target(ALIAS) == seen[version]
    with prefect_api.prefect_api(settings):
        run = prefect_api.start_deployment(
            settings, {"alias": ALIAS, "reason": "postgres profile e2e"}, "rollback/rollback"
        )
        done = prefect_api.wait(settings, run["id"], 300, until_paused=False)
    assert done["state_type"] == "COMPLETED", done
    seen["runs"].append(run["id"])
    return seen


def test_rollback_returns_to_the_first_pair(
    pg_stack: tuple[Settings, S3Source], versions: list[str], history: dict[str, Any]
) -> None:
    settings, _ = pg_stack
    with MilvusGateway(settings) as milvus:
        assert milvus.alias_target(ALIAS) == history[versions[0]]


def test_prefect_runs_are_rows_in_postgresql(
    pg_stack: tuple[Settings, S3Source], history: dict[str, Any]
) -> None:
    settings, _ = pg_stack
    rows = _query(
        settings,
        "prefect",
        "SELECT id::text, state_type FROM flow_run WHERE id::text = ANY(%s)",
        history["runs"],
    )
    assert sorted(rows) == sorted((run, "COMPLETED") for run in history["runs"])
    assert not (settings.state_dir / "prefect" / "prefect.db").exists()


def test_mlflow_registry_is_in_postgresql_and_artifacts_in_s3(
    pg_stack: tuple[Settings, S3Source], versions: list[str], history: dict[str, Any]
) -> None:
    settings, s3 = pg_stack
    registered = _query(
        settings, "mlflow", "SELECT version::text FROM model_versions WHERE name = %s", MODEL_NAME
    )
    assert sorted(v for (v,) in registered) == sorted(versions)
    aliases = dict(
        _query(
            settings,
            "mlflow",
            "SELECT alias, version::text FROM registered_model_aliases WHERE name = %s",
            MODEL_NAME,
        )
    )
    assert aliases[settings.production_model_alias] == versions[0], aliases
    assert not (settings.state_dir / "mlflow" / "mlflow.db").exists()
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=f"{ARTIFACTS_PREFIX}/")
    keys = [obj["Key"] for obj in listed.get("Contents", [])]
    assert any(key.endswith("tfidf_pipeline.joblib") for key in keys), keys


def test_status_shows_each_database_without_the_password(
    pg_stack: tuple[Settings, S3Source], history: dict[str, Any]
) -> None:
    settings, _ = pg_stack
    result = CliRunner().invoke(app, ["stack", "status"])
    assert result.exit_code == 0, result.output
    secret = postgres.stored_password(settings)
    assert secret and secret not in result.output
    port = postgres.port(settings)
    assert "database: postgres" in result.output
    assert f"postgresql+asyncpg://indexpair:***@127.0.0.1:{port}/prefect" in result.output
    assert f"postgresql+psycopg2://indexpair@127.0.0.1:{port}/mlflow" in result.output
    assert (postgres.home(settings) / "password").stat().st_mode & 0o777 == 0o600
