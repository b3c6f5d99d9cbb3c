"""Drive the webhook receiver as a real process: sign deliveries like MLflow, record CircleCI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from deployments.webhook import signature

INDEXPAIR = str(Path(sys.executable).parent / "indexpair")


def alias_event(name: str, alias: str, version: str) -> dict[str, Any]:
    """A ``model_version_alias.created`` body as MLflow sends it."""
    return {
        "entity": "model_version_alias",
        "action": "created",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "data": {"name": name, "alias": alias, "version": version},
    }


def signed(
    secret: str, body: bytes, delivery_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """Headers MLflow would send with ``body``."""
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": signature(secret, delivery_id, stamp, body),
    }


@dataclass
class Recorder:
    """A local stand-in for the CircleCI API that records each request."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def recording_server(status: int = 201) -> Iterator[Recorder]:
    """An HTTP server on a free loopback port answering like CircleCI's trigger endpoint."""
    recorder = Recorder(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", 0))
            recorder.requests.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(self.rfile.read(length) or b"null"),
                }
            )
            answer = json.dumps({"id": str(uuid.uuid4()), "number": 7, "state": "pending"})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def receiver(port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """``indexpair webhook serve`` as a child process; yields its webhook URL. Always stopped."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [INDEXPAIR, "webhook", "serve", "--port", str(port)],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"receiver exited {proc.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver not healthy: {log.read_text()}")
            time.sleep(0.3)
        yield f"{base}/mlflow/webhook"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
