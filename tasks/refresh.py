"""Refresh stage: compare the source with the live pair by content hash, reuse what holds.

A row whose id and content hash are both in the live collection keeps its vector (copied
from the live collection, never re-embedded); new and changed rows go through the usual
Ray embedding; rows gone from the source are left out. Same model version, so a copied
vector equals what re-embedding the same text would give.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

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


def live_hashes(gateway: MilvusGateway, collection: str) -> dict[str, int]:
    """A compact digest of every live row's content hash, by id.

    The digest is Python's 64-bit hash of the stored hash (ints, not 64-character
    strings): both sides are digested in this one process, and a collision, at odds of
    2^-64 per row, would only keep one changed row's old vector.

    Raises:
        BuildError: the collection was built without content hashes (before they existed).
    """
    if HASH_FIELD not in gateway.field_names(collection):
        raise BuildError(
            f"live collection {collection!r} has no {HASH_FIELD!r} field (built by an older "
            "indexpair); refresh cannot tell changed rows apart: run a full promotion of "
            "the same model version instead (`indexpair promote --version N`)"
        )
    digests: dict[str, int] = {}
    for rows in gateway.iter_rows(collection):
        for r in rows:
            if not r[HASH_FIELD]:
                raise BuildError(f"live collection {collection!r} has rows without a content hash")
            digests[str(r[ID_FIELD])] = hash(str(r[HASH_FIELD]))
    return digests


def diff_stream(
    source: Iterable[tuple[str, str]], live: dict[str, int], live_collection: str
) -> ChangeSet:
    """Classify every row as unchanged, new, changed or deleted as the source streams by.

    Only the live side is held (as digests); ``live`` is consumed: each source row takes
    its id out, and the ids left at the end are the deleted rows. Memory beyond that
    grows with the changes, not with the source.
    """
    rows = 0
    new: list[str] = []
    changed: list[str] = []
    for i, h in source:
        rows += 1
        was = live.pop(i, None)
        if was is None:
            new.append(i)
        elif was != hash(h):
            changed.append(i)
    deleted = sorted(live)
    return ChangeSet(
        live_collection=live_collection,
        source_rows=rows,
        unchanged=rows - len(new) - len(changed),
        new=len(new),
        changed=len(changed),
        deleted=len(deleted),
        to_embed=sorted(new + changed),
        deleted_ids=deleted,
    )


def diff(source: dict[str, str], live: dict[str, str], live_collection: str) -> ChangeSet:
    """:func:`diff_stream` over two plain maps (id → content hash)."""
    digests = {i: hash(h) for i, h in live.items()}
    return diff_stream(source.items(), digests, live_collection)


def compare(
    settings: Settings, spec: SourceSpec, live_collection: str, fingerprint: str | None = None
) -> ChangeSet:
    """The change set between the source (pinned by ``fingerprint``) and the live collection."""
    with MilvusGateway(settings) as milvus:
        live = live_hashes(milvus, live_collection)
    return diff_stream(source_hashes(settings, spec, fingerprint), live, live_collection)


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
    or deleted. Upserts, so a retried copy never duplicates.

    Returns:
        The number of rows copied.
    """
    skip = set(changes.to_embed) | set(changes.deleted_ids)
    copied = 0
    with MilvusGateway(settings) as milvus:
        rows_of_live = milvus.iter_rows(
            changes.live_collection, vectors=True, batch_size=settings.insert_batch_size
        )
        for rows in rows_of_live:
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
