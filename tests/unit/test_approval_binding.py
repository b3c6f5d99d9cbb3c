"""An approval names the build it approves; any difference is caught, field by field."""

from __future__ import annotations

import pytest

from indexpair.approval import ApprovalBinding, mismatches, report_digest

BUILD = ApprovalBinding(
    candidate="product_embedder_v1_aaaa1111",
    model_name="product-embedder",
    model_version="1",
    source_fingerprint="sha256:11",
    report_digest=report_digest('{"collection": "product_embedder_v1_aaaa1111"}'),
)


@pytest.mark.parametrize(
    ("change", "wrong"),
    [
        ({}, []),
        ({"candidate": "product_embedder_v2_bbbb2222"}, ["candidate"]),
        ({"model_version": "2"}, ["model_version"]),
        ({"source_fingerprint": "sha256:22"}, ["source_fingerprint"]),
        ({"report_digest": report_digest("{}")}, ["report_digest"]),
        ({"model_version": "2", "candidate": "x"}, ["candidate", "model_version"]),
    ],
)
def test_mismatches_name_each_field(change: dict[str, str], wrong: list[str]) -> None:
    given = BUILD.model_dump() | change | {"approve": True, "approver": "ann"}
    found = mismatches(BUILD, given)
    assert [line.split(" ")[0] for line in found] == wrong
    for line, field in zip(found, wrong, strict=True):
        assert repr(change[field]) in line  # the bad value is named


def test_missing_fields_never_match() -> None:
    assert len(mismatches(BUILD, {"approve": True, "approver": "ann"})) == 5


def test_digest_differs_per_build_and_is_stable() -> None:
    other = BUILD.model_copy(update={"model_version": "2"})
    assert BUILD.digest() == ApprovalBinding(**BUILD.model_dump()).digest()
    assert BUILD.digest() != other.digest()
    assert report_digest("a") != report_digest("b")
