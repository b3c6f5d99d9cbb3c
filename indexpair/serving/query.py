"""The query side: resolve the alias once, encode with that pair's model, search that pair.

`PairSearcher` is safe to share between threads. Each request works on one snapshot of
the alias (collection + pair metadata), so its hits, the model that encoded the query
and the collection it names always belong together, even while the alias moves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import grpc
import numpy as np
from pydantic import BaseModel
from pymilvus import MilvusException

from indexpair.errors import PairNotFound
from indexpair.gateways.milvus import MilvusGateway
from indexpair.models import BatchThreads, encode_queries
from indexpair.pair import PairMetadata, check_name
from indexpair.serving.batching import MicroBatcher
from indexpair.serving.model_cache import ModelCache
from indexpair.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
# What a dropped gRPC connection looks like (Milvus Lite answers idle keep-alive pings
# with GOAWAY too_many_pings; a restarted server resets the socket).
CONNECTION_LOST = (
    "too_many_pings",
    "goaway",
    "unavailable",
    "socket closed",
    "closed channel",
    "connection reset",
    "connection refused",
    "failed to connect",
    "should create connection first",  # pymilvus, once its connection was closed
)


class Hit(BaseModel):
    """One search result."""

    id: str
    score: float


class SearchResponse(BaseModel):
    """Hits together with the pair that produced every one of them."""

    alias: str
    collection: str
    model_name: str
    model_version: str
    hits: list[Hit]


@dataclass(frozen=True)
class Encoded:
    """A batch half done: the pair it resolved to and its queries' vectors."""

    target: PairTarget
    texts: list[str]
    ks: list[int]
    vectors: np.ndarray


@dataclass(frozen=True)
class PairTarget:
    """One resolution of the alias: the concrete collection and its pair metadata."""

    collection: str
    pair: PairMetadata
    resolved_at: float = field(default_factory=time.monotonic)


def connection_lost(exc: BaseException) -> bool:
    """True when a Milvus call failed because its connection went away (worth a reconnect)."""
    if isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
        return True
    text = str(exc).lower()
    return isinstance(exc, (MilvusException, grpc.RpcError, ValueError)) and any(
        marker in text for marker in CONNECTION_LOST
    )


