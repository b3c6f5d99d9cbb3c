"""The canary against real Milvus Lite, MLflow, Prefect and real models: a TF-IDF pair
live, a MiniLM candidate awaiting approval, the search service in-process.

Shadow mirroring never changes a live answer; interleaved answers label every hit with
the pair that produced it (and the consistency checker verifies each hit against it);
clicks are credited, refused when they name an unknown query or a hit never shown; the
evidence outlives the service and reaches the approval report and `indexpair status`.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import PairState
from indexpair.serving import create_app
from indexpair.serving.canary import report_key
from indexpair.serving.consistency import ConsistencyChecker
from indexpair.serving.query import PairSearcher
from indexpair.settings import Settings
from indexpair.status import collect_status
from tasks.promotion import switch_alias
from tests.conftest import DATA_DIR
from tests.integration.test_query_client import _build

pytestmark = pytest.mark.integration
ALIAS = "it_canary"
QUERIES = [q["query"] for q in json.loads((DATA_DIR / "golden_queries_small.json").read_text())]


@pytest.fixture(scope="module")
def pairs(stack_settings: Settings, demo_versions: dict[str, str]) -> Iterator[dict[str, str]]:
    """TF-IDF live behind the alias; MiniLM built over the same rows, awaiting approval."""
    live = f"it_cn_v{demo_versions['tfidf']}_aaaa"
    candidate = f"it_cn_v{demo_versions['minilm']}_bbbb"
    with MilvusGateway(stack_settings) as milvus:
        _build(stack_settings, milvus, live, demo_versions["tfidf"], 300)
        _build(stack_settings, milvus, candidate, demo_versions["minilm"], 300)
        with prefect_api.prefect_api(stack_settings):
            switch_alias(stack_settings, ALIAS, live, None)
        milvus.update_pair(
            candidate, state=PairState.AWAITING_APPROVAL.value, alias=ALIAS, baseline=live
        )
        yield {"live": live, "candidate": candidate}
        milvus.client.drop_alias(ALIAS)
        for name in (live, candidate):
            milvus.drop(name)


@pytest.fixture(scope="module")
def settings(stack_settings: Settings) -> Settings:
    """Every session interleaved, every other query mirrored, evidence stored each second."""
    return stack_settings.model_copy(
        update={
            "shadow_fraction": 1.0,
            "interleave_fraction": 1.0,
            "shadow_queue_size": 1000,
            "canary_refresh_s": 0.5,
            "canary_publish_s": 1.0,
        }
    )


def _service(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, PairSearcher(settings, ALIAS)))


def _until(check: Callable[[], Any], what: str, timeout_s: float = 120) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def service(settings: Settings, pairs: dict[str, str]) -> Iterator[TestClient]:
    """The search service, once it compares the candidate and holds its model."""
    with _service(settings) as client:
        _until(lambda: client.get("/canary").json()["candidate"], "the candidate")
        client.get("/search", params={"q": QUERIES[0]})  # the first mirror loads the model
        _until(lambda: client.get("/canary").json()["shadow"]["mirrored"], "a mirrored query")
        yield client


def test_shadow_never_changes_the_live_answer(
    service: TestClient, settings: Settings, pairs: dict[str, str]
) -> None:
    before = service.get("/canary").json()["shadow"]
    with PairSearcher(settings, ALIAS) as direct:
        for q in QUERIES:
            r = service.get("/search", params={"q": q, "k": 10})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["collection"] == pairs["live"] and body["interleaved"] is False
            expected = direct.search(q, 10)
            assert [h["id"] for h in body["hits"]] == [h.id for h in expected.hits]
    n = len(QUERIES)
    after = _until(
        lambda: (
            (s := service.get("/canary").json()["shadow"])["mirrored"] + s["dropped"]
            >= before["mirrored"] + n
            and s
        ),
        "the mirrored queries",
    )
    assert after["errors"] == 0 and after["dropped"] == 0
    assert 0.0 <= after["mean_overlap_at_k"] < 1.0  # TF-IDF and MiniLM disagree somewhat
    assert after["candidate_ms_p50"] > 0
    metrics = service.get("/metrics").text
    assert "indexpair_search_errors_total{" not in metrics  # no sample: no error
    assert f'indexpair_shadow_queries_total{{candidate="{pairs["candidate"]}"' in metrics


def test_interleaved_hits_name_their_pair_and_check_out(
    service: TestClient, settings: Settings, pairs: dict[str, str]
) -> None:
    teams_seen: set[str] = set()
    with ConsistencyChecker(settings) as checker:
        for q in QUERIES[:6]:
            body = service.get("/search", params={"q": q}, headers={"X-Session-Id": "u1"}).json()
            assert body["interleaved"] is True and body["query_id"]
            assert set(body["pairs"]) == {"live", "candidate"}
            for hit in body["hits"]:
                assert hit["collection"] == pairs[hit["team"]]
            teams_seen |= {h["team"] for h in body["hits"]}
            verdict = checker.check_labelled(q, body["hits"])
            assert verdict.ok, verdict.detail
            # The checker catches a hit labelled with the other pair.
            other = "live" if body["hits"][0]["team"] == "candidate" else "candidate"
            forged = [{**body["hits"][0], **body["pairs"][other]}, *body["hits"][1:]]
            assert not checker.check_labelled(q, forged).ok
    assert teams_seen == {"live", "candidate"}
    opted_out = service.get(
        "/search", params={"q": QUERIES[0], "session": "u1", "interleave": "false"}
    ).json()
    assert opted_out["interleaved"] is False and opted_out["collection"] == pairs["live"]
    assert all("team" not in h for h in opted_out["hits"])


def test_clicks_are_credited_and_bad_ones_refused(service: TestClient) -> None:
    before = service.get("/canary").json()["interleave"]
    body = service.get("/search", params={"q": QUERIES[1], "session": "u2"}).json()
    clicked = next(h for h in body["hits"] if h["team"] == "candidate")
    ok = service.post("/feedback", json={"query_id": body["query_id"], "hit_id": clicked["id"]})
    assert ok.status_code == 200 and ok.json()["recorded"] is True
    again = service.post("/feedback", json={"query_id": body["query_id"], "hit_id": clicked["id"]})
    assert again.json()["recorded"] is False  # the same click counts once
    after = service.get("/canary").json()["interleave"]
    assert after["wins"]["candidate"] == before["wins"]["candidate"] + 1
    assert after["clicks"]["candidate"] == before["clicks"]["candidate"] + 1
    assert 0 < after["p_value"] <= 1

    unknown = service.post("/feedback", json={"query_id": "no-such-query", "hit_id": "P1"})
    assert unknown.status_code == 404
    assert "query id 'no-such-query' is unknown" in unknown.json()["detail"]
    unseen = service.post("/feedback", json={"query_id": body["query_id"], "hit_id": "P9999999"})
    assert unseen.status_code == 422
    assert "hit 'P9999999' was not shown" in unseen.json()["detail"]
    assert service.post("/feedback", json={"query_id": ""}).status_code == 422
    assert 'indexpair_clicks_total{collection="' in service.get("/metrics").text


def test_evidence_outlives_the_service_and_reaches_the_approver(
    service: TestClient, settings: Settings, pairs: dict[str, str]
) -> None:
    shown = service.get("/canary").json()
    stored = _until(
        lambda: (
            (c := _stored(settings, pairs["candidate"]))
            and c["interleave"]["wins"] == shown["interleave"]["wins"]
            and c
        ),
        "the evidence stored on the candidate",
    )
    assert stored["shadow"]["mirrored"] >= len(QUERIES)
    with prefect_api.prefect_api(settings):
        report = _until(
            lambda: prefect_api.latest_markdown(report_key(pairs["candidate"])), "the report"
        )
    assert "## Live evidence" in report and "mirrored queries" in report
    with _service(settings) as restarted:  # a second service starts from the stored figures
        again = _until(
            lambda: (
                restarted.get("/canary").json()["candidate"] and restarted.get("/canary").json()
            ),
            "the candidate",
        )
        assert again["interleave"]["wins"] == shown["interleave"]["wins"]
        assert again["shadow"]["mirrored"] >= stored["shadow"]["mirrored"]


def _stored(settings: Settings, candidate: str) -> dict[str, Any] | None:
    status = collect_status(settings)
    found = [c["canary"] for c in status["collections"] if c["name"] == candidate]
    return found[0] if found else None


def test_remembered_responses_stay_bounded_and_light_for_the_collector(
    service: TestClient,
) -> None:
    canary = service.app.state.canary  # type: ignore[attr-defined]
    shared = canary.shared
    full = canary.settings
    canary.settings = full.model_copy(update={"canary_impressions": 3})
    try:
        first = service.get("/search", params={"q": QUERIES[2], "session": "u3"}).json()
        assert first["interleaved"] is True
        hit = first["hits"][0]["id"]
        click = {"query_id": first["query_id"], "hit_id": hit}
        assert service.post("/feedback", json=click).json()["recorded"] is True
        assert shared.clicks[first["query_id"]] == {hit}
        for q in QUERIES[3:6]:
            assert service.get("/search", params={"q": q}).status_code == 200
        assert len(shared.impressions) == 3 and first["query_id"] not in shared.impressions
        # Clicks are kept only for remembered responses: forgotten together with them.
        assert first["query_id"] not in shared.clicks
        assert set(shared.clicks) <= set(shared.impressions)
        assert service.post("/feedback", json=click).status_code == 404
        gc.collect()  # a pass untracks the (hit, team, pair) tuples,
        gc.collect()  # the next the tuple holding them, as the service's passes do
        for impression in shared.impressions.values():
            assert impression.shown and not gc.is_tracked(impression.shown)
            assert not any(gc.is_tracked(h) for h in impression.shown)
    finally:
        canary.settings = full
