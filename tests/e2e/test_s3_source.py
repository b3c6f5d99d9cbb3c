"""S3 sources for real: a promotion reads the catalog from an S3 server on loopback
(moto), in Parquet, CSV and JSONL, and records the object's ETag and version id."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from indexpair.errors import SourceDataError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.s3 import S3Gateway
from indexpair.settings import Settings
from tasks.source import SourceSpec, check_source, document_texts, fingerprint, iter_batches
from tests.conftest import DATA_DIR
from tests.e2e.conftest import build_name, decide, promotion_params, start
from tests.support.s3 import S3Source

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def s3_settings(settings: Settings, source: S3Source) -> Settings:
    return settings.model_copy(
        update={
            "aws_endpoint_url": source.endpoint,
            "aws_access_key_id": SecretStr(source.access_key),
            "aws_secret_access_key": SecretStr(source.secret_key),
        }
    )


def object_fingerprint(source: S3Source, fmt: str) -> str:
    head = source.client().head_object(Bucket=source.bucket, Key=source.keys[fmt])
    return f"etag:{head['ETag'].strip(chr(34))}@{head['VersionId']}"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_read_the_same_rows_as_parquet(
    stack_settings: Settings, s3_source: S3Source, fmt: str
) -> None:
    settings = s3_settings(stack_settings, s3_source)
    spec = SourceSpec(uri=s3_source.uri("parquet"))
    other = SourceSpec(uri=s3_source.uri(fmt))

    def rows(s: SourceSpec) -> list[tuple[str, str]]:
        return [
            (str(i), text)
            for batch in iter_batches(settings, s)
            for i, text in zip(
                batch.column("id").to_pylist(), document_texts(batch, s.text_fields), strict=True
            )
        ]

    expected = rows(spec)
    assert len(expected) == 800
    assert rows(other) == expected
    summary, ids = check_source(settings, other)
    assert (summary.rows, summary.uri, len(ids)) == (800, other.uri, 800)
    assert summary.fingerprint == object_fingerprint(s3_source, fmt)


def test_fingerprint_changes_with_a_new_object_version(
    stack_settings: Settings, s3_source: S3Source
) -> None:
    settings = s3_settings(stack_settings, s3_source)
    key = "catalog/rewritten.parquet"
    body = (DATA_DIR / "products_small.parquet").read_bytes()
    client = s3_source.client()
    client.put_object(Bucket=s3_source.bucket, Key=key, Body=body)
    first = fingerprint(settings, f"s3://{s3_source.bucket}/{key}")
    client.put_object(Bucket=s3_source.bucket, Key=key, Body=body)  # same bytes, new version
    second = fingerprint(settings, f"s3://{s3_source.bucket}/{key}")
    assert first.split("@")[0] == second.split("@")[0]  # same ETag: same content
    assert first != second  # but another version id


def test_missing_object_names_the_uri(stack_settings: Settings, s3_source: S3Source) -> None:
    settings = s3_settings(stack_settings, s3_source)
    missing = f"s3://{s3_source.bucket}/catalog/nothing.parquet"
    with pytest.raises(SourceDataError, match="does not exist"):
        check_source(settings, SourceSpec(uri=missing))
    with S3Gateway(settings) as s3, pytest.raises(SourceDataError, match="does not exist"):
        s3.head(missing)


def test_promotion_builds_from_s3_through_the_worker(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    s3_source: S3Source,
) -> None:
    alias = "e2e_s3"
    params = promotion_params(demo_versions["tfidf"], alias)
    params["source"] = {"uri": s3_source.uri("parquet")}
    snap = start(stack_settings, params)
    assert snap["state_type"] == "PAUSED", snap
    name = build_name(snap, demo_versions["tfidf"])
    pair = milvus.read_pair(name)
    assert pair.source_uri == s3_source.uri("parquet")
    assert pair.source_fingerprint == object_fingerprint(s3_source, "parquet")
    assert pair.source_rows == milvus.row_count(name) == 800
    done = decide(stack_settings, snap, approve=False)
    assert done["state_name"] == "Denied", done