class PairSearcher:
    """Searches through an alias without ever mixing two models in one response.

    Args:
        settings: where Milvus and MLflow are; ``alias_ttl_s`` and ``model_cache_size``.
        alias: the alias to search; default the production alias.
        ttl_s: override ``settings.alias_ttl_s`` (0: resolve the alias on every request).
        threads: PyTorch threads chosen per batch (the search service); None leaves the
            process's thread count alone.

    With ``settings.warm_switch`` (the default), when the alias moves to a pair whose
    model is not loaded yet, requests keep being answered by the pair they resolved
    before (and say so) while the new model loads in the background; after that they go
    to the new pair. No request waits for a model download.
    """

    def __init__(
        self,
        settings: Settings,
        alias: str | None = None,
        ttl_s: float | None = None,
        threads: BatchThreads | None = None,
    ):
        self.settings = settings
        self.alias = check_name(alias or settings.production_alias, "alias name")
        self.ttl_s = settings.alias_ttl_s if ttl_s is None else ttl_s
        self.warm_switch = settings.warm_switch
        self.threads = threads
        self.models = ModelCache(settings, settings.model_cache_size)
        self.reconnects = 0
        self._gateway = MilvusGateway(settings)
        self._retired: list[MilvusGateway] = []
        self._lock = threading.Lock()
        self._target: PairTarget | None = None
        self._loaded: set[str] = set()
        self._identities: dict[str, PairMetadata] = {}
        self._batcher = (
            MicroBatcher(
                lambda batch: self._prepare([(r.text, r.k) for r in batch]),
                settings.query_batch_max,
                settings.query_batch_wait_ms,
                settings.query_batch_workers,
                finish=self._finish,  # batch N is searched while batch N+1 is encoded
            )
            if settings.query_batch_max > 1
            else None
        )

    @property
    def gateway(self) -> MilvusGateway:
        """The Milvus gateway in use now (replaced when its connection is lost)."""
        return self._gateway

    def _milvus(self, call: Callable[[MilvusGateway], T], what: str) -> T:
        """Run a Milvus call; on a lost connection, reconnect once and retry it."""
        gateway = self._gateway
        try:
            return call(gateway)
        except (MilvusException, grpc.RpcError, ValueError) as exc:
            if not connection_lost(exc):
                raise
            log.warning("Milvus connection lost during %s (%s); reconnecting", what, exc)
            with self._lock:
                if self._gateway is gateway:  # another thread may have reconnected already
                    self._retired.append(gateway)  # closed in close(): others may still use it
                    self._gateway = MilvusGateway(self.settings)
                    self.reconnects += 1
            return call(self._gateway)

    def _resolve_now(self) -> PairTarget:
        target = self._milvus(lambda g: g.alias_target(self.alias), "alias lookup")
        if target is None:
            raise PairNotFound(
                f"alias {self.alias!r} does not exist in Milvus at "
                f"{self.settings.milvus_uri}; promote a pair first"
            )
        pair = self._identities.get(target)
        if pair is None:
            # A collection's pair identity (model, version, prompts, metric) is fixed when
            # it is created, so it is read once; only the alias is read per resolution.
            pair = self._milvus(lambda g: g.read_pair(target), f"read pair {target}")
            with self._lock:
                self._identities[target] = pair
        if target not in self._loaded:  # checked once per collection, not per request
            self._milvus(lambda g: g.ensure_loaded(target), f"load {target}")
            with self._lock:
                self._loaded.add(target)
        return PairTarget(target, pair)

    def target(self) -> PairTarget:
        """The pair behind the alias: resolved now, or reused while younger than the TTL.

        Raises:
            PairNotFound: the alias is missing or its collection has no pair metadata.
        """
        cached = self._target
        if cached is not None and time.monotonic() - cached.resolved_at < self.ttl_s:
            return cached
        fresh = self._resolve_now()
        if (
            self.warm_switch
            and cached is not None
            and fresh.collection != cached.collection
            and not self.models.is_ready(fresh.pair)
            and not self.models.failed(fresh.pair)
        ):
            # The alias moved to a pair whose model is not loaded yet: keep answering,
            # consistently, from the pair we know until the new model is ready. If it
            # cannot be loaded, requests go to the new pair and fail saying why.
            self.models.load_in_background(fresh.pair)
            return cached
        self._target = fresh
        return fresh

    def resolve(self) -> tuple[str, PairMetadata]:
        """The concrete collection behind the alias now, and its pair metadata."""
        t = self.target()
        return t.collection, t.pair

    def pair_now(self, collection: str) -> PairMetadata:
        """A collection's pair metadata as Milvus holds it now (state and timestamps too)."""
        return self._milvus(lambda g: g.read_pair(collection), f"read pair {collection}")

    def list_pairs(self) -> list[tuple[str, PairMetadata]]:
        """Every pair in Milvus (what the pre-loader chooses from)."""
        return self._milvus(lambda g: g.list_pairs(), "list pairs")

    def alias_collection(self) -> str | None:
        """The collection behind the alias now, read from Milvus (no cache, no loading)."""
        return self._milvus(lambda g: g.alias_target(self.alias), "alias lookup")

    def warm(self, collection: str, pair: PairMetadata) -> None:
        """Load a pair that may be switched to: its model (one warm-up encode) and its
        collection (one warm-up search). It answers nothing until the alias points at it."""
        with self.models.use(pair) as model:
            vectors = encode_queries(model, pair, ["warm-up query"])
        self._milvus(lambda g: g.ensure_loaded(collection), f"load {collection}")
        with self._lock:
            self._loaded.add(collection)
        if vectors.any():
            self._search_loaded(collection, vectors, 1)

    def model(self, pair: PairMetadata) -> Any:
        """The pair's model version, loaded once and cached (for one-off use)."""
        with self.models.use(pair) as model:
            return model

    def search_in(self, t: PairTarget, text: str, k: int) -> SearchResponse:
        """Encode with the target's model and search the target's collection (no alias)."""
        return self.search_many_in(t, [text], [k])[0]

    def search_many_in(
        self, t: PairTarget, texts: list[str], ks: list[int]
    ) -> list[SearchResponse]:
        """Several queries on one target: one forward pass, one Milvus search."""
        return self._answers(self._encoded(t, texts, ks))

    def _encoded(self, t: PairTarget, texts: list[str], ks: list[int]) -> Encoded:
        """The first half of a search: the queries encoded by the target's model."""
        with self.models.use(t.pair) as model:
            if self.threads is not None:
                self.threads.for_batch(len(texts))
            return Encoded(t, texts, ks, encode_queries(model, t.pair, texts))

    def _answers(self, e: Encoded) -> list[SearchResponse]:
        """The second half: one Milvus search of the target's collection, the responses."""
        t, pair, vectors, ks = e.target, e.target.pair, e.vectors, e.ks
        known = np.linalg.norm(vectors, axis=1) > 0  # a query with no known word finds nothing
        searched = self._search_loaded(t.collection, vectors[known], max(ks)) if known.any() else []
        found = iter(searched)
        hits = [next(found) if ok else [] for ok in known]
        return [
            SearchResponse(
                alias=self.alias,
                collection=t.collection,
                model_name=pair.model_name,
                model_version=pair.model_version,
                hits=[Hit(id=i, score=s) for i, s in found_hits[:k]],
            )
            for found_hits, k in zip(hits, ks, strict=True)
        ]

    def _search_loaded(
        self, collection: str, vectors: Any, k: int
    ) -> list[list[tuple[str, float]]]:
        """Search; a collection released since (a Milvus Lite restart) is loaded again once."""
        try:
            return self._milvus(lambda g: g.search(collection, vectors, k), "search")
        except MilvusException as exc:
            if "not loaded" not in str(exc).lower():
                raise
            log.warning("collection %s was released; loading it again", collection)
            self._milvus(lambda g: g.ensure_loaded(collection), f"load {collection}")
            return self._milvus(lambda g: g.search(collection, vectors, k), "search")

    def search(self, text: str, k: int = 10) -> SearchResponse:
        """Encode ``text`` with the model of the pair behind the alias and search that pair.

        Concurrent calls are micro-batched (``query_batch_max``, ``query_batch_wait_ms``):
        one resolution of the alias, one forward pass and one Milvus call per batch, so
        every response of a batch comes from the same pair.
        """
        if self._batcher is not None:
            return self._batcher.submit(text, k)  # type: ignore[no-any-return]
        return self._finish(self._prepare([(text, k)]))[0]

    def search_future(self, text: str, k: int = 10) -> Future[SearchResponse] | None:
        """:meth:`search` without blocking: the future of the micro-batched answer (an
        asyncio caller awaits it with ``asyncio.wrap_future``); None without batching."""
        return self._batcher.submit_future(text, k) if self._batcher is not None else None

    def _prepare(self, queries: list[tuple[str, int]]) -> Encoded:
        """Resolve the alias once and encode ``queries`` with that pair's model."""
        texts, ks = [q for q, _ in queries], [k for _, k in queries]
        return self._again_if_gone(lambda t: self._encoded(t, texts, ks), self.target())

    def _finish(self, e: Encoded) -> list[SearchResponse]:
        """Search the pair ``_prepare`` resolved, with its vectors; answer every query."""
        return self._again_if_gone(
            lambda t: self._answers(e) if t is e.target else self.search_many_in(t, e.texts, e.ks),
            e.target,
        )

    def _again_if_gone(self, step: Callable[[PairTarget], T], t: PairTarget) -> T:
        """Run ``step`` on ``t``; if its collection vanished after a cached resolution
        (garbage-collected within the TTL), resolve the alias again and run it once more."""
        try:
            return step(t)
        except (MilvusException, PairNotFound):
            if self.ttl_s <= 0 or self._milvus(lambda g: g.exists(t.collection), "exists"):
                raise
            self._target = None
            return step(self.target())

    def batch_counts(self) -> tuple[int, int]:
        """Batches answered so far and the queries in them (0, 0 without batching)."""
        b = self._batcher
        return (b.batches, b.answered) if b is not None else (0, 0)

    def close(self) -> None:
        """Stop the batcher and release the Milvus connections."""
        if self._batcher is not None:
            self._batcher.close()
        for gateway in [*self._retired, self._gateway]:
            gateway.close()
        self._retired.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def source_titles(
    settings: Settings, response: SearchResponse, field: str = "title"
) -> dict[str, str]:
    """Titles of the hits, read from the pair's own source file when it is local Parquet.

    A convenience for people reading results; an unreadable source just gives no titles.
    """
    import pyarrow.dataset as pds

    with MilvusGateway(settings) as milvus:
        uri = milvus.read_pair(response.collection).source_uri
    if "://" in uri or not uri.endswith(".parquet"):
        return {}
    ids = [h.id for h in response.hits]
    try:
        table = pds.dataset(uri).to_table(columns=["id", field], filter=pds.field("id").isin(ids))
    except (OSError, ValueError, KeyError):
        return {}
    return {
        str(i): str(t)
        for i, t in zip(
            table.column("id").to_pylist(), table.column(field).to_pylist(), strict=True
        )
    }
