"""The Milvus gateway: every call indexpair makes to Milvus goes through here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from indexpair.errors import BuildError, MilvusUnavailable, PairNotFound
from indexpair.pair import PairMetadata, PairState, check_name, is_managed, now_iso
from indexpair.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ServerKind = Literal["lite", "standalone"]

ID_FIELD = "id"
HASH_FIELD = "content_hash"
VECTOR_FIELD = "vector"
ID_MAX_LENGTH = 256
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
SEARCH_EF = 128
# Status codes a server answers while it is starting, overloaded or briefly unreachable.
RETRIABLE_CODES = {1, 2, 8, 25, 65535}
# pymilvus gives up on an unreachable channel with the gRPC status as the code.
RETRIABLE_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
RETRY_ATTEMPTS = 6
# pymilvus pings every 10 s even on an idle channel; a gRPC server allows one ping per
# 5 minutes without data and answers more with GOAWAY "too_many_pings" (seen from Milvus
# Lite while a build waited on slow embedding batches). Ping only during calls, rarely.
GRPC_OPTIONS = {"grpc.keepalive_permit_without_calls": 0, "grpc.keepalive_time_ms": 300_000}


def retriable(exc: MilvusException) -> bool:
    """Whether a Milvus error is transient (server starting, overloaded, unreachable)."""
    return exc.code in RETRIABLE_CODES or getattr(exc.code, "name", "") in RETRIABLE_GRPC


def _missing(exc: MilvusException) -> bool:
    """Whether an error says the collection does not exist (code 100 on both backends)."""
    return exc.code == 100 or "does not exist" in str(exc.message)


def _retrying(call: Callable[[], T], what: str, attempts: int = RETRY_ATTEMPTS) -> T:
    """Run ``call``; retry transient Milvus errors with exponential backoff.

    Pauses of 0.5, 1, 2, 4, 8 s (15.5 s in all) bridge a server restart: measured, a
    Milvus Lite restart mid-build cost three retries here.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except MilvusException as exc:
            if not retriable(exc) or attempt == attempts:
                raise
            delay = min(0.5 * 2 ** (attempt - 1), 8.0)
            log.warning("Milvus %s failed (%s); retry %d in %.1fs", what, exc, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def auth_token(settings: Settings) -> str:
    """The token sent to Milvus: ``MILVUS_TOKEN``; else, for the local standalone backend
    (``INDEXPAIR_MILVUS_BACKEND=standalone``), ``root:`` and the password it generated in
    the state directory; else none (Milvus Lite takes any)."""
    if settings.milvus_token is not None:
        return settings.milvus_token.get_secret_value()
    path = settings.milvus_password_path
    if settings.milvus_backend == "standalone" and path.is_file():
        return "root:" + path.read_text(encoding="ascii").strip()
    return ""


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection arguments of every MilvusClient indexpair opens: URI, token, timeout, TLS.

    ``secure`` is also implied by an ``https://`` URI; a server PEM or server name is only
    passed when set, so plain local servers need nothing.
    """
    options: dict[str, Any] = {
        "uri": settings.milvus_uri,
        "token": auth_token(settings),
        "timeout": settings.milvus_timeout_s,
    }
    if settings.milvus_secure or settings.milvus_uri.startswith("https://"):
        options["secure"] = True
    if settings.milvus_server_pem_path:
        options["server_pem_path"] = settings.milvus_server_pem_path
    if settings.milvus_server_name:
        options["server_name"] = settings.milvus_server_name
    return options


class MilvusGateway:
    """Thin, typed access to the Milvus operations indexpair needs."""

    def __init__(self, settings: Settings) -> None:
        self.uri = settings.milvus_uri
        try:
            # A dedicated channel, closed by close(): pymilvus keeps shared channels open,
            # and their keep-alive pings get an idle process GOAWAY'd by Milvus Lite.
            self.client = MilvusClient(
                **client_options(settings), dedicated=True, grpc_options=GRPC_OPTIONS
            )
        except MilvusException as exc:
            raise MilvusUnavailable(
                f"Milvus at {settings.milvus_uri} is unreachable: "
                f"{exc.message}; is the stack up or MILVUS_URI "
                "right?"
            ) from exc

        self._kind: ServerKind | None = None

    def close(self) -> None:
        """Release the connection."""
        self.client.close()

    def __enter__(self) -> MilvusGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_kind(self) -> ServerKind:
        """``"lite"`` for Milvus Lite, ``"standalone"`` for a real Milvus server (any mode).

        A real server takes concurrent writers to one collection; Milvus Lite needs them
        serialized. Read from the version string once per gateway: Milvus Lite answers
        ``milvus_lite-3.2.2``, the `milvus` package's 2.3 server ``v2.3.5-lite``, a
        Milvus 2.x server ``v2.x.y``.
        """
        if self._kind is None:
            version = str(_retrying(self.client.get_server_version, "get_server_version"))
            self._kind = "lite" if version.startswith("milvus_lite") else "standalone"
            log.debug("Milvus at %s is %s (version %s)", self.uri, self._kind, version)
        return self._kind

    # -- collections and their pair metadata ---------------------------------------------
    def create_pair_collection(self, name: str, meta: PairMetadata) -> None:
        """Create the versioned collection with its schema, HNSW index and pair properties."""
        check_name(name)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
        schema.add_field(HASH_FIELD, DataType.VARCHAR, max_length=64)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=meta.dim)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name=VECTOR_FIELD, index_type="HNSW", metric_type=meta.metric, params=HNSW_PARAMS
        )
        _retrying(
            lambda: self.client.create_collection(
                name, schema=schema, index_params=index, properties=meta.to_properties()
            ),
            f"create_collection {name}",
        )

    def exists(self, name: str) -> bool:
        """True when the collection exists."""
        return bool(_retrying(lambda: self.client.has_collection(name), "has_collection"))

    def properties(self, name: str) -> dict[str, str]:
        """Raw collection properties."""
        info = _retrying(lambda: self.client.describe_collection(name), "describe_collection")
        return dict(info.get("properties") or {})

    def read_pair(self, name: str) -> PairMetadata:
        """Pair metadata of a collection.

        Raises:
            PairNotFound: the collection is missing or was not built by indexpair.
        """
        if not self.exists(name):
            raise PairNotFound(f"collection {name!r} does not exist in Milvus at {self.uri}")
        return PairMetadata.from_properties(name, self.properties(name))

    def update_pair(self, name: str, **changes: str) -> None:
        """Change pair properties (state, reason, timestamps); stamps ``updated_at``."""
        props = {f"indexpair.{k}": str(v) for k, v in changes.items()}
        props["indexpair.updated_at"] = now_iso()
        _retrying(
            lambda: self.client.alter_collection_properties(name, properties=props),
            "alter_collection_properties",
        )

    def set_state(self, name: str, state: PairState, reason: str = "") -> None:
        """Move a pair to ``state``; ``reason`` says why when it is a failure."""
        changes: dict[str, str] = {"state": state.value}
        if reason:
            changes["reason"] = reason[:1000]
        self.update_pair(name, **changes)

    def collections(self) -> dict[str, dict[str, str]]:
        """Every collection in the database with its raw properties, managed or not."""
        names = _retrying(self.client.list_collections, "list_collections")
        found = {}
        for name in names:
            try:
                found[name] = self.properties(name)
            except MilvusException as exc:
                # Dropped between the listing and the look-up (garbage collection of
                # another alias, a rejected build): it is no longer there to report.
                if not _missing(exc):
                    raise
        return found

    def list_pairs(self) -> list[tuple[str, PairMetadata]]:
        """Every collection indexpair built, sorted by creation time. Others are ignored."""
        pairs = [
            (name, PairMetadata.from_properties(name, props))
            for name, props in self.collections().items()
            if is_managed(props)
        ]
        return sorted(pairs, key=lambda p: (p[1].created_at, p[0]))

    def drop(self, name: str) -> bool:
        """Drop a collection that no alias points at. Already gone counts as done.

        Returns:
            True when something was dropped.
        """
        if not self.exists(name):
            return False
        for alias in self.aliases_of(name):
            raise BuildError(f"refusing to drop {name!r}: alias {alias!r} points at it")
        _retrying(lambda: self.client.drop_collection(name), f"drop_collection {name}")
        return True

    # -- rows -----------------------------------------------------------------------------
    def insert(
        self, name: str, ids: Sequence[str], hashes: Sequence[str], vectors: np.ndarray
    ) -> int:
        """Insert (upsert, so a retried batch never duplicates) one batch of rows."""
        rows = [
            {ID_FIELD: i, HASH_FIELD: h, VECTOR_FIELD: v}
            for i, h, v in zip(ids, hashes, vectors.tolist(), strict=True)
        ]
        result = _retrying(lambda: self.client.upsert(name, rows), f"upsert into {name}")
        return int(result.get("upsert_count", len(rows)))

    def finalize(self, name: str) -> int:
        """Flush, load, and return the persisted row count."""
        _retrying(lambda: self.client.flush(name), f"flush {name}")
        _retrying(lambda: self.client.load_collection(name), f"load {name}")
        return self._count(name)

    def row_count(self, name: str) -> int:
        """Rows of a collection: counted when it is loaded, else from its statistics.

        A real Milvus server's statistics also count rows an upsert replaced until it
        compacts the segments (an upsert is a delete plus an insert); Milvus Lite's do not.
        """
        if self.is_loaded(name):
            return self._count(name)
        stats = _retrying(lambda: self.client.get_collection_stats(name), "stats")
        return int(stats.get("row_count", 0))

    def _count(self, name: str) -> int:
        """Exact row count of a loaded collection (``count(*)``)."""
        rows = _retrying(
            lambda: self.client.query(name, filter="", output_fields=["count(*)"]), "count"
        )
        return int(rows[0]["count(*)"])

    def is_loaded(self, name: str) -> bool:
        """True when the collection is loaded for search."""
        return str(self.client.get_load_state(name).get("state")) == "Loaded"

    def ensure_loaded(self, name: str) -> bool:
        """Load a collection that is released (Milvus Lite releases everything on restart).

        Returns:
            True when it had to be loaded now.
        """
        if self.is_loaded(name):
            return False
        log.info("loading released collection %s", name)
        _retrying(lambda: self.client.load_collection(name), f"load {name}")
        return True

    def load_aliased(self) -> list[str]:
        """Load every managed collection an alias points at; return the ones loaded now."""
        loaded = []
        for target in sorted(set(self.alias_targets().values())):
            if is_managed(self.properties(target)) and self.ensure_loaded(target):
                loaded.append(target)
        return loaded

    def search(self, name: str, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Top-k (id, score) per query vector, searched in one concrete collection."""
        res = _retrying(
            lambda: self.client.search(
                name,
                data=vectors.astype(np.float32).tolist(),
                limit=k,
                anns_field=VECTOR_FIELD,
                output_fields=[ID_FIELD],
                search_params={"params": {"ef": max(SEARCH_EF, k)}},
            ),
            f"search {name}",
        )
        return [[(str(hit["id"]), float(hit["distance"])) for hit in hits] for hits in res]

    def fetch(self, name: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Rows by primary key (id, content hash, vector)."""
        id_list = list(ids)
        rows = _retrying(
            lambda: self.client.get(
                name, ids=id_list, output_fields=[ID_FIELD, HASH_FIELD, VECTOR_FIELD]
            ),
            f"get from {name}",
        )
        return {str(r[ID_FIELD]): dict(r) for r in rows}

    def field_names(self, name: str) -> set[str]:
        """Names of a collection's schema fields."""
        info = _retrying(lambda: self.client.describe_collection(name), "describe_collection")
        return {str(f["name"]) for f in info.get("fields", [])}

    def iter_rows(
        self, name: str, vectors: bool = False, batch_size: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        """Every row of a collection (id, content hash, and the vector if asked), in batches.

        Streams with a query iterator, so a collection of any size is never held at once.
        """
        fields = [ID_FIELD, HASH_FIELD] + ([VECTOR_FIELD] if vectors else [])
        iterator = self.client.query_iterator(name, batch_size=batch_size, output_fields=fields)
        try:
            while rows := iterator.next():
                yield [dict(r) for r in rows]
        finally:
            iterator.close()

    # -- aliases --------------------------------------------------------------------------
    def alias_target(self, alias: str) -> str | None:
        """The collection an alias points at, or None when the alias does not exist."""
        check_name(alias, "alias name")
        existing = _retrying(self.client.list_aliases, "list_aliases").get("aliases", [])
        if alias not in existing:
            return None
        return str(self.client.describe_alias(alias)["collection_name"])

    def alias_targets(self) -> dict[str, str]:
        """Every alias and the collection it points at, read with one listing."""
        existing = _retrying(self.client.list_aliases, "list_aliases").get("aliases", [])
        return {a: str(self.client.describe_alias(a)["collection_name"]) for a in existing}

    def aliases_of(self, name: str) -> list[str]:
        """Aliases pointing at one collection."""
        found = _retrying(lambda: self.client.list_aliases(collection_name=name), "list_aliases")
        return list(found.get("aliases", []))

    def point_alias(self, alias: str, name: str) -> None:
        """Create the alias the first time, re-point it after. One atomic Milvus call."""
        check_name(alias, "alias name")
        if self.alias_target(alias) is None:
            _retrying(lambda: self.client.create_alias(name, alias), f"create_alias {alias}")
        else:
            _retrying(lambda: self.client.alter_alias(name, alias), f"alter_alias {alias}")
