"""Source stage: read the corpus (local or S3; Parquet, CSV, JSONL) and check it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field

from indexpair.documents import TEXT_JOIN, content_hash, document_texts
from indexpair.errors import SourceChangedError, SourceDataError
from indexpair.gateways.s3 import S3Gateway, parse_fingerprint, split, unreachable
from indexpair.settings import Settings
from tasks.validation import GoldenSet, check_golden_ids

__all__ = ["TEXT_JOIN", "content_hash", "document_texts"]  # the text rule, re-exported

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
}
SOURCES_DIR = "sources"  # under settings.state_dir: the pinned copies of S3 sources
LOCAL_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


class SourceSpec(BaseModel):
    """Where the corpus is and which columns make a document."""

    uri: str = Field(description="Local path or s3://bucket/key of a Parquet, CSV or JSONL file")
    id_field: str = Field("id", description="Column holding the unique document id")
    text_fields: list[str] = Field(
        ["title", "description"],
        min_length=1,
        description="Columns joined with '. ' into the text to embed",
    )


class SourceSummary(BaseModel):
    """What the build needs to know about the source before embedding."""

    uri: str
    format: str
    rows: int
    fingerprint: str


def source_format(uri: str) -> str:
    """File format from the URI's extension."""
    for ext, fmt in FORMATS.items():
        if uri.lower().endswith(ext):
            return fmt
    raise SourceDataError(
        f"source {uri!r} has an unknown extension; use one of {', '.join(sorted(FORMATS))}"
    )


def filesystem(settings: Settings, uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow filesystem and path for a local path or an ``s3://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        split(uri)
        with S3Gateway(settings) as s3:
            return s3.filesystem(), f"{parsed.netloc}{parsed.path}"
    if parsed.scheme not in ("", "file"):
        raise SourceDataError(f"source {uri!r}: scheme {parsed.scheme!r} is not supported")
    return pafs.LocalFileSystem(), parsed.path if parsed.scheme == "file" else uri


def pinned_copy(settings: Settings, uri: str, fingerprint: str) -> Path:
    """The local copy of an S3 source's pinned content; downloaded when missing.

    The copy lives in ``state_dir/sources`` under a name derived from the URI and the
    fingerprint, so every read of one build sees the same bytes. A worker without it
    (a fresh machine, a retried run) downloads it again by the same version id (or
    ETag), never the object's newer content.

    Raises:
        SourceChangedError: an unversioned object's ETag changed since the fingerprint.
        SourceDataError: a fingerprint that is not an S3 one, a pinned version that is
            gone, or S3 not answering.
    """
    pinned = parse_fingerprint(uri, fingerprint)
    path = _copy_path(settings, uri, fingerprint)
    if not path.is_file():
        with S3Gateway(settings) as s3:
            s3.download(uri, pinned, path)
    return path


def release_pinned_copy(settings: Settings, uri: str, fingerprint: str) -> None:
    """Delete an S3 source's local copy (a later read downloads it again); local: no-op."""
    if urlparse(uri).scheme == "s3":
        _copy_path(settings, uri, fingerprint).unlink(missing_ok=True)


def _copy_path(settings: Settings, uri: str, fingerprint: str) -> Path:
    """Where the pinned copy of ``uri`` at ``fingerprint`` lives (the extension kept)."""
    name = hashlib.sha256(f"{uri}\n{fingerprint}".encode()).hexdigest()[:32]
    return settings.state_dir / SOURCES_DIR / f"{name}{Path(split(uri)[1]).suffix}"


def _readable(settings: Settings, uri: str, fingerprint: str | None) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path to read: the source itself, or its pinned content."""
    if fingerprint is None:
        return filesystem(settings, uri)
    if urlparse(uri).scheme == "s3":
        return pafs.LocalFileSystem(), str(pinned_copy(settings, uri, fingerprint))
    if not LOCAL_FINGERPRINT.fullmatch(fingerprint):
        raise SourceDataError(
            f"source {uri!r}: fingerprint {fingerprint!r} is not a local file's (sha256:<hex>)"
        )
    # A local file is read in place: a copy would double its disk use, and
    # verify_unchanged digests it again after the build, so a change still fails it.
    return filesystem(settings, uri)


def open_dataset(
    settings: Settings, spec: SourceSpec, fingerprint: str | None = None
) -> pds.Dataset:
    """A pyarrow dataset over the source (its pinned content, given a fingerprint), with
    its columns checked."""
    fmt = source_format(spec.uri)
    fs, path = _readable(settings, spec.uri, fingerprint)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        if urlparse(spec.uri).scheme == "s3":  # pyarrow's S3 client already retried
            raise unreachable(settings, spec.uri, exc) from exc
        raise SourceDataError(f"source {spec.uri!r} cannot be read: {exc}") from exc
    if info.type == pafs.FileType.NotFound:
        raise SourceDataError(f"source {spec.uri!r} does not exist")
    try:
        dataset = pds.dataset(path, filesystem=fs, format=fmt)
        names = set(dataset.schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceDataError(f"source {spec.uri!r} cannot be read as {fmt}: {exc}") from exc
    missing = [c for c in [spec.id_field, *spec.text_fields] if c not in names]
    if missing:
        raise SourceDataError(
            f"source {spec.uri!r} has no column(s) {missing}; it has {sorted(names)}"
        )
    return dataset


def iter_batches(
    settings: Settings,
    spec: SourceSpec,
    batch_size: int = 10_000,
    fingerprint: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the id and text columns of the source.

    Args:
        settings: endpoints, keys and the state directory.
        spec: the source and its columns.
        batch_size: rows per batch.
        fingerprint: the build's pin (from :func:`fingerprint`); S3 sources are then read
            from the pinned version (or ETag), never from newer content.
    """
    dataset = open_dataset(settings, spec, fingerprint)  # checks it exists, has the columns
    columns = [spec.id_field, *spec.text_fields]
    if source_format(spec.uri) != "parquet" or not isinstance(dataset, pds.FileSystemDataset):
        yield from dataset.to_batches(columns=columns, batch_size=batch_size)
        return
    # Row group by row group, through the file the dataset already opened the way to: a
    # dataset scanner reads ahead of a slow consumer (hashing, embedding) and held 390 MiB
    # more while a 1,000,000-row file was hashed, this 160.
    for path in dataset.files:
        with dataset.filesystem.open_input_file(path) as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)


