"""S3 gateway rules that need no server: URIs, fingerprints, error messages."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from indexpair.errors import SourceDataError
from indexpair.gateways import s3
from indexpair.settings import Settings


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (s3.ObjectInfo("abc", "v1"), "etag:abc@v1"),
        (s3.ObjectInfo("abc", None), "etag:abc"),
        (s3.ObjectInfo("abc", "null"), "etag:abc"),  # an unversioned object in a bucket
    ],
)
def test_fingerprint(info: s3.ObjectInfo, expected: str) -> None:
    assert info.fingerprint == expected


@pytest.mark.parametrize(
    ("fingerprint", "info"),
    [
        ("etag:abc@v1", s3.ObjectInfo("abc", "v1")),
        ("etag:abc-3", s3.ObjectInfo("abc-3", None)),  # a multipart upload's ETag
    ],
)
def test_fingerprint_parsed_back(fingerprint: str, info: s3.ObjectInfo) -> None:
    assert s3.parse_fingerprint("s3://b/k.parquet", fingerprint) == info
    assert info.fingerprint == fingerprint


@pytest.mark.parametrize("fingerprint", ["sha256:00", "etag:", "abc@v1", ""])
def test_foreign_fingerprint_is_refused(fingerprint: str) -> None:
    with pytest.raises(SourceDataError, match=f"fingerprint {fingerprint!r} is not an S3"):
        s3.parse_fingerprint("s3://b/k.parquet", fingerprint)


@pytest.mark.parametrize("uri", ["s3://bucket", "s3://bucket/", "s3:///key.parquet"])
def test_incomplete_uri_is_refused(uri: str) -> None:
    with pytest.raises(SourceDataError, match="is not an s3://bucket/key URI"):
        s3.split(uri)


def test_unreachable_names_uri_and_endpoint_not_keys() -> None:
    settings = Settings(
        aws_endpoint_url="http://127.0.0.1:9",
        aws_access_key_id=SecretStr("AKIAUNITTEST"),
        aws_secret_access_key=SecretStr("unit-secret-value"),
    )
    error = s3.unreachable(settings, "s3://b/k.parquet", OSError("Could not connect\nmore"))
    text = str(error)
    assert "s3://b/k.parquet" in text and "http://127.0.0.1:9" in text
    assert "(Could not connect)" in text
    assert "unit-secret-value" not in text and "AKIAUNITTEST" not in text
