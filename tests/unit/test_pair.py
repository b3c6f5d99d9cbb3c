"""Naming rules and the pair metadata round trip."""

import pytest

from indexpair.errors import InvalidNameError, PairNotFound
from indexpair.pair import PairMetadata, PairState, check_name, collection_name, model_slug


@pytest.mark.parametrize(
    ("model", "version", "build", "expected"),
    [
        ("product-embedder", "3", "abc123", "product_embedder_v3_abc123"),
        ("My Model", "12", "0f0f", "my_model_v12_0f0f"),
        ("7eleven", "1", "abcd", "m_7eleven_v1_abcd"),
    ],
)
def test_collection_name(model: str, version: str, build: str, expected: str) -> None:
    assert collection_name(model, version, build) == expected


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("bad-name", "not a valid Milvus name"),
        ("1abc", "not a valid Milvus name"),
        ("", "is empty"),
        ("a" * 256, "Milvus allows 255"),
        ("sp ace", "not a valid Milvus name"),
    ],
)
def test_check_name_rejects(name: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError, match=fragment):
        check_name(name)


def test_check_name_accepts_underscore_start() -> None:
    assert check_name("_live") == "_live"


@pytest.mark.parametrize(("version", "build"), [("v1", "abcd"), ("1", "AB"), ("1", "x-y1")])
def test_collection_name_rejects_bad_parts(version: str, build: str) -> None:
    with pytest.raises(InvalidNameError):
        collection_name("m", version, build)


def test_model_slug_without_letters() -> None:
    with pytest.raises(InvalidNameError, match="'---'"):
        model_slug("---")


def _meta(**kw: object) -> PairMetadata:
    base = dict(
        model_name="m",
        model_version="2",
        model_uri="models:/m/2",
        dim=384,
        build_id="abcd",
        source_uri="/data/p.parquet",
        source_fingerprint="sha256:x",
        source_rows=10,
    )
    base.update(kw)
    return PairMetadata.model_validate(base)


def test_properties_round_trip() -> None:
    meta = _meta(state=PairState.LIVE, baseline="old_v1_abcd")
    props = meta.to_properties()
    assert props["indexpair.model_version"] == "2"
    assert all(isinstance(v, str) for v in props.values())
    assert PairMetadata.from_properties("c", props) == meta


def test_foreign_collection_has_no_pair() -> None:
    with pytest.raises(PairNotFound, match="'foreign' carries no indexpair pair metadata"):
        PairMetadata.from_properties("foreign", {"owner": "someone"})


def test_damaged_pair_metadata() -> None:
    props = _meta().to_properties()
    props["indexpair.dim"] = "zero"
    with pytest.raises(PairNotFound, match="damaged pair metadata"):
        PairMetadata.from_properties("c", props)
