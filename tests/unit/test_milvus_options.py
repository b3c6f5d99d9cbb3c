"""Milvus connection settings (token, TLS) reach every MilvusClient indexpair opens."""

from __future__ import annotations

import pytest

from indexpair.gateways.milvus import client_options
from indexpair.settings import Settings, load_settings


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in ("MILVUS_TOKEN", "MILVUS_SECURE", "MILVUS_SERVER_PEM_PATH", "MILVUS_SERVER_NAME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_plain_local_server_gets_no_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    options = client_options(settings(monkeypatch, MILVUS_URI="http://127.0.0.1:19530"))
    assert options == {"uri": "http://127.0.0.1:19530", "token": "", "timeout": 30.0}


def test_token_and_tls_settings_are_passed_through(monkeypatch: pytest.MonkeyPatch) -> None:
    options = client_options(
        settings(
            monkeypatch,
            MILVUS_URI="https://milvus.example.com:19530",
            MILVUS_TOKEN="user:s3cr3t-value",
            MILVUS_SERVER_PEM_PATH="/etc/milvus/ca.pem",
            MILVUS_SERVER_NAME="milvus.example.com",
        )
    )
    assert options["token"] == "user:s3cr3t-value"
    assert options["secure"] is True  # implied by https
    assert options["server_pem_path"] == "/etc/milvus/ca.pem"
    assert options["server_name"] == "milvus.example.com"


def test_secure_flag_without_https(monkeypatch: pytest.MonkeyPatch) -> None:
    options = client_options(settings(monkeypatch, MILVUS_SECURE="true"))
    assert options["secure"] is True


def test_token_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, MILVUS_TOKEN="user:s3cr3t-value")
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("code", "expected"),
    [(2, True), (65535, True), ("UNAVAILABLE", True), ("DEADLINE_EXCEEDED", True),
     (1100, False), ("INVALID_ARGUMENT", False)],
)  # fmt: skip
def test_which_milvus_errors_are_retried(code: object, expected: bool) -> None:
    import grpc
    from pymilvus import MilvusException

    from indexpair.gateways.milvus import retriable

    value = getattr(grpc.StatusCode, code) if isinstance(code, str) else code
    assert retriable(MilvusException(value, "boom")) is expected
