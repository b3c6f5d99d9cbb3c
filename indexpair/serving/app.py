"""The search service: an HTTP face for `PairSearcher`, served by ``indexpair serve``.

Endpoints: ``GET /search?q=&k=`` (hits and the pair that answered), ``GET /pair`` (the
pair behind the alias now), ``GET /healthz`` and ``GET /metrics`` (Prometheus); the
canary's ``POST /feedback`` (a click) and ``GET /canary`` (the evidence about a waiting
candidate, see :mod:`indexpair.serving.canary`).

What a client sees of a failure is generic: a short reason and an error id. The detail
(exception, Milvus URI) goes to the service's log under the same id, without the query
text, so an operator can match the two and a caller learns nothing about the inside.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from pydantic import BaseModel, Field
from pymilvus import MilvusException
from starlette.concurrency import run_in_threadpool

from indexpair.errors import IndexPairError, MilvusUnavailable, PairNotFound
from indexpair.gateways import prefect as prefect_api
from indexpair.models import BatchThreads
from indexpair.serving.canary import Canary, FeedbackRefused
from indexpair.serving.preload import Preloader
from indexpair.serving.query import PairSearcher, PairTarget, SearchResponse
from indexpair.serving.query_log import QueryLog
from indexpair.settings import Settings

log = logging.getLogger(__name__)
MAX_K = 100
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "indexpair_search_requests",
            "Search requests answered, by HTTP status code",
            ["code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "indexpair_search_errors",
            "Search requests that failed on the server side, by error type",
            ["error"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "indexpair_search_latency_seconds",
            "Search latency: resolve, encode, search",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "indexpair_model_version",
            "Model version of the pair that answered the latest search",
            ["alias", "model_name"],
            registry=self.registry,
        )
        self.pair = Info(
            "indexpair_pair", "The pair that answered the latest search", registry=self.registry
        )
        self.batches = Gauge(
            "indexpair_query_batches",
            "Micro-batches answered since the service started (one encode, one search each)",
            registry=self.registry,
        )
        self.batched = Gauge(
            "indexpair_query_batched_queries",
            "Queries answered in micro-batches since the service started",
            registry=self.registry,
        )
        self.reconnects = Gauge(
            "indexpair_milvus_reconnects",
            "Milvus connections replaced after being lost",
            registry=self.registry,
        )

    def watch_batches(self, searcher: PairSearcher) -> None:
        """Report the searcher's micro-batch counts whenever the metrics are read."""
        self.batches.set_function(lambda: searcher.batch_counts()[0])
        self.batched.set_function(lambda: searcher.batch_counts()[1])

    def answered_by(self, r: SearchResponse) -> None:
        """Record the pair that answered."""
        version = r.model_version
        self.model_version.labels(r.alias, r.model_name).set(
            float(version) if version.isdigit() else -1
        )
        self.pair.info(
            {
                "alias": r.alias,
                "collection": r.collection,
                "model_name": r.model_name,
                "model_version": version,
            }
        )


class Click(BaseModel):
    """A click reported to ``POST /feedback``."""

    query_id: str = Field(min_length=1, description="The query id of the response")
    hit_id: str = Field(min_length=1, description="The id of the clicked hit")


def _pair_json(searcher: PairSearcher, t: PairTarget) -> dict[str, Any]:
    return {
        "alias": searcher.alias,
        "collection": t.collection,
        "model_name": t.pair.model_name,
        "model_version": t.pair.model_version,
        "model_uri": t.pair.model_uri,
        "dim": t.pair.dim,
        "state": t.pair.state.value,
        "live_since": t.pair.live_since,
        "source_uri": t.pair.source_uri,
        "source_rows": t.pair.source_rows,
    }


