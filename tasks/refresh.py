"""Refresh stage: compare the source with the live pair by content hash, reuse what holds.

A row whose id and content hash are both in the live collection keeps its vector (copied
from the live collection, never re-embedded); new and changed rows go through the usual
Ray embedding; rows gone from the source are left out. Same model version, so a copied
vector equals what re-embedding the same text would give.
"""

from __future__ import annotations

import logging
import queue
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from indexpair.errors import BuildError
from indexpair.gateways.milvus import HASH_FIELD, ID_FIELD, VECTOR_FIELD, MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.models import ModelContract
from indexpair.pair import PairMetadata
from indexpair.settings import Settings
from tasks.source import SourceSpec, content_hash, document_texts, iter_batches

log = logging.getLogger(__name__)
T = TypeVar("T")


class ChangeSet(BaseModel):
    """How the source differs from the live pair, row by row."""

    live_collection: str
    source_rows: int
    unchanged: int
    new: int
    changed: int
    deleted: int
    to_embed: list[str]
    deleted_ids: list[str]

    @property
    def has_changes(self) -> bool:
        """True when the refreshed collection would differ from the live one."""
        return bool(self.new or self.changed or self.deleted)

    def counts(self) -> dict[str, int]:
        """The four counts, for reports and tags."""
        return {
            "unchanged": self.unchanged,
            "new": self.new,
            "changed": self.changed,
            "deleted": self.deleted,
        }


def source_hashes(
    settings: Settings, spec: SourceSpec, fingerprint: str | None = None
) -> Iterator[tuple[str, str]]:
    """(id, content hash of its embedded text) of every source row, streamed from the
    source (its pinned content when ``fingerprint`` is given)."""
    for batch in iter_batches(settings, spec, fingerprint=fingerprint):
        ids = [str(i) for i in batch.column(spec.id_field).to_pylist()]
        texts = document_texts(batch, spec.text_fields)
        yield from zip(ids, (content_hash(t) for t in texts), strict=True)


