"""A real S3 server on loopback (moto's server) holding the demo catalog as Parquet, CSV
and JSONL, in a versioned bucket."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BUCKET = "indexpair-sources"
ACCESS_KEY = "AKIAINDEXPAIRTEST0001"
SECRET_KEY = "indexpair-s3-secret-7f3a9c1e5b"


@dataclass
class S3Source:
    """Where the S3 server listens and what it holds."""

    endpoint: str
    bucket: str = BUCKET
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    keys: dict[str, str] = field(default_factory=dict)  # format -> object key

    def uri(self, fmt: str) -> str:
        """``s3://bucket/key`` of the catalog in one format (parquet, csv, jsonl)."""
        return f"s3://{self.bucket}/{self.keys[fmt]}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to read it: endpoint and keys."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 client on the server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )


def catalog_bytes(parquet: Path) -> dict[str, bytes]:
    """The same catalog as Parquet, CSV and JSONL bytes."""
    import pandas as pd

    frame = pd.read_parquet(parquet)
    csv, jsonl = io.StringIO(), io.StringIO()
    frame.to_csv(csv, index=False)
    frame.to_json(jsonl, orient="records", lines=True)
    return {
        "parquet": parquet.read_bytes(),
        "csv": csv.getvalue().encode(),
        "jsonl": jsonl.getvalue().encode(),
    }


@contextmanager
def s3_server(port: int, parquet: Path) -> Iterator[S3Source]:
    """Start moto's S3 server on loopback, fill a versioned bucket; always stop it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        source = S3Source(endpoint=f"http://127.0.0.1:{port}")
        client = source.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        for fmt, body in catalog_bytes(parquet).items():
            key = f"catalog/products_small.{fmt}"
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
            source.keys[fmt] = key
        yield source
    finally:
        server.stop()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration; restore the previous values."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