def fingerprint(settings: Settings, uri: str) -> str:
    """Content fingerprint: S3 ETag (and version id), else SHA-256 of the bytes.

    Raises:
        SourceDataError: the source is missing or cannot be read.
    """
    if urlparse(uri).scheme == "s3":
        with S3Gateway(settings) as s3:
            return s3.head(uri).fingerprint
    return _sha256(settings, uri)


def _sha256(settings: Settings, uri: str) -> str:
    """``sha256:<hex>`` of a local file's bytes, read in 1 MiB chunks."""
    fs, path = filesystem(settings, uri)
    digest = hashlib.sha256()
    try:
        with fs.open_input_stream(path) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise SourceDataError(f"source {uri!r} does not exist") from exc
    except OSError as exc:
        raise SourceDataError(f"source {uri!r} cannot be read: {exc}") from exc
    return f"sha256:{digest.hexdigest()}"


def verify_unchanged(settings: Settings, uri: str, fingerprint: str) -> None:
    """Check that the source still holds the content the build pinned.

    A local file is digested again and compared; an S3 source's pinned version must
    still exist (versioned bucket) or its ETag be unchanged (unversioned).

    Raises:
        SourceChangedError: the content differs; the message names the source and both
            fingerprints.
        SourceDataError: the source (or its pinned version) is gone or unreadable.
    """
    if urlparse(uri).scheme == "s3":
        with S3Gateway(settings) as s3:
            s3.check_pinned(uri, parse_fingerprint(uri, fingerprint))
        return
    now = _sha256(settings, uri)
    if now != fingerprint:
        raise SourceChangedError(uri, fingerprint, now)


