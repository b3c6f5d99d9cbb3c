"""The S3 gateway: every call indexpair makes to S3 (or an S3-compatible store) goes here.

pyarrow reads the data (streamed, Parquet/CSV/JSONL) when no version is pinned; boto3
reads the object's identity (ETag and version id) for the source fingerprint, and
downloads the pinned content (by version id, or with If-Match on the ETag) for a build.
Both retry transient errors (throttling, 5xx, dropped connections) with AWS's standard
backoff, ``S3_ATTEMPTS`` tries in all, and fail with a `SourceDataError` that names the
URI and the endpoint, never the keys. Calls go through :class:`S3Gateway`, used as a
context (``with S3Gateway(settings) as s3:``).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from indexpair.errors import SourceChangedError, SourceDataError
from indexpair.settings import Settings

S3_ATTEMPTS = 4
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 30
CHUNK_BYTES = 8 << 20  # what one read of a download holds in memory
GONE_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion", "405", "MethodNotAllowed"}


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


def parse_fingerprint(uri: str, fingerprint: str) -> ObjectInfo:
    """The ETag and version id that an ``etag:<etag>[@<version id>]`` fingerprint pins.

    Raises:
        SourceDataError: the fingerprint is not an S3 one (a local file's ``sha256:…``).
    """
    body = fingerprint.removeprefix("etag:")
    etag, _, version = body.partition("@")
    if body == fingerprint or not etag:
        raise SourceDataError(
            f"source {uri!r}: fingerprint {fingerprint!r} is not an S3 object's "
            "(etag:<ETag>[@<version id>])"
        )
    return ObjectInfo(etag=etag, version_id=version or None)


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


def _filesystem(settings: Settings) -> pafs.S3FileSystem:
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


def _client(settings: Settings) -> Any:
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


def _version_gone(settings: Settings, uri: str, version_id: str) -> SourceDataError:
    return SourceDataError(
        f"source {uri!r}: the pinned version {version_id!r} no longer exists at "
        f"{endpoint(settings)}; start a new build"
    )


def _write_atomically(body: Any, dest: Path) -> None:
    """Copy a streaming body into ``dest`` chunk by chunk, renamed into place at the end."""
    fd, part = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                out.write(chunk)
        os.replace(part, dest)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


class S3Gateway:
    """One boto3 client and one pyarrow filesystem for an S3 endpoint, for a lifetime.

    Use it as a context: ``with S3Gateway(settings) as s3: ...``. Both are built on
    first use (boto3 is slow to import). The pyarrow filesystem has nothing to release,
    so one handed out (to a dataset that streams later) stays usable after the context.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._filesystem: pafs.S3FileSystem | None = None

    @property
    def client(self) -> Any:
        """A boto3 S3 client with the endpoint, keys, timeouts and retries of settings."""
        if self._client is None:
            self._client = _client(self.settings)
        return self._client

    def filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow S3 filesystem with the same endpoint, keys, timeouts and retries."""
        if self._filesystem is None:
            self._filesystem = _filesystem(self.settings)
        return self._filesystem

    def close(self) -> None:
        """Close the boto3 client's connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> S3Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def head(self, uri: str, version_id: str | None = None) -> ObjectInfo:
        """ETag and version id of an object (of one version of it, when ``version_id`` is given).

        Raises:
            SourceDataError: the object (or version) is missing, access is denied, or the
                endpoint is unreachable (after the retries); the message names the URI and
                endpoint.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split(uri)
        version = {"VersionId": version_id} if version_id else {}
        try:
            meta = self.client.head_object(Bucket=bucket, Key=key, **version)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if version_id and (code in GONE_CODES or code in {"400", "InvalidArgument"}):
                raise _version_gone(self.settings, uri, version_id) from exc
            if code in GONE_CODES:
                raise SourceDataError(
                    f"source {uri!r} does not exist at {endpoint(self.settings)}"
                ) from exc
            raise SourceDataError(
                f"source {uri!r}: S3 at {endpoint(self.settings)} refused HeadObject ({code})"
            ) from exc
        except BotoCoreError as exc:
            raise unreachable(self.settings, uri, exc) from exc
        return ObjectInfo(etag=str(meta["ETag"]).strip('"'), version_id=meta.get("VersionId"))

    def check_pinned(self, uri: str, pinned: ObjectInfo) -> None:
        """Check that S3 still serves the pinned content of an object.

        A versioned pin holds while its version exists (newer versions do not matter: the
        build read the pinned one); an unversioned pin holds while the ETag is unchanged.

        Raises:
            SourceChangedError: the object's ETag differs from the pinned one.
            SourceDataError: the pinned version or the object is gone, or S3 did not answer.
        """
        now = self.head(uri, pinned.version_id)
        if now.etag != pinned.etag:
            raise SourceChangedError(uri, pinned.fingerprint, now.fingerprint)

    def download(self, uri: str, pinned: ObjectInfo, dest: Path) -> None:
        """Stream the pinned content of an object into the file ``dest``.

        Reads by version id when the pin has one, else with ``If-Match`` on the ETag, so S3
        refuses a changed object rather than serving it; the ETag of the answer is compared
        too, for stores that ignore ``If-Match``. Memory holds one chunk at a time; ``dest``
        appears only once complete (written under a temporary name, then renamed), so a
        reader never sees a partial copy. A connection dropped mid-object restarts the
        download, ``S3_ATTEMPTS`` times in all.

        Raises:
            SourceChangedError: the object no longer has the pinned ETag.
            SourceDataError: the object or its pinned version is gone, or S3 did not answer.
        """
        from botocore.exceptions import BotoCoreError

        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, S3_ATTEMPTS + 1):
            body = self._get_pinned(uri, pinned)
            try:
                _write_atomically(body, dest)
                return
            except BotoCoreError as exc:  # the request was answered, the stream then broke
                if attempt == S3_ATTEMPTS:
                    raise unreachable(self.settings, uri, exc) from exc
                time.sleep(attempt)
            finally:
                body.close()

    def _get_pinned(self, uri: str, pinned: ObjectInfo) -> Any:
        """The body of a GetObject for the pinned content (checked by its ETag)."""
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split(uri)
        if pinned.version_id:
            condition = {"VersionId": pinned.version_id}
        else:
            condition = {"IfMatch": f'"{pinned.etag}"'}
        try:
            answer = self.client.get_object(Bucket=bucket, Key=key, **condition)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            if code in {"412", "PreconditionFailed"}:
                raise SourceChangedError(
                    uri, pinned.fingerprint, self.head(uri).fingerprint
                ) from exc
            if pinned.version_id and code in GONE_CODES | {"400", "InvalidArgument"}:
                raise _version_gone(self.settings, uri, pinned.version_id) from exc
            if code in GONE_CODES:
                raise SourceDataError(
                    f"source {uri!r} does not exist at {endpoint(self.settings)}"
                ) from exc
            raise SourceDataError(
                f"source {uri!r}: S3 at {endpoint(self.settings)} refused GetObject ({code})"
            ) from exc
        except BotoCoreError as exc:
            raise unreachable(self.settings, uri, exc) from exc
        served = ObjectInfo(str(answer["ETag"]).strip('"'), answer.get("VersionId"))
        if served.etag != pinned.etag:
            answer["Body"].close()
            raise SourceChangedError(uri, pinned.fingerprint, served.fingerprint)
        return answer["Body"]
