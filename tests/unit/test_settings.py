"""Settings from the environment; secrets stay secret."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexpair.errors import ConfigError
from indexpair.settings import Settings, load_settings, loopback_port


def test_standard_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_URI", "http://127.0.0.1:19999")
    monkeypatch.setenv("MILVUS_TOKEN", "root:s3cr3t-value")
    monkeypatch.setenv("INDEXPAIR_PRODUCTION_ALIAS", "catalog_live")
    s = load_settings()
    assert s.milvus_uri == "http://127.0.0.1:19999"
    assert s.production_alias == "catalog_live"
    assert "s3cr3t-value" not in repr(s)
    assert s.milvus_token is not None
    assert s.milvus_token.get_secret_value() == "root:s3cr3t-value"


def test_placeholder_secret_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILVUS_TOKEN", "changeme")
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings()


def test_bad_number_names_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEXPAIR_EMBED_BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match="embed_batch_size"):
        load_settings()


def test_loopback_port() -> None:
    assert loopback_port("http://127.0.0.1:4200/api", "PREFECT_API_URL") == 4200
    with pytest.raises(ConfigError, match="remote host"):
        loopback_port("https://milvus.example.com:443", "MILVUS_URI")


def test_ui_url() -> None:
    s = Settings(prefect_api_url="http://127.0.0.1:4200/api")
    assert s.flow_run_url("x") == "http://127.0.0.1:4200/runs/flow-run/x"


def test_mlflow_never_falls_back_to_a_store_in_the_working_directory(tmp_path: Path) -> None:
    """Every entry point names the tracking server for MLflow and the processes it starts.

    Run in a fresh process from an empty folder, with no MLFLOW_TRACKING_URI set.
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    probe = (
        "import os; from indexpair.settings import load_settings; s = load_settings(); "
        "import mlflow; print(os.environ['MLFLOW_TRACKING_URI'], mlflow.get_tracking_uri(), "
        "s.mlflow_tracking_uri)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    exported, seen_by_mlflow, configured = out.stdout.split()
    assert exported == seen_by_mlflow == configured
    assert not (tmp_path / "mlflow.db").exists()
