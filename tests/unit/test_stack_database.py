"""The database profile of the local stack: URLs, what status shows, the password file, the
binaries' lookup and the folders PostgreSQL's user must be able to enter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexpair import stack
from indexpair.errors import StackError
from indexpair.settings import Settings
from indexpair.stack import database, postgres
from indexpair.stack.postgres import PgServer

ODD_PASSWORD = "p@ss:w/rd%?#"


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(
        state_dir=tmp_path,
        MLFLOW_TRACKING_URI="http://127.0.0.1:5999",
        PREFECT_API_URL="http://127.0.0.1:4999/api",
        **kw,
    )


def _with_password(settings: Settings, secret: str = ODD_PASSWORD) -> Settings:
    path = postgres.home(settings) / "password"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret)
    return settings


@pytest.mark.parametrize(
    ("server", "scheme", "expected"),
    [
        (PgServer(5433), "postgresql", "postgresql://indexpair@127.0.0.1:5433/prefect"),
        (
            PgServer(5433, "s3cret"),
            "postgresql+asyncpg",
            "postgresql+asyncpg://indexpair:s3cret@127.0.0.1:5433/prefect",
        ),
        (
            PgServer(5433, ODD_PASSWORD),
            "postgresql",
            "postgresql://indexpair:p%40ss%3Aw%2Frd%25%3F%23@127.0.0.1:5433/prefect",
        ),
    ],
)
def test_server_urls_quote_the_password(server: PgServer, scheme: str, expected: str) -> None:
    assert server.url("prefect", scheme) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+asyncpg://indexpair:s3cret@127.0.0.1:5433/prefect",
            "postgresql+asyncpg://indexpair:***@127.0.0.1:5433/prefect",
        ),
        (
            PgServer(1, ODD_PASSWORD).url("mlflow"),
            "postgresql://indexpair:***@127.0.0.1:1/mlflow",
        ),
        (
            "postgresql://indexpair@127.0.0.1:5433/mlflow",
            "postgresql://indexpair@127.0.0.1:5433/mlflow",
        ),
        ("sqlite:////tmp/state/mlflow/mlflow.db", "sqlite:////tmp/state/mlflow/mlflow.db"),
    ],
)
def test_redact_hides_only_the_password(url: str, expected: str) -> None:
    assert database.redact(url) == expected


def test_sqlite_profile_keeps_the_files_in_the_state_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert database.prefect_url(settings) == f"sqlite+aiosqlite:///{tmp_path}/prefect/prefect.db"
    assert database.mlflow_store_uri(settings) == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert "PGPASSWORD" not in database.mlflow_env(settings)


def test_postgres_profile_urls_and_what_status_shows(tmp_path: Path) -> None:
    settings = _with_password(_settings(tmp_path, database="postgres", postgres_port=5433))
    quoted = "p%40ss%3Aw%2Frd%25%3F%23"
    assert database.prefect_url(settings) == (
        f"postgresql+asyncpg://indexpair:{quoted}@127.0.0.1:5433/prefect"
    )
    # MLflow's URI is on its command line: never with the password, which libpq reads
    # from PGPASSWORD in its environment.
    assert database.mlflow_store_uri(settings) == (
        "postgresql+psycopg2://indexpair@127.0.0.1:5433/mlflow"
    )
    assert database.mlflow_env(settings)["PGPASSWORD"] == ODD_PASSWORD
    shown = {
        name: stack.build_spec(name, settings, tmp_path)
        for name in ("postgres", "mlflow", "prefect")
    }
    assert shown["prefect"].database == "postgresql+asyncpg://indexpair:***@127.0.0.1:5433/prefect"
    assert shown["mlflow"].database == "postgresql+psycopg2://indexpair@127.0.0.1:5433/mlflow"
    assert shown["postgres"].url == "postgresql://indexpair@127.0.0.1:5433/postgres"
    for spec in shown.values():
        assert quoted not in " ".join([spec.url, spec.database, *spec.argv])
        assert ODD_PASSWORD not in " ".join([spec.url, spec.database, *spec.argv])


def test_s3_artifacts_get_the_endpoint_and_keys(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        mlflow_artifacts_destination="s3://bucket/mlflow",
        AWS_ENDPOINT_URL="http://127.0.0.1:9000",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY="not-a-placeholder-key",
    )
    env = database.mlflow_env(settings)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert env["AWS_SECRET_ACCESS_KEY"] == "not-a-placeholder-key"
    argv = stack.build_spec("mlflow", settings, tmp_path).argv
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://bucket/mlflow"


def test_password_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = _settings(tmp_path, database="postgres")
    assert database.prefect_url(settings).startswith("postgresql+asyncpg://indexpair@")
    first = postgres.password(settings)
    assert len(first) >= 24
    assert postgres.password(settings) == first
    assert (postgres.home(settings) / "password").stat().st_mode & 0o777 == 0o600
    assert f":{first}@" in database.prefect_url(settings)


def test_port_is_chosen_once_unless_set(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    chosen = postgres.port(settings)
    assert postgres.port(settings) == chosen
    assert postgres.port(settings.model_copy(update={"postgres_port": 6543})) == 6543


def test_the_recorded_profile_is_what_status_reports(tmp_path: Path) -> None:
    settings = _settings(tmp_path, database="postgres")
    assert database.as_running(settings) is settings
    database.record_profile(settings, running=False)
    plain = Settings(state_dir=tmp_path)  # no profile chosen
    assert "database" not in plain.model_fields_set
    assert database.as_running(plain).database == "postgres"
    assert database.as_running(plain, explicit_wins=True).database == "postgres"
    chosen = _settings(tmp_path, database="sqlite")
    assert database.as_running(chosen).database == "postgres", "status: what runs"
    assert database.as_running(chosen, explicit_wins=True).database == "sqlite", "up: the choice"


def test_postgres_is_no_service_of_the_sqlite_profile(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert "postgres" not in stack.profile_services(settings)
    assert stack.profile_services(settings.model_copy(update={"database": "postgres"}))[0] == (
        "postgres"
    )
    with pytest.raises(StackError, match="only on the postgres profile.*'sqlite'"):
        stack.up(settings, tmp_path, ["postgres"])


def test_bin_dir_from_the_setting(tmp_path: Path) -> None:
    for tool in ("initdb", "postgres"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    assert postgres.find_bin_dir(_settings(tmp_path, postgres_bin_dir=tmp_path)) == tmp_path


def test_missing_binaries_name_every_folder_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no pg_config
    monkeypatch.setattr(postgres, "DEBIAN_ROOT", tmp_path / "no-such-root")
    with pytest.raises(StackError, match=f"looked in: {empty}.*INDEXPAIR_POSTGRES_BIN_DIR"):
        postgres.find_bin_dir(_settings(tmp_path, postgres_bin_dir=empty))


def test_blocking_dir_finds_the_folder_a_user_cannot_enter(tmp_path: Path) -> None:
    me = os.getuid()  # owns tmp_path and the pytest folders above it
    outer = tmp_path / "outer"
    data = outer / "inner" / "data"
    data.mkdir(parents=True)
    assert postgres.blocking_dir(data, me, set()) is None
    outer.chmod(0o600)  # the owner may list it but not enter it
    try:
        assert postgres.blocking_dir(data, me, set()) == outer
        outer.chmod(0o650)  # group may enter, owner may not: the owner's bits count
        assert postgres.blocking_dir(data, me, {os.getgid()}) == outer
    finally:
        outer.chmod(0o755)
