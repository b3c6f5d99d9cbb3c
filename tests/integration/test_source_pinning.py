"""A build's S3 source is pinned by its fingerprint, on a real S3 server on loopback (moto).

A versioned bucket: an object overwritten after the fingerprint is still read as the
pinned version, even by a worker without the local copy. An unversioned bucket: the
overwritten object is refused, by the read and by the check after the build.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from indexpair.errors import SourceChangedError, SourceDataError
from indexpair.settings import Settings
from tasks.source import (
    SourceSpec,
    check_source,
    fingerprint,
    iter_batches,
    release_pinned_copy,
    verify_unchanged,
)
from tests.conftest import DATA_DIR, free_port
from tests.support.s3 import S3Source, s3_server

pytestmark = pytest.mark.integration

PLAIN_BUCKET = "indexpair-unversioned"
OLD = pd.DataFrame({"id": ["A1", "A2"], "title": ["old", "old"], "description": ["x", "y"]})
NEW = pd.DataFrame(
    {"id": ["B1", "B2", "B3"], "title": ["new", "new", "new"], "description": ["x", "y", "z"]}
)


@pytest.fixture(scope="module")
def server() -> Iterator[S3Source]:
    """moto's S3 server: its versioned bucket, plus one bucket without versioning."""
    with s3_server(free_port(), DATA_DIR / "products_small.parquet") as source:
        source.client().create_bucket(Bucket=PLAIN_BUCKET)
        yield source


def settings_for(source: S3Source, state_dir: Path) -> Settings:
    return Settings(
        state_dir=state_dir,
        aws_endpoint_url=source.endpoint,
        aws_access_key_id=SecretStr(source.access_key),
        aws_secret_access_key=SecretStr(source.secret_key),
    )


def put(source: S3Source, bucket: str, key: str, frame: pd.DataFrame) -> str:
    body = io.BytesIO()
    frame.to_parquet(body)
    source.client().put_object(Bucket=bucket, Key=key, Body=body.getvalue())
    return f"s3://{bucket}/{key}"


def ids(settings: Settings, uri: str, pin: str | None) -> list[str]:
    spec = SourceSpec(uri=uri)
    return [str(i) for b in iter_batches(settings, spec, fingerprint=pin) for i in b["id"]]


def test_versioned_object_is_read_at_the_pinned_version(server: S3Source, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    uri = put(server, server.bucket, "pin/versioned.parquet", OLD)
    summary, _ = check_source(settings, SourceSpec(uri=uri))
    assert "@" in summary.fingerprint  # etag:<etag>@<version id>
    put(server, server.bucket, "pin/versioned.parquet", NEW)

    assert ids(settings, uri, summary.fingerprint) == ["A1", "A2"]
    assert ids(settings, uri, None) == ["B1", "B2", "B3"]  # unpinned: the object as it is now
    verify_unchanged(settings, uri, summary.fingerprint)  # a newer version does not matter

    # A fresh worker (no local copy) downloads the same version again.
    release_pinned_copy(settings, uri, summary.fingerprint)
    assert not list((tmp_path / "sources").iterdir())
    assert ids(settings_for(server, tmp_path / "fresh"), uri, summary.fingerprint) == ["A1", "A2"]


def test_deleted_pinned_version_fails_naming_the_source(server: S3Source, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    uri = put(server, server.bucket, "pin/deleted.parquet", OLD)
    pin = fingerprint(settings, uri)
    put(server, server.bucket, "pin/deleted.parquet", NEW)
    version = pin.split("@", 1)[1]
    server.client().delete_object(
        Bucket=server.bucket, Key="pin/deleted.parquet", VersionId=version
    )

    with pytest.raises(SourceDataError, match=f"source '{uri}': the pinned version '{version}'"):
        verify_unchanged(settings, uri, pin)
    with pytest.raises(SourceDataError, match="no longer exists"):
        ids(settings, uri, pin)


def test_unversioned_object_changed_after_the_pin_is_refused(
    server: S3Source, tmp_path: Path
) -> None:
    settings = settings_for(server, tmp_path)
    uri = put(server, PLAIN_BUCKET, "pin/plain.parquet", OLD)
    summary, _ = check_source(settings, SourceSpec(uri=uri))  # downloads the pinned copy
    assert summary.fingerprint.startswith("etag:") and "@" not in summary.fingerprint
    put(server, PLAIN_BUCKET, "pin/plain.parquet", NEW)
    now = fingerprint(settings, uri)
    message = f"source '{uri}' changed during the build ({summary.fingerprint} → {now})"

    # This worker still reads the copy it pinned; the check after the build fails.
    assert ids(settings, uri, summary.fingerprint) == ["A1", "A2"]
    with pytest.raises(SourceChangedError) as verified:
        verify_unchanged(settings, uri, summary.fingerprint)
    assert message in str(verified.value)
    # A worker without the copy cannot get the old content back: S3 refuses (If-Match).
    with pytest.raises(SourceChangedError) as read:
        ids(settings_for(server, tmp_path / "fresh"), uri, summary.fingerprint)
    assert message in str(read.value)
    assert server.secret_key not in str(read.value)


def test_missing_object_and_foreign_fingerprint(server: S3Source, tmp_path: Path) -> None:
    settings = settings_for(server, tmp_path)
    missing = f"s3://{PLAIN_BUCKET}/pin/nothing.parquet"
    with pytest.raises(SourceDataError, match=f"source '{missing}' does not exist at"):
        ids(settings, missing, "etag:0123abcd")
    with pytest.raises(SourceDataError, match="fingerprint 'sha256:00' is not an S3 object's"):
        verify_unchanged(settings, missing, "sha256:00")
