"""A local webhook receiver for the approval notifications: collects each JSON post."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class NotifyReceiver:
    """What a Slack-compatible webhook received: the ``text`` of each post, in order."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)

    def about(self, flow_run_id: str) -> list[str]:
        """The texts of the posts that link to this flow run."""
        return [str(p.get("text")) for p in self.posts if f"/flow-run/{flow_run_id}" in str(p)]

    def wait_for(self, flow_run_id: str, headline: str, timeout_s: float = 60) -> str:
        """The first post about the run that starts with ``headline``; fails after the timeout
        naming what did arrive."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [t for t in self.about(flow_run_id) if t.startswith(headline)]
            if found:
                return found[0]
            time.sleep(0.5)
        raise AssertionError(
            f"no {headline!r} post about {flow_run_id} in {timeout_s:.0f} s; "
            f"about it: {self.about(flow_run_id)}"
        )


@contextmanager
def notify_receiver() -> Iterator[NotifyReceiver]:
    """The receiver on a free loopback port; always stopped."""
    receiver = NotifyReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            try:
                receiver.posts.append(json.loads(body))
            except json.JSONDecodeError:
                receiver.posts.append({"raw": body.decode(errors="replace")})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/indexpair"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
