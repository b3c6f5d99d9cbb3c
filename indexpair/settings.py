"""One Settings object, read from the environment once at the entry point."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexpair.errors import ConfigError

# Offline model loading, and no progress bars or library chatter in logs. Set for the CLI
# and for every flow run the local worker starts.
LIBRARY_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Explicit MLflow HTTP timeouts: a server that is down fails in seconds, not minutes.
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
}

PLACEHOLDER_SECRETS = {"changeme", "change-me", "changethis", "secret", "password", "xxx"}


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything indexpair reads from the environment.

    Standard variables keep their usual names (``MLFLOW_TRACKING_URI``, ``MILVUS_URI``,
    ``PREFECT_API_URL``, ``AWS_*``, ``RAY_ADDRESS``); indexpair's own use ``INDEXPAIR_``.
    Secrets are ``SecretStr`` and have no defaults.
    """

    model_config = SettingsConfigDict(env_prefix="INDEXPAIR_", extra="ignore", frozen=True)

    mlflow_tracking_uri: str = Field(
        "http://127.0.0.1:5000", validation_alias=_env("MLFLOW_TRACKING_URI")
    )
    milvus_uri: str = Field("http://127.0.0.1:19530", validation_alias=_env("MILVUS_URI"))
    milvus_token: SecretStr | None = Field(None, validation_alias=_env("MILVUS_TOKEN"))
    milvus_timeout_s: float = 30.0
    milvus_backend: Literal["lite", "standalone"] = Field(
        "lite",
        description="What `indexpair stack up` serves MILVUS_URI with: Milvus Lite, or the real"
        " Milvus 2.3 standalone server of the `milvus` package (indexpair.stack.milvus_standalone)",
    )
    milvus_secure: bool = Field(
        False, validation_alias=_env("MILVUS_SECURE"), description="TLS to Milvus (https)"
    )
    milvus_server_pem_path: str | None = Field(
        None,
        validation_alias=_env("MILVUS_SERVER_PEM_PATH"),
        description="CA/server certificate (PEM) that the Milvus server's TLS is checked with",
    )
    milvus_server_name: str | None = Field(
        None,
        validation_alias=_env("MILVUS_SERVER_NAME"),
        description="Name the Milvus server's certificate is checked against (TLS SNI)",
    )
    prefect_api_url: str = Field(
        "http://127.0.0.1:4200/api", validation_alias=_env("PREFECT_API_URL")
    )
    prefect_api_key: SecretStr | None = Field(None, validation_alias=_env("PREFECT_API_KEY"))
    aws_access_key_id: SecretStr | None = Field(None, validation_alias=_env("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=_env("AWS_SECRET_ACCESS_KEY")
    )
    aws_endpoint_url: str | None = Field(None, validation_alias=_env("AWS_ENDPOINT_URL"))
    aws_region: str = Field("us-east-1", validation_alias=_env("AWS_DEFAULT_REGION", "AWS_REGION"))
    ray_address: str | None = Field(None, validation_alias=_env("RAY_ADDRESS"))
    ray_ship_code: bool = Field(
        True,
        description="Ship indexpair's library package to an existing Ray cluster (RAY_ADDRESS) "
        "in the runtime environment; false where the cluster has indexpair installed",
    )
    ray_connect_timeout_s: float = Field(
        10.0, gt=0, description="How long to wait for RAY_ADDRESS to answer before failing"
    )

    production_alias: str = "products"
    staging_model_alias: str = "staging"
    production_model_alias: str = "production"
    state_dir: Path = Path(".indexpair")
    work_pool: str = "indexpair-local"

    # -- the local stack's database (indexpair/stack/database.py) ---------------------------
    database: Literal["sqlite", "postgres"] = Field(
        "sqlite",
        description="What `indexpair stack up` runs the Prefect server and MLflow on: SQLite"
        " files, or a local PostgreSQL server started with the stack",
    )
    postgres_bin_dir: Path | None = Field(
        None,
        description="Folder holding initdb and postgres; default: `pg_config --bindir`, then"
        " the newest /usr/lib/postgresql/*/bin",
    )
    postgres_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Loopback port of the local PostgreSQL; default: a free port chosen at the"
        " first start and kept in the state dir",
    )
    postgres_os_user: str = Field(
        "indexpair-pg",
        description="Unprivileged user the local PostgreSQL runs as when indexpair runs as root"
        " (PostgreSQL refuses root); created if missing",
    )
    mlflow_artifacts_destination: str | None = Field(
        None,
        description="Where the local MLflow server keeps artifacts (e.g. s3://bucket/mlflow,"
        " with AWS_* for the keys and endpoint); default: a folder in the state dir",
    )
    deployment_name: str = "promote/promote"
    refresh_deployment: str = "refresh/weekly"

    # -- the build (tasks/embedding.py); defaults measured with benchmarks/reindex.py ------
    embed_batch_size: int = Field(
        1024,
        ge=1,
        description="Rows per batch handed to an embedding actor (the last ones are a "
        "quarter of it); GPU: 2048-8192",
    )
    embed_model_batch_size: int | None = Field(
        None,
        ge=1,
        description="Texts per forward pass of the model; default: 16 on the CPU (less "
        "padding), 256 on a GPU",
    )
    embed_actors: int | None = Field(
        None,
        ge=1,
        description="Embedding actors (model replicas); default: one per core on the CPU "
        "(one more logical CPU for the insert writers), or one per GPU",
    )
    embed_num_gpus: float = Field(
        0.0, ge=0, description="GPUs each embedding actor asks Ray for (0: CPU only)"
    )
    embed_fp16: bool = Field(True, description="Half precision on a GPU, where the model allows")
    embed_threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads per actor; default: 1, or the cores shared out when "
        "INDEXPAIR_EMBED_ACTORS is set",
    )
    insert_batch_size: int = Field(1000, ge=1, description="Rows per Milvus upsert")
    insert_writers: int | None = Field(
        None,
        ge=1,
        description="Parallel insert actors; default: 1 on Milvus Lite (writes to one "
        "collection must be serialized), 4 on a Milvus server",
    )
    embed_here_max_rows: int = Field(
        2000,
        ge=0,
        description="A refresh embeds at most this many rows in its own process, not on Ray",
    )

    # -- serving (the query client and `indexpair serve`) ---------------------------------
    alias_ttl_s: float = Field(
        0.0, ge=0, le=300, description="How long a resolved alias is trusted; 0: every request"
    )
    model_cache_size: int = Field(
        3, ge=1, le=20, description="Model versions the query client keeps loaded"
    )
    warm_switch: bool = Field(
        True, description="Answer from the previous pair until a new pair's model is loaded"
    )
    query_batch_max: int = Field(
        64, ge=1, le=1024, description="Concurrent queries answered as one batch; 1: no batching"
    )
    query_batch_workers: int = Field(
        1, ge=1, le=8, description="Threads answering batches (one batch each at a time)"
    )
    query_batch_wait_ms: float = Field(
        2.0, ge=0, le=100, description="Longest a query waits for others to join its batch"
    )
    query_parallel_batch: int = Field(
        8,
        ge=1,
        le=1024,
        description="`indexpair serve`: smallest query batch a PyTorch model encodes with "
        "all its threads; smaller batches use one",
    )
    preload_interval_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="How often the service pre-loads candidates and the rollback pair; 0: never",
    )
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(8000, ge=1, le=65535)
    serve_max_query_chars: int = Field(
        1000, ge=1, le=100_000, description="Longest query text `/search` accepts (422 above)"
    )
    query_log_size: int = Field(
        1000, ge=0, description="Recent live queries the service keeps for shadow checks; 0: none"
    )
    shadow_sample: int = Field(
        50, ge=0, description="Logged live queries a promotion compares on (0: golden only)"
    )
    # The canary: live evidence about a candidate awaiting approval (indexpair.serving.canary).
    shadow_fraction: float = Field(
        0.1, ge=0, le=1, description="Share of live queries mirrored to a waiting candidate"
    )
    shadow_queue_size: int = Field(
        100, ge=1, description="Mirrored queries waiting for the candidate; more are dropped"
    )
    interleave_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of sessions (X-Session-Id) served team-draft interleaved results "
        "of the live pair and a waiting candidate; 0: none",
    )
    canary_impressions: int = Field(
        10_000, ge=1, description="Recent responses POST /feedback can refer to"
    )
    canary_refresh_s: float = Field(
        10.0, gt=0, description="How often the service looks for a candidate awaiting approval"
    )
    canary_publish_s: float = Field(
        30.0, gt=0, description="How often new evidence is stored and the approval report updated"
    )
    canary_auto_deny: bool = Field(
        False, description="Deny a candidate that loses the interleaved comparison significantly"
    )
    canary_deny_alpha: float = Field(
        0.01, gt=0, lt=1, description="Significance level of the automatic denial (sign test)"
    )
    canary_min_decided: int = Field(
        100, ge=1, description="Queries decided by clicks before an automatic denial may happen"
    )

    # Triggers (indexpair/triggers.py, deployments/webhook.py, flows/watch_registry.py).
    trigger_models: str = Field(
        "product-embedder", description="Comma-separated registered models that triggers act on"
    )
    webhook_secret: SecretStr | None = None
    webhook_target: Literal["prefect", "circleci"] = "prefect"
    webhook_max_age_s: int = Field(300, ge=1)
    webhook_max_body_bytes: int = Field(
        65_536, ge=1024, description="Largest delivery body the webhook receiver reads (413 above)"
    )
    circleci_api_url: str = "https://circleci.com"
    circleci_project_slug: str | None = None
    circleci_branch: str = "main"
    circleci_token: SecretStr | None = None
    notify_url: SecretStr | None = Field(
        None,
        description="Webhook (Slack-compatible JSON) that hears when a promotion awaits "
        "approval, is denied, fails or is promoted (indexpair.notifications)",
    )

    @field_validator(
        "milvus_token",
        "aws_secret_access_key",
        "prefect_api_key",
        "webhook_secret",
        "circleci_token",
    )
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder value; set the real secret or leave it unset")
        return value

    @field_validator("notify_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlparse(value.get_secret_value()).scheme not in {"http", "https"}:
            raise ValueError("is not an http:// or https:// URL")
        return value

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def prefect_ui_url(self) -> str:
        """The Prefect UI base URL derived from the API URL."""
        base = self.prefect_api_url.rstrip("/")
        return base[: -len("/api")] if base.endswith("/api") else base

    def flow_run_url(self, flow_run_id: str) -> str:
        """Link to a flow run in the Prefect UI."""
        return f"{self.prefect_ui_url}/runs/flow-run/{flow_run_id}"

    @property
    def milvus_password_path(self) -> Path:
        """The root password the local standalone Milvus backend generates (mode 0600)."""
        return self.state_dir / "milvus-standalone" / "root-password"

    @property
    def query_log_path(self) -> Path:
        """Where the search service appends the live queries it answered (JSON lines)."""
        return self.state_dir / "query-log.jsonl"

    @property
    def trigger_model_names(self) -> list[str]:
        """The models triggers act on (from ``INDEXPAIR_TRIGGER_MODELS``)."""
        return [name.strip() for name in self.trigger_models.split(",") if name.strip()]

    def lock_name(self, alias: str) -> str:
        """Global concurrency limit that serializes switches of one alias."""
        return f"indexpair-alias-{alias}"


SECRET_NAMES = {
    "MILVUS_TOKEN",
    "PREFECT_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "milvus_token",
    "prefect_api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "INDEXPAIR_WEBHOOK_SECRET",
    "INDEXPAIR_CIRCLECI_TOKEN",
    "webhook_secret",
    "circleci_token",
    "INDEXPAIR_NOTIFY_URL",
    "notify_url",
}


def load_settings() -> Settings:
    """Build the settings from the environment, turning validation errors into ConfigError.

    The message names each bad variable and its value, except for secrets, whose value
    is never repeated.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            shown = "" if name in SECRET_NAMES else f" (got {err.get('input')!r})"
            problems.append(f"{name}: {err['msg']}{shown}")
        raise ConfigError("invalid indexpair settings: " + "; ".join(problems)) from None
    # MLflow falls back to a store in the working directory (./mlflow.db) for any call
    # made without a tracking URI, in this process or its children (Ray actors, the
    # worker's flow runs). Naming the configured server here, at every entry point,
    # leaves it no such fallback.
    os.environ.setdefault("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    return settings


def loopback_port(uri: str, what: str) -> int:
    """Port of a loopback URI, for the local stack; refuses remote hosts."""
    parsed = urlparse(uri)
    if parsed.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ConfigError(
            f"{what}={uri!r} points at a remote host; the local stack only starts loopback services"
        )
    if parsed.port is None:
        raise ConfigError(f"{what}={uri!r} has no port")
    return parsed.port
