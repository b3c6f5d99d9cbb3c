"""Each gateway is a context that releases what it holds; nothing is reached on entry."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from indexpair.errors import ConfigError, SourceDataError
from indexpair.gateways.circleci import CircleCiGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.gateways.s3 import S3Gateway
from indexpair.settings import Settings


def test_mlflow_registry_builds_one_client_and_drops_it_on_exit() -> None:
    with MlflowRegistry(Settings()) as registry:
        assert registry._client is None  # entering reaches nothing
        client = registry.client
        assert registry.client is client
    assert registry._client is None


def test_s3_gateway_closes_its_client_and_keeps_one_filesystem() -> None:
    settings = Settings(
        aws_endpoint_url="http://127.0.0.1:9",
        aws_access_key_id=SecretStr("AKIAUNITTEST"),
        aws_secret_access_key=SecretStr("unit-secret-value"),
    )
    with S3Gateway(settings) as s3:
        assert s3.filesystem() is s3.filesystem()
        assert s3.client is s3.client
        with pytest.raises(SourceDataError, match="not an s3://bucket/key URI"):
            s3.head("file:///nowhere")
    assert s3._client is None


def test_circleci_gateway_refuses_without_a_token_and_closes() -> None:
    no_token = pytest.raises(ConfigError, match="INDEXPAIR_CIRCLECI_TOKEN is not set")
    with CircleCiGateway(Settings()) as circleci, no_token:
        circleci.trigger_pipeline({"model_name": "m", "model_version": "1"})
    assert circleci.http.is_closed
