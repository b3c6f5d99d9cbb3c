"""The MLflow webhook receiver: a staging alias set in the registry starts a promotion.

``POST /mlflow/webhook`` takes MLflow's deliveries (OSS webhooks, MLflow >= 3.3):
headers ``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (Unix seconds) and
``X-MLflow-Signature`` (``v1,`` + base64 HMAC-SHA256 of ``"{delivery_id}.{timestamp}.{body}"``
with the webhook's secret); body ``{"entity", "action", "timestamp", "data"}``, for
``model_version_alias.created`` ``data = {"name", "alias", "version"}``.

Answers (MLflow retries only 429 and 5xx, so every refusal is a 4xx):

| request | status |
| --- | --- |
| ``Content-Length`` or the body over ``INDEXPAIR_WEBHOOK_MAX_BODY_BYTES`` (64 KiB) | 413 |
| content type not ``application/json`` | 415 |
| signature header missing or wrong | 401 |
| timestamp or delivery-id header missing, timestamp not Unix seconds | 400 |
| timestamp more than ``INDEXPAIR_WEBHOOK_MAX_AGE_S`` (300) away from now | 401 |
| delivery id seen before (kept on disk, survives a restart) | 409 |
| body not a JSON object | 400 |
| another event, another alias, a model not in ``INDEXPAIR_TRIGGER_MODELS`` | 200 ignored |
| ``model_version_alias.created`` for the staging alias of a configured model | 202 accepted |

Every header is checked before the body is read, and the body is read in chunks that are
counted, so an unsigned or oversized request costs at most ``INDEXPAIR_WEBHOOK_MAX_BODY_BYTES``
of memory whatever its ``Content-Length`` says. The delivery log (SQLite) is written in a
worker thread, off the event loop.

Accepted deliveries are handed to a background thread after the answer is sent, which
starts the promote deployment (through :func:`indexpair.triggers.trigger_promotion`,
idempotent) or triggers the CircleCI pipeline, as ``INDEXPAIR_WEBHOOK_TARGET`` says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from indexpair.errors import ConfigError, IndexPairError
from indexpair.settings import Settings

log = logging.getLogger("indexpair.webhook")
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
ALIAS_CREATED = "model_version_alias.created"
KEEP_DELIVERIES_S = 7 * 86_400


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's webhook signature of one delivery (``v1,<base64 HMAC-SHA256>``)."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class DeliveryLog:
    """Delivery ids already accepted, in SQLite under the state directory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, received_at REAL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def claim(self, delivery_id: str) -> bool:
        """Record a delivery id; False when it was recorded before (a replay)."""
        now = time.time()
        with self._lock, self._connect() as db:
            db.execute("DELETE FROM deliveries WHERE received_at < ?", (now - KEEP_DELIVERIES_S,))
            cursor = db.execute(
                "INSERT OR IGNORE INTO deliveries (id, received_at) VALUES (?, ?)",
                (delivery_id, now),
            )
            return cursor.rowcount == 1


def _refuse(status: int, reason: str) -> JSONResponse:
    log.warning("refused webhook delivery (%d): %s", status, reason)
    return JSONResponse({"status": "refused", "reason": reason}, status_code=status)


def check_headers(settings: Settings, headers: dict[str, str]) -> JSONResponse | None:
    """Everything that can be refused before the body is read: size, content type, and
    the presence and shape of the delivery headers; a refusal, or None."""
    length = headers.get("content-length", "")
    if length and (not length.isdigit() or int(length) > settings.webhook_max_body_bytes):
        return _too_large(settings, length[:20])
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return _refuse(415, f"content type {content_type[:60]!r} is not 'application/json'")
    if not headers.get(SIGNATURE_HEADER.lower(), ""):
        return _refuse(401, f"missing {SIGNATURE_HEADER} header")
    stamp = headers.get(TIMESTAMP_HEADER.lower(), "")
    if not headers.get(DELIVERY_HEADER.lower(), "") or not stamp:
        return _refuse(400, f"missing {DELIVERY_HEADER} or {TIMESTAMP_HEADER} header")
    if not stamp.isdigit():
        return _refuse(400, f"{TIMESTAMP_HEADER} {stamp[:40]!r} is not Unix seconds")
    return None


def _too_large(settings: Settings, size: str) -> JSONResponse:
    limit = settings.webhook_max_body_bytes
    return _refuse(413, f"body of {size} bytes is over the limit of {limit} bytes")


