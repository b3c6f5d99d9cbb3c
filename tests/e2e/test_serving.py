"""Serving the pair: the search service as a user meets it, under load while the alias
switches (never an error, never a mixed answer), and the shadow comparison it feeds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from indexpair.gateways import prefect as prefect_api
from indexpair.serving.consistency import ConsistencyChecker
from indexpair.settings import Settings
from tasks.promotion import switch_alias
from tests.conftest import DATA_DIR, PROJECT_DIR, free_port
from tests.e2e.conftest import build_name, decide, promotion_params, start
from tests.e2e.test_promote_flow import approval_form

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ALIAS = "e2e_serve"
QUERIES = [q["query"] for q in json.loads((DATA_DIR / "golden_queries_small.json").read_text())]


def _wait_for(url: str, ok: Any, timeout_s: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=10)
            if ok(last):
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout_s} s: {last!r}")


@pytest.fixture(scope="module")
def served(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Any]]:
    """TF-IDF promoted; `indexpair serve` answering live queries; MiniLM promoted over it."""
    first = start(stack_settings, promotion_params(demo_versions["tfidf"], ALIAS))
    assert decide(stack_settings, first, approve=True)["state_type"] == "COMPLETED"
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "INDEXPAIR_SERVE_PORT": str(port), "PYTHONPATH": str(PROJECT_DIR)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--alias", ALIAS],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/healthz", lambda r: r.status_code == 200)
        for q in QUERIES[:12]:  # live traffic, logged for the shadow comparison
            assert httpx.get(f"{url}/search", params={"q": q}, timeout=30).status_code == 200
        second = start(stack_settings, promotion_params(demo_versions["minilm"], ALIAS))
        form = approval_form(stack_settings, second["id"])
        assert decide(stack_settings, second, approve=True)["state_type"] == "COMPLETED"
        yield {
            "url": url,
            "v1": build_name(first, demo_versions["tfidf"]),
            "v2": build_name(second, demo_versions["minilm"]),
            "form": form,
            "log": log,
        }
    finally:
        proc.terminate()
        proc.wait(30)


def test_approval_report_compares_live_and_candidate(served: dict[str, Any]) -> None:
    report = served["form"]["description"]
    assert f"## Shadow comparison: live `{served['v1']}` vs candidate" in report
    golden = re.search(r"\| golden \| (\d+)[^|]*\| ([\d.]+) \|", report)
    live = re.search(r"\| recent live \| (\d+)[^|]*\| ([\d.]+) \|", report)
    assert golden and live, report
    assert int(golden.group(1)) >= 25 and 0 <= float(golden.group(2)) <= 1
    assert int(live.group(1)) >= 10  # the queries the service answered before


def test_endpoints_as_a_user_meets_them(
    served: dict[str, Any], demo_versions: dict[str, str]
) -> None:
    url = served["url"]
    # The service keeps answering from TF-IDF until MiniLM is loaded, then moves over.
    pair = _wait_for(f"{url}/pair", lambda r: r.json()["collection"] == served["v2"]).json()
    assert (pair["alias"], pair["model_version"], pair["dim"]) == (
        ALIAS,
        demo_versions["minilm"],
        384,
    )
    assert httpx.get(f"{url}/healthz").json() == {
        "status": "ok",
        "alias": ALIAS,
        "collection": served["v2"],
    }
    r = httpx.get(f"{url}/search", params={"q": "waterproof hiking boots", "k": 3}, timeout=30)
    body = r.json()
    assert r.status_code == 200, body
    assert (body["alias"], body["collection"], body["model_version"]) == (
        ALIAS,
        served["v2"],
        demo_versions["minilm"],
    )
    assert len(body["hits"]) == 3 and set(body["hits"][0]) == {"id", "score"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"q": "", "k": 3}, 400, "(got '')"),
        ({"q": "  ", "k": 3}, 400, "(got '  ')"),
        ({"q": "boots", "k": 0}, 422, "(got 0)"),
        ({"q": "boots", "k": 1000}, 422, "(got 1000)"),
        ({"q": "boots", "k": "ten"}, 422, "ten"),
        ({"q": "boots " * 200, "k": 3}, 422, "at most 1000 characters (got 1200 characters)"),
    ]
    for params, code, fragment in cases:
        bad = httpx.get(f"{url}/search", params=params)
        assert (bad.status_code, fragment in bad.text) == (code, True), bad.text
    metrics = httpx.get(f"{url}/metrics").text
    assert 'indexpair_search_requests_total{code="200"}' in metrics
    assert 'indexpair_search_requests_total{code="400"} 2.0' in metrics
    assert "indexpair_search_latency_seconds_bucket" in metrics
    version = float(demo_versions["minilm"])
    assert (
        f'indexpair_model_version{{alias="{ALIAS}",model_name="product-embedder"}} {version}'
        in (metrics)
    )
    assert f'collection="{served["v2"]}"' in metrics


def test_switches_under_load_never_error_nor_mix(
    served: dict[str, Any], stack_settings: Settings
) -> None:
    url = served["url"]
    _wait_for(f"{url}/pair", lambda r: r.json()["collection"] == served["v2"])
    answers: list[tuple[str, int, dict[str, Any]]] = []
    stop = threading.Event()

    def load(seed: int) -> None:
        with httpx.Client(timeout=30) as http:
            i = seed
            while not stop.is_set():
                q = QUERIES[i % len(QUERIES)]
                r = http.get(f"{url}/search", params={"q": q, "k": 5})
                answers.append((q, r.status_code, r.json()))
                i += 1

    workers = [threading.Thread(target=load, args=(s,)) for s in range(3)]
    for w in workers:
        w.start()
    plan = [served["v1"], served["v2"], served["v1"], served["v2"]]  # rollback, promote, ...
    current = served["v2"]
    try:
        with prefect_api.prefect_api(stack_settings):
            for target in plan:
                time.sleep(1.5)
                switch_alias(stack_settings, ALIAS, target, current)
                current = target
        time.sleep(1.5)
    finally:
        stop.set()
        for w in workers:
            w.join()
    errors = [(q, code, body) for q, code, body in answers if code != 200]
    assert not errors, errors[:3]
    checker = ConsistencyChecker(stack_settings)
    try:
        mixed = []
        for q, _, body in answers:
            hits = [(h["id"], h["score"]) for h in body["hits"]]
            verdict = checker.check(
                q, body["collection"], body["model_name"], body["model_version"], hits
            )
            if not verdict.ok:
                mixed.append((q, body["collection"], verdict.detail))
    finally:
        checker.close()
    assert not mixed, mixed[:3]
    assert len(answers) >= 20
    assert {body["collection"] for _, _, body in answers} == {served["v1"], served["v2"]}


def test_service_answers_again_after_a_milvus_restart(
    served: dict[str, Any], stack_settings: Settings
) -> None:
    from indexpair import stack
    from indexpair.stack import procs

    url = served["url"]
    (milvus,) = stack.status(stack_settings, ["milvus"])
    assert milvus.pid is not None
    procs.terminate(milvus.pid, 15)
    stack.up(stack_settings, PROJECT_DIR, services=["milvus"])
    r = _wait_for(f"{url}/search?q=hiking+boots&k=3", lambda r: r.status_code == 200, timeout_s=60)
    assert r.json()["hits"]
    assert httpx.get(f"{url}/healthz").status_code == 200