def check_source(settings: Settings, spec: SourceSpec) -> tuple[SourceSummary, set[str]]:
    """Pin the source by its fingerprint, then stream that content once: ids present,
    unique, texts non-null; count rows.

    The fingerprint is taken first and the rows are read from the pinned content, so the
    summary's fingerprint describes exactly the rows counted.

    Returns:
        The summary and the set of ids (for checking golden queries against).

    Raises:
        SourceDataError: naming the row and value at fault.
    """
    fmt = source_format(spec.uri)  # an unknown extension fails before anything is read
    pinned = fingerprint(settings, spec.uri)
    seen: set[str] = set()
    row = 0
    for batch in iter_batches(settings, spec, fingerprint=pinned):
        _check_batch(spec, batch, row, seen)
        row += batch.num_rows
    if row == 0:
        raise SourceDataError(f"source {spec.uri!r} is empty: nothing to index")
    uri = spec.uri if "://" in spec.uri else str(Path(spec.uri).resolve())
    return SourceSummary(uri=uri, format=fmt, rows=row, fingerprint=pinned), seen


def _check_batch(spec: SourceSpec, batch: pa.RecordBatch, row: int, seen: set[str]) -> None:
    """Check one batch starting at source row ``row``; add its ids to ``seen``."""
    ids = batch.column(spec.id_field)
    if ids.null_count:
        first = row + int(pc.index(pc.is_null(ids), True).as_py())
        raise SourceDataError(f"source {spec.uri!r} row {first} has no {spec.id_field!r}")
    for field in spec.text_fields:
        col = batch.column(field)
        if col.null_count:
            at = int(pc.index(pc.is_null(col), True).as_py())
            raise SourceDataError(
                f"source {spec.uri!r} row {row + at} (id {ids[at].as_py()!r}) has null {field!r}"
            )
    for i, value in enumerate(ids.to_pylist()):
        key = str(value)
        if not key.strip():
            raise SourceDataError(f"source {spec.uri!r} row {row + i} has an empty id")
        if key in seen:
            raise SourceDataError(
                f"source {spec.uri!r} has duplicate id {key!r} (again at row {row + i})"
            )
        seen.add(key)


def sample_texts(
    settings: Settings, spec: SourceSpec, n: int = 8, fingerprint: str | None = None
) -> list[str]:
    """The first ``n`` documents' texts (to probe the model before building), of the
    pinned content when ``fingerprint`` is given."""
    for batch in iter_batches(settings, spec, batch_size=n, fingerprint=fingerprint):
        return document_texts(batch, spec.text_fields)
    raise SourceDataError(f"source {spec.uri!r} is empty: nothing to index")


@task(name="inspect-source", cache_policy=NO_CACHE)
def inspect_source(
    settings: Settings, spec: SourceSpec, golden: GoldenSet
) -> tuple[SourceSummary, list[str]]:
    """Pin the source, check it (and the golden ids against it); return its summary and a
    sample. Later reads pass ``summary.fingerprint`` to read the same content."""
    summary, ids = check_source(settings, spec)
    check_golden_ids(golden, ids, spec.uri)
    return summary, sample_texts(settings, spec, fingerprint=summary.fingerprint)


@task(name="verify-source", cache_policy=NO_CACHE)
def verify_source(settings: Settings, summary: SourceSummary) -> None:
    """After the collection is finalized: fail the build if its source changed meanwhile.

    Then deletes an S3 source's local copy (nothing reads the source after this; a rerun
    would download it again by the same pin).

    Raises:
        SourceChangedError: the source no longer holds the pinned content.
    """
    verify_unchanged(settings, summary.uri, summary.fingerprint)
    release_pinned_copy(settings, summary.uri, summary.fingerprint)
    get_run_logger().info(
        "source %s unchanged during the build (%s)", summary.uri, summary.fingerprint
    )