class LiveDigests:
    """Every live row as two 64-bit digests, of its id and of its content hash.

    Held as two sorted ``int64`` arrays, 16 bytes a row (a dict from id strings to int
    digests took about 130 bytes a row, measured), with one flag a row marking the rows
    the source still has. The digest is Python's 64-bit ``hash`` of
    the string: both sides are digested in this one process. Two live ids with one
    digest (odds about n²/2⁶⁵, 3·10⁻⁸ at a million rows) are refused rather than
    guessed; a content-digest collision, at 2⁻⁶⁴ a row, would keep one changed row's old
    vector.
    """

    def __init__(self, ids: Iterable[int], contents: Iterable[int]) -> None:
        id_digests = np.fromiter(ids, dtype=np.int64)
        order = np.argsort(id_digests, kind="stable")
        self.ids = id_digests[order]
        self.contents = np.fromiter(contents, dtype=np.int64)[order]
        if self.ids.size and bool(np.any(self.ids[1:] == self.ids[:-1])):
            raise DigestCollision("two live ids share a 64-bit digest")
        self.seen = np.zeros(self.ids.size, dtype=bool)

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str]]) -> LiveDigests:
        """Digests of (id, content hash) pairs, read once."""
        ids, contents = array("q"), array("q")
        for i, h in rows:
            ids.append(hash(i))
            contents.append(hash(h))
        return cls(ids, contents)

    def classify(self, ids: list[str], hashes: list[str]) -> tuple[list[str], list[str]]:
        """Mark these source rows as present; return those that are new and changed."""
        digests = np.fromiter((hash(i) for i in ids), dtype=np.int64, count=len(ids))
        at = np.minimum(np.searchsorted(self.ids, digests), max(self.ids.size - 1, 0))
        found = self.ids[at] == digests if self.ids.size else np.zeros(len(ids), dtype=bool)
        self.seen[at[found]] = True
        content = np.fromiter((hash(h) for h in hashes), dtype=np.int64, count=len(hashes))
        same = found & (self.contents[at] == content) if self.ids.size else found
        new = [i for i, f in zip(ids, found, strict=True) if not f]
        changed = [i for i, f, s in zip(ids, found, same, strict=True) if f and not s]
        return new, changed

    @property
    def unseen(self) -> int:
        """Live rows no source row has marked (so far): the deleted ones, at the end."""
        return int(self.seen.size - np.count_nonzero(self.seen))

    def unseen_of(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` (the live ids, streamed again) that the source no longer has."""
        out = []
        for i in ids:
            at = int(np.searchsorted(self.ids, hash(i)))
            if at < self.ids.size and self.ids[at] == hash(i) and not self.seen[at]:
                out.append(i)
        return out


class DigestCollision(Exception):
    """Two live ids hash to one 64-bit digest: compare exactly instead."""


def live_rows(gateway: MilvusGateway, collection: str) -> Iterator[tuple[str, str]]:
    """(id, content hash) of every live row, streamed from Milvus.

    Raises:
        BuildError: the collection was built without content hashes (before they existed).
    """
    if HASH_FIELD not in gateway.field_names(collection):
        raise BuildError(
            f"live collection {collection!r} has no {HASH_FIELD!r} field (built by an older "
            "indexpair); refresh cannot tell changed rows apart: run a full promotion of "
            "the same model version instead (`indexpair promote --version N`)"
        )
    for rows in gateway.iter_rows(collection):
        for r in rows:
            if not r[HASH_FIELD]:
                raise BuildError(f"live collection {collection!r} has rows without a content hash")
            yield str(r[ID_FIELD]), str(r[HASH_FIELD])


def diff_stream(
    source: Iterable[tuple[str, str]],
    live: LiveDigests,
    live_collection: str,
    live_ids: Callable[[], Iterable[str]],
    chunk: int = 10_000,
) -> ChangeSet:
    """Classify every row as unchanged, new, changed or deleted as the source streams by.

    Only the live side is held, as :class:`LiveDigests`; the source is read once, in
    chunks. The deleted rows are named at the end by streaming the live ids again
    (``live_ids``), only when there are any. Memory beyond the digests grows with the
    changes, not with the source.
    """
    rows = 0
    new: list[str] = []
    changed: list[str] = []
    source = iter(source)
    while batch := list(islice(source, chunk)):
        rows += len(batch)
        n, c = live.classify([i for i, _ in batch], [h for _, h in batch])
        new += n
        changed += c
    deleted = live.unseen_of(live_ids()) if live.unseen else []
    return _change_set(live_collection, rows, new, changed, deleted)


def diff(source: dict[str, str], live: dict[str, str], live_collection: str) -> ChangeSet:
    """:func:`diff_stream` over two plain maps (id → content hash)."""
    return diff_stream(source.items(), LiveDigests.of(live.items()), live_collection, live.keys)


def diff_exact(
    source: Iterable[tuple[str, str]], live: Iterable[tuple[str, str]], live_collection: str
) -> ChangeSet:
    """The same change set from an exact map of the live side (when digests collide)."""
    held = dict(live)
    rows, new, changed = 0, list[str](), list[str]()
    for i, h in source:
        rows += 1
        was = held.pop(i, None)
        if was is None:
            new.append(i)
        elif was != h:
            changed.append(i)
    return _change_set(live_collection, rows, new, changed, list(held))


def _change_set(
    live_collection: str, rows: int, new: list[str], changed: list[str], deleted: list[str]
) -> ChangeSet:
    return ChangeSet(
        live_collection=live_collection,
        source_rows=rows,
        unchanged=rows - len(new) - len(changed),
        new=len(new),
        changed=len(changed),
        deleted=len(deleted),
        to_embed=sorted(new + changed),
        deleted_ids=sorted(deleted),
    )


def compare(
    settings: Settings, spec: SourceSpec, live_collection: str, fingerprint: str | None = None
) -> ChangeSet:
    """The change set between the source (pinned by ``fingerprint``) and the live collection."""
    source = source_hashes(settings, spec, fingerprint)
    with MilvusGateway(settings) as milvus:
        try:
            live = LiveDigests.of(live_rows(milvus, live_collection))
        except DigestCollision:
            log.warning("live ids of %s collide as digests; comparing exactly", live_collection)
            return diff_exact(source, live_rows(milvus, live_collection), live_collection)

        def live_ids() -> Iterator[str]:
            return (i for i, _ in live_rows(milvus, live_collection))

        return diff_stream(source, live, live_collection, live_ids)


def check_reusable(live: PairMetadata, contract: ModelContract, live_collection: str) -> None:
    """The live pair's vectors can be copied only if they were encoded the same way.

    Raises:
        BuildError: the model now declares another document prompt or metric than the
            live pair was built with; a full promotion must re-embed everything.
    """
    was = (live.document_prompt, live.metric)
    now = (contract.document_prompt, contract.metric)
    if was != now:
        raise BuildError(
            f"live pair {live_collection!r} was built with document prompt {was[0]!r} and "
            f"metric {was[1]}; model {live.model_name} v{live.model_version} now gives "
            f"{now[0]!r} and {now[1]}: its vectors cannot be reused, promote it instead"
        )


def copy_unchanged(settings: Settings, changes: ChangeSet, target: str) -> int:
    """Copy the vectors of unchanged rows from the live collection into ``target``.

    Streams the live collection once and skips the rows the change set names as changed
    or deleted; a thread reads the next batches while this one is upserted. Upserts, so
    a retried copy never duplicates.

    Returns:
        The number of rows copied.
    """
    skip = set(changes.to_embed) | set(changes.deleted_ids)
    copied = 0
    with MilvusGateway(settings) as milvus:
        rows_of_live = milvus.iter_rows(
            changes.live_collection, vectors=True, batch_size=settings.insert_batch_size
        )
        for rows in read_ahead(rows_of_live, depth=2):  # the next batch is read meanwhile
            keep = [r for r in rows if str(r[ID_FIELD]) not in skip]
            if keep:
                vectors = np.asarray([r[VECTOR_FIELD] for r in keep], dtype=np.float32)
                ids = [str(r[ID_FIELD]) for r in keep]
                copied += milvus.insert(target, ids, [r[HASH_FIELD] for r in keep], vectors)
    if copied != changes.unchanged:
        raise BuildError(
            f"copied {copied} vectors from {changes.live_collection!r}, expected "
            f"{changes.unchanged} unchanged rows; did the live collection change meanwhile?"
        )
    return copied


def read_ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items``, produced by a thread that keeps up to ``depth`` of them ready.

    An error of the producer is raised here; when the consumer stops early the producer
    stops at its next item.
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer is gone

    def produce() -> None:
        try:
            for item in items:
                if not hand_over((True, item)):
                    return
            hand_over((False, None))
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((False, exc))

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            more, item = ready.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)


def change_markdown(changes: ChangeSet, collection: str | None) -> str:
    """The change report shown as a Prefect artifact."""
    counts = changes.counts()
    lines = [
        f"### Refresh against `{changes.live_collection}`",
        "",
        "| unchanged (vectors reused) | new | changed | deleted | source rows |",
        "| --- | --- | --- | --- | --- |",
        f"| {counts['unchanged']} | {counts['new']} | {counts['changed']} | "
        f"{counts['deleted']} | {changes.source_rows} |",
        "",
        f"Candidate: `{collection}`" if collection else "**No change**: nothing to promote.",
    ]
    return "\n".join(lines)


@task(name="compare-with-live", cache_policy=NO_CACHE)
def compare_with_live(
    settings: Settings, spec: SourceSpec, live_collection: str, fingerprint: str | None = None
) -> ChangeSet:
    """Task wrapper of :func:`compare`; ``fingerprint`` is ``SourceSummary.fingerprint``."""
    changes = compare(settings, spec, live_collection, fingerprint)
    summary = ", ".join(f"{k} {v}" for k, v in changes.counts().items())
    get_run_logger().info("source vs %s: %s", live_collection, summary)
    return changes


@task(name="copy-unchanged-vectors", cache_policy=NO_CACHE)
def copy_unchanged_vectors(
    settings: Settings, changes: ChangeSet, target: str, contract: ModelContract
) -> int:
    """:func:`copy_unchanged`, once :func:`check_reusable` agrees (the model's contract)."""
    with MilvusGateway(settings) as milvus:
        live = milvus.read_pair(changes.live_collection)
    check_reusable(live, contract, changes.live_collection)
    copied = copy_unchanged(settings, changes, target)
    get_run_logger().info("reused %d vectors from %s", copied, changes.live_collection)
    return copied


@task(name="publish-changes")
def publish_changes(
    settings: Settings, changes: ChangeSet, ref: ModelVersionRef, collection: str | None
) -> None:
    """The change report: a Prefect artifact and ``indexpair.refresh_*`` tags in MLflow."""
    create_markdown_artifact(key="refresh-changes", markdown=change_markdown(changes, collection))
    tags: dict[str, object] = {f"refresh_{k}": v for k, v in changes.counts().items()}
    tags["refresh_result"] = f"candidate {collection}" if collection else "no change"
    with MlflowRegistry(settings) as registry:
        registry.set_tags(ref, tags)
