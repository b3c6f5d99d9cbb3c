"""Source stage: read the corpus (local or S3; Parquet, CSV, JSONL) and check it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
from prefect import task
from pydantic import BaseModel, Field

from indexpair.documents import TEXT_JOIN, content_hash, document_texts
from indexpair.errors import SourceDataError
from indexpair.gateways import s3
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
        s3.split(uri)
        return s3.filesystem(settings), f"{parsed.netloc}{parsed.path}"
    if parsed.scheme not in ("", "file"):
        raise SourceDataError(f"source {uri!r}: scheme {parsed.scheme!r} is not supported")
    return pafs.LocalFileSystem(), parsed.path if parsed.scheme == "file" else uri


def open_dataset(settings: Settings, spec: SourceSpec) -> pds.Dataset:
    """A pyarrow dataset over the source, with its columns checked."""
    fmt = source_format(spec.uri)
    fs, path = filesystem(settings, spec.uri)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        if urlparse(spec.uri).scheme == "s3":  # pyarrow's S3 client already retried
            raise s3.unreachable(settings, spec.uri, exc) from exc
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
    settings: Settings, spec: SourceSpec, batch_size: int = 10_000
) -> Iterator[pa.RecordBatch]:
    """Stream the id and text columns of the source."""
    dataset = open_dataset(settings, spec)
    yield from dataset.to_batches(columns=[spec.id_field, *spec.text_fields], batch_size=batch_size)


def fingerprint(settings: Settings, uri: str) -> str:
    """Content fingerprint: S3 ETag (and version id), else SHA-256 of the bytes."""
    if urlparse(uri).scheme == "s3":
        return s3.head(settings, uri).fingerprint
    fs, path = filesystem(settings, uri)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def check_source(settings: Settings, spec: SourceSpec) -> tuple[SourceSummary, set[str]]:
    """Stream the source once: ids present, unique, texts non-null; count rows.

    Returns:
        The summary and the set of ids (for checking golden queries against).

    Raises:
        SourceDataError: naming the row and value at fault.
    """
    seen: set[str] = set()
    row = 0
    for batch in iter_batches(settings, spec):
        ids = batch.column(spec.id_field)
        if ids.null_count:
            first = row + int(pc.index(pc.is_null(ids), True).as_py())
            raise SourceDataError(f"source {spec.uri!r} row {first} has no {spec.id_field!r}")
        for field in spec.text_fields:
            col = batch.column(field)
            if col.null_count:
                at = int(pc.index(pc.is_null(col), True).as_py())
                raise SourceDataError(
                    f"source {spec.uri!r} row {row + at} (id {ids[at].as_py()!r}) has null "
                    f"{field!r}"
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
        row += batch.num_rows
    if row == 0:
        raise SourceDataError(f"source {spec.uri!r} is empty: nothing to index")
    uri = spec.uri if "://" in spec.uri else str(Path(spec.uri).resolve())
    summary = SourceSummary(
        uri=uri,
        format=source_format(spec.uri),
        rows=row,
        fingerprint=fingerprint(settings, spec.uri),
    )
    return summary, seen


def sample_texts(settings: Settings, spec: SourceSpec, n: int = 8) -> list[str]:
    """The first ``n`` documents' texts (to probe the model before building)."""
    for batch in iter_batches(settings, spec, batch_size=n):
        return document_texts(batch, spec.text_fields)
    raise SourceDataError(f"source {spec.uri!r} is empty: nothing to index")


@task(name="inspect-source", persist_result=True)
def inspect_source(
    settings: Settings, spec: SourceSpec, golden: GoldenSet
) -> tuple[SourceSummary, list[str]]:
    """Check the source (and the golden ids against it); return its summary and a sample."""
    summary, ids = check_source(settings, spec)
    check_golden_ids(golden, ids, spec.uri)
    return summary, sample_texts(settings, spec)
