"""The S3 gateway: every call indexpair makes to S3 (or an S3-compatible store) goes here.

pyarrow reads the data (streamed, Parquet/CSV/JSONL); boto3 reads the object's identity
(ETag and version id) for the source fingerprint. Both retry transient errors (throttling,
5xx, dropped connections) with AWS's standard backoff, ``S3_ATTEMPTS`` tries in all, and
fail with a `SourceDataError` that names the URI and the endpoint, never the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from indexpair.errors import SourceDataError
from indexpair.settings import Settings

S3_ATTEMPTS = 4
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 30


@dataclass(frozen=True)
class ObjectInfo:
    """What identifies one S3 object's content."""

    etag: str
    version_id: str | None

    @property
    def fingerprint(self) -> str:
        """``etag:<etag>`` plus ``@<version id>`` when the bucket is versioned."""
        version = f"@{self.version_id}" if self.version_id and self.version_id != "null" else ""
        return f"etag:{self.etag}{version}"


def endpoint(settings: Settings) -> str:
    """The S3 endpoint in use, for messages."""
    return settings.aws_endpoint_url or f"AWS S3 ({settings.aws_region})"


def split(uri: str) -> tuple[str, str]:
    """Bucket and key of an ``s3://bucket/key`` URI."""
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not parsed.netloc or not key:
        raise SourceDataError(f"source {uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, key


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def filesystem(settings: Settings) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem with explicit timeouts and retries."""
    parsed = urlparse(settings.aws_endpoint_url) if settings.aws_endpoint_url else None
    return pafs.S3FileSystem(
        access_key=_secret(settings.aws_access_key_id),
        secret_key=_secret(settings.aws_secret_access_key),
        region=settings.aws_region,
        endpoint_override=parsed.netloc if parsed else None,
        scheme=parsed.scheme if parsed else "https",
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=READ_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
    )


def client(settings: Settings) -> Any:
    """A boto3 S3 client with the same endpoint, keys, timeouts and retries."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=_secret(settings.aws_access_key_id),
        aws_secret_access_key=_secret(settings.aws_secret_access_key),
        config=Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"mode": "standard", "max_attempts": S3_ATTEMPTS},
        ),
    )


def head(settings: Settings, uri: str) -> ObjectInfo:
    """ETag and version id of an object.

    Raises:
        SourceDataError: the object is missing, access is denied, or the endpoint is
            unreachable (after the retries); the message names the URI and endpoint.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split(uri)
    try:
        meta = client(settings).head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise SourceDataError(f"source {uri!r} does not exist at {endpoint(settings)}") from exc
        raise SourceDataError(
            f"source {uri!r}: S3 at {endpoint(settings)} refused HeadObject ({code})"
        ) from exc
    except BotoCoreError as exc:
        raise unreachable(settings, uri, exc) from exc
    return ObjectInfo(etag=str(meta["ETag"]).strip('"'), version_id=meta.get("VersionId"))


def unreachable(settings: Settings, uri: str, exc: Exception) -> SourceDataError:
    """The error for an S3 endpoint that did not answer, or refused, after the retries.

    The client's own message (the AWS error, bucket and key; never the keys) is kept.
    """
    reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    return SourceDataError(
        f"source {uri!r}: S3 endpoint {endpoint(settings)} is unreachable or refused the "
        f"request after {S3_ATTEMPTS} attempts ({reason}); check AWS_ENDPOINT_URL, the "
        "network and the keys"
    )