def authenticate(
    settings: Settings, headers: dict[str, str], body: bytes, now: float
) -> JSONResponse | None:
    """Check the delivery's headers and signature; a refusal, or None when it is genuine."""
    assert settings.webhook_secret is not None
    refusal = check_headers(settings, headers)
    if refusal is not None:
        return refusal
    delivery_id = headers[DELIVERY_HEADER.lower()]
    stamp = headers[TIMESTAMP_HEADER.lower()]
    sent = headers[SIGNATURE_HEADER.lower()]
    expected = signature(settings.webhook_secret.get_secret_value(), delivery_id, stamp, body)
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        return _refuse(401, f"bad signature for delivery {delivery_id[:64]!r}")
    age = now - int(stamp)
    if abs(age) > settings.webhook_max_age_s:
        return _refuse(
            401, f"timestamp {stamp} is {age:.0f} s old (limit {settings.webhook_max_age_s} s)"
        )
    return None


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, counted chunk by chunk; None as soon as it passes ``limit`` bytes (a
    missing or false ``Content-Length`` does not get a larger body read)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_event(body: bytes) -> tuple[str, dict[str, Any]] | None:
    """``(event, data)`` of a delivery body, or None when it is not a JSON object."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("data", {}), dict):
        return None
    event = f"{payload.get('entity')}.{payload.get('action')}"
    return event, payload.get("data") or {}


def wanted(settings: Settings, event: str, data: dict[str, Any]) -> str | None:
    """Why a genuine delivery is ignored, or None when it should start a promotion."""
    if event != ALIAS_CREATED:
        return f"event {event!r} is not {ALIAS_CREATED!r}"
    if data.get("alias") != settings.staging_model_alias:
        return f"alias {data.get('alias')!r} is not {settings.staging_model_alias!r}"
    if data.get("name") not in settings.trigger_model_names:
        return f"model {data.get('name')!r} is not in {settings.trigger_model_names}"
    if not str(data.get("version") or "").isdigit():
        return f"version {data.get('version')!r} is not a model version"
    return None


def dispatch(settings: Settings, model_name: str, version: str, delivery_id: str) -> None:
    """Start the promotion (Prefect) or the pipeline (CircleCI); log the outcome."""
    from indexpair.gateways.circleci import CircleCiGateway
    from indexpair.triggers import trigger_promotion

    try:
        if settings.webhook_target == "circleci":
            with CircleCiGateway(settings) as circleci:
                answer = circleci.trigger_pipeline(
                    {"model_name": model_name, "model_version": version}
                )
            log.info(
                "delivery %s: CircleCI pipeline #%s for %s v%s",
                delivery_id, answer.get("number"), model_name, version,
            )  # fmt: skip
        else:
            result = trigger_promotion(settings, model_name, version)
            log.info("delivery %s: %s", delivery_id, result.message)
    except IndexPairError as exc:
        log.error(
            "delivery %s: could not trigger %s v%s: %s", delivery_id, model_name, version, exc
        )
    except Exception:  # a background thread has nobody else to report to
        log.exception("delivery %s: trigger for %s v%s crashed", delivery_id, model_name, version)


def create_app(settings: Settings) -> Starlette:
    """The receiver, bound to these settings.

    Raises:
        ConfigError: no webhook secret is configured.
    """
    if settings.webhook_secret is None:
        raise ConfigError("INDEXPAIR_WEBHOOK_SECRET is not set; the receiver verifies signatures")
    deliveries = DeliveryLog(settings.state_dir / "webhook" / "deliveries.sqlite")

    async def receive(request: Request) -> JSONResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        refusal = check_headers(settings, headers)
        if refusal is not None:
            return refusal
        body = await read_body(request, settings.webhook_max_body_bytes)
        if body is None:
            return _too_large(settings, f"more than {settings.webhook_max_body_bytes}")
        refusal = authenticate(settings, headers, body, time.time())
        if refusal is not None:
            return refusal
        delivery_id = headers[DELIVERY_HEADER.lower()]
        if not await anyio.to_thread.run_sync(deliveries.claim, delivery_id):
            return _refuse(409, f"delivery {delivery_id[:64]!r} was received before")
        parsed = parse_event(body)
        if parsed is None:
            return _refuse(400, f"delivery {delivery_id[:64]!r}: body is not a JSON object")
        event, data = parsed
        reason = wanted(settings, event, data)
        if reason is not None:
            log.info("ignored delivery %s: %s", delivery_id, reason)
            return JSONResponse({"status": "ignored", "reason": reason})
        name, version = str(data["name"]), str(data["version"])
        log.info("delivery %s: %s v%s at alias %r", delivery_id, name, version, data["alias"])
        task = BackgroundTask(dispatch, settings, name, version, delivery_id)
        return JSONResponse(
            {"status": "accepted", "model_name": name, "model_version": version},
            status_code=202,
            background=task,
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/mlflow/webhook", receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
