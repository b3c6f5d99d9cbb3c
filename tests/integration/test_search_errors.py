"""What the search service tells a caller when it fails, against the real Milvus and
MLflow: a generic reason and an error id, never an internal URI; the log has the detail
under that id, and never the query text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairMetadata
from indexpair.serving.app import create_app
from indexpair.serving.query import PairSearcher
from indexpair.settings import Settings
from tests.conftest import MODEL_NAME

pytestmark = pytest.mark.integration
ALIAS = "it_errors"
SECRET_QUERY = "confidential-query-7f3a"


@pytest.fixture()
def client(stack_settings: Settings, tmp_path: object) -> Iterator[TestClient]:
    settings = stack_settings.model_copy(update={"query_log_size": 0})
    app = create_app(settings, PairSearcher(settings, ALIAS, 0.0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _internals(settings: Settings) -> list[str]:
    return [settings.milvus_uri, settings.mlflow_tracking_uri, "127.0.0.1", "Traceback"]


def _service_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the service logged (the test's own HTTP client, httpx, logs the URL it asks)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))


def _error_id(body: dict[str, object]) -> str:
    error_id = str(body["error_id"])
    assert re.fullmatch(r"[0-9a-f]{12}", error_id), body
    return error_id


def test_no_pair_yet_is_a_generic_503(
    client: TestClient, stack_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for path, code in [("/healthz", 503), ("/pair", 404), (f"/search?q={SECRET_QUERY}", 503)]:
        answer = client.get(path)
        assert answer.status_code == code, answer.text
        assert f"alias '{ALIAS}' resolves to no pair" in answer.text
        for internal in _internals(stack_settings):
            assert internal not in answer.text, (path, answer.text)
        error_id = _error_id(answer.json())
        # The detail (the Milvus URI included) is in the log, under the same id.
        logged = [r.getMessage() for r in caplog.records if error_id in r.getMessage()]
        assert logged and stack_settings.milvus_uri in logged[0], logged
    assert SECRET_QUERY not in _service_log(caplog)


def test_a_broken_pair_is_a_generic_500_without_the_query_in_the_log(
    client: TestClient, stack_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A pair whose model version the registry does not have: encoding the query fails.
    name = "it_err_v999_dddd"
    meta = PairMetadata(
        model_name=MODEL_NAME,
        model_version="999",
        model_uri=f"models:/{MODEL_NAME}/999",
        dim=4,
        build_id="dddd",
        source_uri="none",
        source_fingerprint="sha256:none",
        source_rows=1,
    )
    with MilvusGateway(stack_settings) as milvus:
        milvus.create_pair_collection(name, meta)
        milvus.insert(name, ["1"], ["h"], np.ones((1, 4), dtype=np.float32))
        milvus.finalize(name)
        milvus.client.create_alias(name, ALIAS)
        try:
            caplog.set_level(logging.INFO)
            answer = client.get("/search", params={"q": SECRET_QUERY, "k": 3})
        finally:
            milvus.client.drop_alias(ALIAS)
            milvus.drop(name)
    assert answer.status_code == 500, answer.text
    body = answer.json()
    error_id = _error_id(body)
    assert body["detail"] == f"internal error (error id {error_id})"
    for internal in [*_internals(stack_settings), "RegistryError", "models:/"]:
        assert internal not in answer.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(error_id in r.getMessage() and "999" in r.getMessage() for r in errors), errors
    assert SECRET_QUERY not in _service_log(caplog)
    metrics = client.get("/metrics").text
    assert 'indexpair_search_requests_total{code="500"} 1.0' in metrics
