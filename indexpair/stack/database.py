"""The database under the local Prefect server and MLflow: SQLite files or a local PostgreSQL.

Profile ``sqlite`` (the default) keeps ``prefect.db`` and ``mlflow.db`` in the state dir.
Profile ``postgres`` (``INDEXPAIR_DATABASE=postgres`` or ``indexpair stack up --database
postgres``) runs a PostgreSQL server (:mod:`indexpair.stack.postgres`) with one database
for each. MLflow's artifacts go to ``INDEXPAIR_MLFLOW_ARTIFACTS_DESTINATION`` (e.g. an
``s3://`` URI) or a folder in the state dir, on either profile.

The profile a state dir's stack was brought up with is kept in ``STATE/database``: `status`
reports the stack that runs, whatever the current setting says, and `up` keeps that
profile unless one is chosen explicitly.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from indexpair.errors import StackError
from indexpair.settings import Settings
from indexpair.stack import postgres
from indexpair.stack.postgres import PgServer

PROFILES = ("sqlite", "postgres")


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for status and messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def prefect_url(settings: Settings) -> str:
    """``PREFECT_SERVER_DATABASE_CONNECTION_URL`` of the local Prefect server (with the
    password: it goes into the server's environment, never onto a command line)."""
    if settings.database == "postgres":
        return postgres.server(settings).url("prefect", "postgresql+asyncpg")
    return f"sqlite+aiosqlite:///{settings.state_dir / 'prefect' / 'prefect.db'}"


def mlflow_store_uri(settings: Settings) -> str:
    """MLflow's ``--backend-store-uri``; never with the password (libpq reads PGPASSWORD)."""
    if settings.database == "postgres":
        return PgServer(postgres.port(settings)).url("mlflow", "postgresql+psycopg2")
    return f"sqlite:///{settings.state_dir / 'mlflow' / 'mlflow.db'}"


def mlflow_env(settings: Settings) -> dict[str, str]:
    """Environment of the MLflow server for its store: the PostgreSQL password (libpq's
    PGPASSWORD, kept off the command line) and the endpoint and keys of an s3:// artifact
    destination."""
    env: dict[str, str] = {}
    if settings.database == "postgres":
        env["PGPASSWORD"] = postgres.password(settings)
    if (settings.mlflow_artifacts_destination or "").startswith("s3://"):
        if settings.aws_endpoint_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = settings.aws_endpoint_url
        for name, secret in (
            ("AWS_ACCESS_KEY_ID", settings.aws_access_key_id),
            ("AWS_SECRET_ACCESS_KEY", settings.aws_secret_access_key),
        ):
            if secret is not None:
                env[name] = secret.get_secret_value()
        env["AWS_DEFAULT_REGION"] = settings.aws_region
    return env


def recorded_profile(settings: Settings) -> str | None:
    """The profile the state dir's stack was last brought up with, if any."""
    try:
        return (settings.state_dir / "database").read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def record_profile(settings: Settings, running: bool) -> None:
    """Remember the profile this state dir's stack is brought up with.

    Raises:
        StackError: The state dir's stack runs (``running``) on the other profile.
    """
    recorded = recorded_profile(settings)
    if running and recorded not in (None, settings.database):
        raise StackError(
            f"the stack in {settings.state_dir} runs on {recorded}, not {settings.database};"
            " run `indexpair stack down` first, or use another INDEXPAIR_STATE_DIR"
        )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "database").write_text(settings.database, encoding="ascii")


def as_running(settings: Settings, explicit_wins: bool = False) -> Settings:
    """``settings`` with the profile the state dir's stack was brought up with.

    Args:
        settings: The settings; their profile stays when the state dir records none.
        explicit_wins: Keep a profile chosen explicitly (``INDEXPAIR_DATABASE`` or
            ``--database``) over the recorded one: for `up`, which records it.
    """
    recorded = recorded_profile(settings)
    if recorded not in PROFILES or recorded == settings.database:
        return settings
    if explicit_wins and "database" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"database": recorded})
