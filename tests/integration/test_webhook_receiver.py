"""The webhook receiver as a real process: forged, stale, replayed and foreign deliveries are
refused with nothing triggered; a genuine one triggers CircleCI with the documented request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.support.webhooks import Recorder, alias_event, receiver, recording_server, signed

pytestmark = pytest.mark.integration
SECRET = "whsec-test-5b1f0c7e9a"
CIRCLE_TOKEN = "circle-token-test-8d2e61"
MODEL = "product-embedder"


def receiver_env(state: Path, circleci_url: str) -> dict[str, str]:
    return {
        "INDEXPAIR_STATE_DIR": str(state),
        "INDEXPAIR_WEBHOOK_SECRET": SECRET,
        "INDEXPAIR_WEBHOOK_TARGET": "circleci",
        "INDEXPAIR_CIRCLECI_API_URL": circleci_url,
        "INDEXPAIR_CIRCLECI_PROJECT_SLUG": "gh/acme/indexpair",
        "INDEXPAIR_CIRCLECI_TOKEN": CIRCLE_TOKEN,
        "INDEXPAIR_TRIGGER_MODELS": MODEL,
        # Nothing may reach Prefect or Milvus from this receiver.
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "MILVUS_URI": "http://127.0.0.1:9",
    }


@pytest.fixture()
def circleci() -> Iterator[Recorder]:
    with recording_server() as recorder:
        yield recorder


@pytest.fixture()
def setup(tmp_path: Path, circleci: Recorder) -> dict[str, Any]:
    return {
        "port": free_port(),
        "env": receiver_env(tmp_path / "state", circleci.url),
        "log": tmp_path / "receiver.log",
    }


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=10)


def wait_requests(recorder: Recorder, count: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while len(recorder.requests) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_genuine_delivery_triggers_the_circleci_pipeline(
    setup: dict[str, Any], circleci: Recorder
) -> None:
    body = json.dumps(alias_event(MODEL, "staging", "7")).encode()
    with receiver(setup["port"], setup["env"], setup["log"]) as url:
        started = time.perf_counter()
        response = post(url, body, signed(SECRET, body))
        answered_s = time.perf_counter() - started
        wait_requests(circleci, 1)
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "model_name": MODEL, "model_version": "7"}
    assert answered_s < 1.0  # the trigger runs after the answer
    (request,) = circleci.requests
    assert request["path"] == "/api/v2/project/gh/acme/indexpair/pipeline"
    assert request["headers"]["circle-token"] == CIRCLE_TOKEN
    assert request["headers"]["content-type"] == "application/json"
    assert request["body"] == {
        "branch": "main",
        "parameters": {"model_name": MODEL, "model_version": "7"},
    }
    log = setup["log"].read_text()
    assert "CircleCI pipeline #7 for product-embedder v7" in log
    assert SECRET not in log and CIRCLE_TOKEN not in log


def _bad_requests() -> list[tuple[str, bytes, dict[str, str], int, str]]:
    good = json.dumps(alias_event(MODEL, "staging", "8")).encode()
    now = int(time.time())
    unsigned = {k: v for k, v in signed(SECRET, good).items() if k != "X-MLflow-Signature"}
    no_stamp = {k: v for k, v in signed(SECRET, good).items() if k != "X-MLflow-Timestamp"}
    bad_stamp = signed(SECRET, good) | {"X-MLflow-Timestamp": "yesterday"}
    other = json.dumps(alias_event(MODEL, "production", "8")).encode()
    foreign = json.dumps(alias_event("someone-else", "staging", "8")).encode()
    created = json.dumps({**alias_event(MODEL, "staging", "8"), "entity": "model_version"})
    return [
        ("missing signature", good, unsigned, 401, "missing X-MLflow-Signature"),
        ("wrong secret", good, signed("not-the-secret", good), 401, "bad signature"),
        ("body changed", good.replace(b'"8"', b'"9"'), signed(SECRET, good), 401, "bad signature"),
        ("stale", good, signed(SECRET, good, timestamp=now - 301), 401, "s old (limit 300 s)"),
        ("future", good, signed(SECRET, good, timestamp=now + 600), 401, "s old (limit 300 s)"),
        ("no timestamp", good, no_stamp, 400, "missing X-MLflow-Delivery-Id or"),
        ("bad timestamp", good, bad_stamp, 400, "is not Unix seconds"),
        ("malformed JSON", b"{not json", signed(SECRET, b"{not json"), 400, "not a JSON object"),
        ("unknown event", created.encode(), signed(SECRET, created.encode()), 200, "ignored"),
        ("other alias", other, signed(SECRET, other), 200, "alias 'production' is not"),
        ("other model", foreign, signed(SECRET, foreign), 200, "model 'someone-else' is not"),
    ]


def test_bad_deliveries_are_refused_and_trigger_nothing(
    setup: dict[str, Any], circleci: Recorder
) -> None:
    answers = {}
    with receiver(setup["port"], setup["env"], setup["log"]) as url:
        for case, body, headers, _, _ in _bad_requests():
            answers[case] = post(url, body, headers)
        time.sleep(2)  # a background trigger would have reached the recorder by now
    for case, _, _, status, fragment in _bad_requests():
        assert answers[case].status_code == status, (case, answers[case].text)
        assert fragment in answers[case].text, (case, answers[case].text)
    assert circleci.requests == []
    log = setup["log"].read_text()
    assert "refused webhook delivery (401): bad signature" in log
    assert SECRET not in log and CIRCLE_TOKEN not in log


def test_replayed_delivery_is_refused_even_after_a_restart(
    setup: dict[str, Any], circleci: Recorder
) -> None:
    body = json.dumps(alias_event(MODEL, "staging", "9")).encode()
    headers = signed(SECRET, body)
    with receiver(setup["port"], setup["env"], setup["log"]) as url:
        first = post(url, body, headers)
        again = post(url, body, headers)
        wait_requests(circleci, 1)
    with receiver(setup["port"], setup["env"], setup["log"]) as url:
        after_restart = post(url, body, headers)
        time.sleep(1)
    assert first.status_code == 202
    assert again.status_code == after_restart.status_code == 409
    assert "was received before" in after_restart.text
    assert len(circleci.requests) == 1


def test_circleci_down_is_logged_clearly(tmp_path: Path) -> None:
    env = receiver_env(tmp_path / "state", f"http://127.0.0.1:{free_port()}")
    body = json.dumps(alias_event(MODEL, "staging", "10")).encode()
    log = tmp_path / "receiver.log"
    with receiver(free_port(), env, log) as url:
        response = post(url, body, signed(SECRET, body))
        deadline = time.monotonic() + 20
        while "could not trigger" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert response.status_code == 202
    text = log.read_text()
    assert "could not trigger product-embedder v10: CircleCI API at http://127.0.0.1:" in text
    assert "is unreachable (ConnectError)" in text
    assert SECRET not in text and CIRCLE_TOKEN not in text


def test_prefect_down_is_logged_clearly(tmp_path: Path) -> None:
    env = receiver_env(tmp_path / "state", "http://127.0.0.1:9") | {
        "INDEXPAIR_WEBHOOK_TARGET": "prefect"
    }
    body = json.dumps(alias_event(MODEL, "staging", "11")).encode()
    log = tmp_path / "receiver.log"
    with receiver(free_port(), env, log) as url:
        response = post(url, body, signed(SECRET, body))
        deadline = time.monotonic() + 30
        while "could not trigger" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert response.status_code == 202
    text = log.read_text()
    assert (
        "could not trigger product-embedder v11: Prefect API at http://127.0.0.1:9/api is" in text
    )
    assert SECRET not in text


def _raw_answer(port: int, request: bytes, timeout_s: float = 5) -> bytes:
    """Send ``request`` on a raw socket (headers, and maybe no body); the answer back
    (read until its declared length: headers and body may come in separate packets)."""
    import re
    import socket

    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        while True:
            head, sep, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                return answer
            chunk = sock.recv(4096)
            if not chunk:
                return answer
            answer += chunk


def test_size_and_headers_are_checked_before_the_body(
    setup: dict[str, Any], circleci: Recorder
) -> None:
    big = json.dumps({**alias_event(MODEL, "staging", "12"), "pad": "x" * 100_000}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the receiver has to count
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    with receiver(setup["port"], setup["env"], setup["log"]) as url:
        declared = post(url, big, signed(SECRET, big))
        streamed = httpx.post(url, content=chunks(), headers=signed(SECRET, big), timeout=10)
        text = json.dumps(alias_event(MODEL, "staging", "12")).encode()
        plain = post(url, text, signed(SECRET, text) | {"Content-Type": "text/plain"})
        # Headers that announce 10 MB and carry no signature, and then no body at all:
        # the answer comes at once, without waiting for (or reading) the body.
        started = time.perf_counter()
        head = _raw_answer(
            setup["port"],
            b"POST /mlflow/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n",
        )
        unsigned_s = time.perf_counter() - started
        huge = _raw_answer(
            setup["port"],
            b"POST /mlflow/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n",
        )
        time.sleep(1)
    assert declared.status_code == 413, declared.text
    assert f"body of {len(big)} bytes is over the limit of 65536 bytes" in declared.text
    assert streamed.status_code == 413, streamed.text
    assert "more than 65536 bytes" in streamed.text
    assert plain.status_code == 415 and "'text/plain' is not 'application/json'" in plain.text
    assert head.startswith(b"HTTP/1.1 401") and b"missing X-MLflow-Signature" in head
    assert unsigned_s < 2
    assert huge.startswith(b"HTTP/1.1 413")
    assert circleci.requests == []