def create_app(settings: Settings, searcher: PairSearcher | None = None) -> FastAPI:
    """The search app. It owns ``searcher`` (built from settings when None) and closes it."""
    metrics = Metrics()
    queries = QueryLog(settings.query_log_path, settings.query_log_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.searcher = searcher or PairSearcher(settings)
        app.state.searcher.models.on_change = _freeze_heap
        metrics.watch_batches(app.state.searcher)
        _warm(app.state.searcher)
        app.state.canary = Canary(settings, app.state.searcher, metrics.registry)
        prefect_api.import_report_client()  # the canary's report updates, imported now
        _freeze_heap(loaded=True)
        preloader = Preloader(app.state.searcher, settings.preload_interval_s)
        preloader.start()  # candidates and the rollback pair, warm before any switch
        app.state.canary.start()
        try:
            yield
        finally:
            app.state.canary.close()
            preloader.stop()
            app.state.searcher.close()

    app = FastAPI(title="indexpair search", lifespan=lifespan)
    app.state.metrics = metrics

    def _searcher(request: Request) -> PairSearcher:
        return request.app.state.searcher  # type: ignore[no-any-return]

    @app.get("/search")
    async def search(
        request: Request,
        q: str = Query("", max_length=settings.serve_max_query_chars),
        k: int = Query(10, ge=1, le=MAX_K),
        session: str = "",
        interleave: bool = True,
    ) -> Any:
        """Top-k hits for ``q``, with the pair (alias, collection, model) that answered.

        ``session`` (or the ``X-Session-Id`` header) may put the caller in the share of
        sessions that get interleaved live + candidate hits; ``interleave=false`` opts out.

        The query waits for its micro-batch on the event loop (no thread per request);
        only work that may block (an unbatched search, an interleaved candidate search)
        goes to the thread pool.
        """
        if not q.strip():
            metrics.requests.labels("400").inc()
            raise HTTPException(400, f"q must be a non-empty query text (got {q!r})")
        s = _searcher(request)
        started = time.perf_counter()
        try:
            future = s.search_future(q, k)
            if future is not None:
                response = await asyncio.wrap_future(future)
            else:
                response = await run_in_threadpool(s.search, q, k)
        except (IndexPairError, MilvusException, grpc.RpcError) as exc:
            code = 503 if isinstance(exc, PairNotFound) else 500
            return _failure(metrics, code, exc, s.alias, "search")
        took = time.perf_counter() - started
        metrics.latency.observe(took)
        metrics.requests.labels("200").inc()
        metrics.answered_by(response)
        metrics.reconnects.set(s.reconnects)
        queries.append(q, k, response.collection, response.model_version)
        # The canary: a query id, maybe interleaved hits, maybe a shadow copy queued.
        sid = session or request.headers.get("x-session-id", "")
        canary = request.app.state.canary
        args = (q, k, response, took, sid, interleave)
        if canary.may_search(sid, interleave):
            extra = await run_in_threadpool(lambda: canary.answer(*args))
        else:
            extra = canary.answer(*args)
        body = {"query": q, "k": k, "took_ms": round(took * 1000, 2)}
        # Plain JSON already: a JSONResponse skips FastAPI's per-field re-encoding.
        return JSONResponse({**body, **response.model_dump(), **extra})

    @app.post("/feedback")
    def feedback(request: Request, click: Click) -> Any:
        """Record a click on a hit of an earlier response (by its query id)."""
        try:
            return request.app.state.canary.feedback(click.query_id, click.hit_id)
        except FeedbackRefused as exc:
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/canary")
    def canary(request: Request) -> Any:
        """The candidate awaiting approval and the shadow and interleaving evidence on it."""
        return request.app.state.canary.view()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.requests.labels("422").inc()
        return JSONResponse({"detail": _validation_details(exc)}, status_code=422)

    @app.get("/pair")
    def pair(request: Request) -> Any:
        """The pair behind the alias right now, and the model versions held in memory."""
        s = _searcher(request)
        try:
            t = s.target()
            t = PairTarget(t.collection, s.pair_now(t.collection))  # its state now
        except PairNotFound as exc:
            error_id = _log_failure(exc, "pair")
            detail = f"alias {s.alias!r} resolves to no pair"
            return JSONResponse({"detail": detail, "error_id": error_id}, status_code=404)
        loaded = [f"{name} v{version}" for name, version in s.models.loaded()]
        return {**_pair_json(s, t), "loaded_models": loaded}

    @app.get("/healthz")
    def healthz(request: Request) -> Any:
        """200 when the alias resolves to a pair in Milvus, 503 (with why) otherwise."""
        s = _searcher(request)
        try:
            t = s.target()
        except (IndexPairError, MilvusException, grpc.RpcError) as exc:
            error_id = _log_failure(exc, "health check")
            return JSONResponse(
                {"status": "unavailable", "detail": _reason(exc, s.alias), "error_id": error_id},
                status_code=503,
            )
        return {"status": "ok", "alias": s.alias, "collection": t.collection}

    @app.get("/metrics")
    def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _freeze_heap(loaded: bool) -> None:
    """Keep what is loaded for good (imports, models) out of the garbage collector's
    full passes, which otherwise walk every object of every model while holding the
    GIL (120-330 ms pauses of the whole service, measured with MiniLM and TF-IDF held).
    After an unload, thaw it all, so the next full pass frees the unloaded model."""
    if loaded:
        gc.freeze()
    else:
        gc.unfreeze()


def _warm(searcher: PairSearcher) -> None:
    """Load the current pair's model before the first request (if there is a pair yet)."""
    try:
        t = searcher.target()
        with searcher.models.use(t.pair):
            log.info("serving %s via %s", t.collection, searcher.alias)
    except PairNotFound as exc:
        log.warning("no pair to serve yet: %s", exc)


def _reason(exc: Exception, alias: str) -> str:
    """What a client is told about a failure: its kind, never a URI or an exception text."""
    if isinstance(exc, PairNotFound):
        return f"alias {alias!r} resolves to no pair right now"
    if isinstance(exc, MilvusUnavailable | MilvusException | grpc.RpcError):
        return "the vector database is unavailable"
    return "internal error"


def _log_failure(exc: Exception, what: str) -> str:
    """Log a failure's detail (never the query text) under a new short error id; a
    missing pair is a warning without a traceback, anything else an error with one."""
    error_id = secrets.token_hex(6)
    expected = isinstance(exc, PairNotFound)
    log.log(
        logging.WARNING if expected else logging.ERROR,
        "%s failed [error id %s]: %s: %s", what, error_id, type(exc).__name__, exc,
        exc_info=not expected,
    )  # fmt: skip
    return error_id


def _failure(metrics: Metrics, code: int, exc: Exception, alias: str, what: str) -> JSONResponse:
    metrics.requests.labels(str(code)).inc()
    metrics.errors.labels(type(exc).__name__).inc()
    error_id = _log_failure(exc, what)
    body = {"detail": f"{_reason(exc, alias)} (error id {error_id})", "error_id": error_id}
    return JSONResponse(body, status_code=code)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 details with the offending value shortened: a 1 MB ``q`` is not
    echoed back, its length is."""
    details = []
    for err in exc.errors():
        value = err.get("input")
        shown = f"{len(value)} characters" if isinstance(value, str) and len(value) > 40 else value
        name = ".".join(str(part) for part in err.get("loc", ())[1:]) or "request"
        details.append(
            {
                "loc": list(err.get("loc", ())),
                "type": err.get("type"),
                "msg": f"{name}: {err.get('msg')} (got {shown})",
            }
        )
    return details


def serve(settings: Settings, alias: str | None = None, ttl_s: float | None = None) -> None:
    """Run the search service with uvicorn until interrupted."""
    import uvicorn

    threads = BatchThreads(settings.query_parallel_batch)  # this process owns its threads
    app = create_app(settings, PairSearcher(settings, alias, ttl_s, threads))
    uvicorn.run(
        app,
        host=settings.serve_host,
        port=settings.serve_port,
        log_level="warning",
        access_log=False,
    )
