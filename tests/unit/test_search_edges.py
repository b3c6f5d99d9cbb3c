"""The search service's edges that need no service: the schema's bounds, a long ``q``,
and the query log's file mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexpair.serving.app import MAX_K, create_app
from indexpair.serving.query_log import QueryLog
from indexpair.settings import Settings


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    # No `with`: the lifespan (which connects to Milvus) does not run; a request that
    # passed validation would fail, so every answer below comes from validation alone.
    settings = Settings(state_dir=tmp_path, serve_max_query_chars=50)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_schema_declares_the_bounds_of_q_and_k(client: TestClient) -> None:
    params = {
        p["name"]: p["schema"]
        for p in client.app.openapi()["paths"]["/search"]["get"]["parameters"]  # type: ignore[attr-defined]
    }
    assert params["k"]["minimum"] == 1 and params["k"]["maximum"] == MAX_K
    assert params["q"]["maxLength"] == 50


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": "x" * 51}, "q: String should have at most 50 characters (got 51 characters)"),
        ({"q": "boots", "k": 0}, "k: Input should be greater than or equal to 1 (got 0)"),
        ({"q": "boots", "k": MAX_K + 1}, f"less than or equal to {MAX_K} (got {MAX_K + 1})"),
        ({"q": "boots", "k": "ten"}, "k: Input should be a valid integer"),
    ],
)
def test_bad_input_is_a_422_naming_the_limit(
    client: TestClient, params: dict[str, object], fragment: str
) -> None:
    answer = client.get("/search", params=params)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.text
    assert "x" * 41 not in answer.text  # a long query is not echoed back
    metrics = client.get("/metrics").text
    assert 'indexpair_search_requests_total{code="422"} 1.0' in metrics


def test_a_long_query_is_refused_before_the_searcher(client: TestClient) -> None:
    answer = client.get("/search", params={"q": "boots " * 1000})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "q"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_query_log_is_created_owner_only_and_stays_so(tmp_path: Path) -> None:
    path = tmp_path / "state" / "query-log.jsonl"
    log = QueryLog(path, max_entries=3)
    log.append("boots", 10, "c", "1")
    assert _mode(path) == 0o600
    for i in range(8):  # compacted at least once: the rewritten file is 0600 too
        log.append(f"tent {i}", 10, "c", "1")
    assert len(path.read_text().splitlines()) < 6
    assert _mode(path) == 0o600
    assert not path.with_suffix(".tmp").exists()


def test_query_log_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "query-log.jsonl"
    path.write_text('{"q": "old"}\n')
    path.chmod(0o644)
    QueryLog(path, max_entries=10).append("boots", 10, "c", "1")
    assert _mode(path) == 0o600
    assert path.read_text().count("\n") == 2
