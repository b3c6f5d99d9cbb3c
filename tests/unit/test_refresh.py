"""The refresh change set and the automatic-approval rule."""

from __future__ import annotations

import numpy as np
import pytest

from flows.refresh import AUTO_APPROVER, auto_decision
from indexpair.gateways.mlflow import ModelVersionRef
from tasks.collections import BuildPin
from tasks.refresh import diff
from tasks.validation import Metrics, ValidationReport

LIVE = {"a": "h1", "b": "h2", "c": "h3", "d": "h4"}
BUILD = BuildPin(
    name="m_v1_abcd1234",
    ref=ModelVersionRef(name="m", version="1", uri="models:/m/1"),
    baseline="m_v1_live0000",
    source_fingerprint="sha256:00",
    report='{"collection": "c"}',
)


@pytest.mark.parametrize(
    ("source", "counts", "to_embed"),
    [
        (dict(LIVE), (4, 0, 0, 0), []),
        (LIVE | {"e": "h5"}, (4, 1, 0, 0), ["e"]),
        (LIVE | {"b": "changed"}, (3, 0, 1, 0), ["b"]),
        ({"a": "h1", "b": "h2"}, (2, 0, 0, 2), []),
        ({"a": "x", "e": "h5", "f": "h6"}, (0, 2, 1, 3), ["a", "e", "f"]),
        ({}, (0, 0, 0, 4), []),
    ],
)
def test_diff_classifies_every_row(
    source: dict[str, str], counts: tuple[int, int, int, int], to_embed: list[str]
) -> None:
    changes = diff(source, LIVE, "live_v1_abcd")
    assert (changes.unchanged, changes.new, changes.changed, changes.deleted) == counts
    assert changes.to_embed == to_embed
    assert changes.deleted_ids == sorted(set(LIVE) - set(source))
    assert changes.source_rows == len(source)
    assert changes.has_changes == (counts[1:] != (0, 0, 0))


def _report(candidate: tuple[float, float, float], live: tuple[float, float, float] | None):
    def metrics(v: tuple[float, float, float]) -> Metrics:
        return Metrics(recall_at_k=v[0], mrr=v[1], ndcg_at_k=v[2], queries=30)

    return ValidationReport(
        collection="c", k=10, candidate=metrics(candidate), live=metrics(live) if live else None
    )


@pytest.mark.parametrize(
    ("candidate", "live", "auto"),
    [
        ((0.6, 0.7, 0.6), (0.6, 0.7, 0.6), True),  # equal: nothing regressed
        ((0.7, 0.8, 0.7), (0.6, 0.7, 0.6), True),
        ((0.6, 0.7, 0.5999), (0.6, 0.7, 0.6), False),  # any drop at all asks a person
        ((0.9, 0.9, 0.9), None, False),  # nothing to compare with
    ],
)
def test_auto_approval_only_without_regression(
    candidate: tuple[float, float, float], live: tuple[float, float, float] | None, auto: bool
) -> None:
    decision = auto_decision(_report(candidate, live), BUILD)
    assert (decision is not None) == auto
    if decision is not None:
        assert decision.approve and decision.approver == AUTO_APPROVER
        assert (decision.candidate, decision.model_version) == (BUILD.name, "1")  # bound
        assert f"recall_at_k {candidate[0]:.3f} ≥ {live[0]:.3f}" in decision.comment  # type: ignore[index]


@pytest.mark.parametrize(
    ("prompt", "metric", "reusable"),
    [("", "COSINE", True), ("passage: ", "COSINE", False), ("", "IP", False)],
)
def test_live_vectors_are_reused_only_when_encoded_the_same_way(
    prompt: str, metric: str, reusable: bool
) -> None:
    from indexpair.errors import BuildError
    from indexpair.models import ModelContract
    from tasks.refresh import check_reusable
    from tests.support.pairs import pair_metadata

    live = pair_metadata("m_v1_live0000")
    contract = ModelContract(flavor="python_function", dim=8, metric=metric, document_prompt=prompt)
    if reusable:
        check_reusable(live, contract, "m_v1_live0000")
    else:
        with pytest.raises(BuildError, match="its vectors cannot be reused, promote it instead"):
            check_reusable(live, contract, "m_v1_live0000")


def test_the_source_streams_through_the_compare() -> None:
    """The source side is a generator read once, in chunks; only the live side is held,
    as digests; the deleted rows are named from a second pass over the live ids."""
    from tasks.refresh import LiveDigests, diff_stream

    read = []

    def source():  # type: ignore[no-untyped-def]
        for i, h in [("a", "h1"), ("b", "changed"), ("e", "h5")]:
            read.append(i)
            yield i, h

    live = LiveDigests.of(LIVE.items())
    changes = diff_stream(source(), live, "live_v1_abcd", LIVE.keys, chunk=2)
    assert read == ["a", "b", "e"]
    assert (changes.unchanged, changes.new, changes.changed, changes.deleted) == (1, 1, 1, 2)
    assert changes.to_embed == ["b", "e"] and changes.deleted_ids == ["c", "d"]
    assert live.ids.dtype == live.contents.dtype == np.int64  # 16 bytes a live row
    assert live.unseen == 2


def test_no_second_pass_over_the_live_ids_without_deletions() -> None:
    from tasks.refresh import LiveDigests, diff_stream

    def never() -> list[str]:
        raise AssertionError("the live ids were read again though nothing was deleted")

    live = LiveDigests.of(LIVE.items())
    changes = diff_stream(iter((LIVE | {"e": "h5"}).items()), live, "live_v1_abcd", never)
    assert changes.counts() == {"unchanged": 4, "new": 1, "changed": 0, "deleted": 0}


def test_colliding_id_digests_are_refused_and_the_exact_compare_agrees() -> None:
    from tasks.refresh import DigestCollision, LiveDigests, diff, diff_exact

    with pytest.raises(DigestCollision):
        LiveDigests([7, 3, 7], [1, 2, 3])
    source = {"a": "x", "e": "h5", "f": "h6", "b": "h2"}
    exact = diff_exact(iter(source.items()), iter(LIVE.items()), "live_v1_abcd")
    assert exact == diff(source, LIVE, "live_v1_abcd")


def test_read_ahead_yields_in_order_raises_the_producers_error_and_stops_early() -> None:
    from tasks.refresh import read_ahead

    assert list(read_ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        raise RuntimeError("milvus went away")

    got = []
    with pytest.raises(RuntimeError, match="milvus went away"):
        for item in read_ahead(failing(), depth=2):
            got.append(item)
    assert got == [1]

    produced = []

    def endless():  # type: ignore[no-untyped-def]
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    for item in read_ahead(endless(), depth=2):
        if item == 3:
            break
    assert len(produced) <= 3 + 2 + 2  # it stopped soon after the consumer did


def test_against_an_empty_live_collection_every_row_is_new() -> None:
    from tasks.refresh import diff

    changes = diff({"b": "h2", "a": "h1"}, {}, "live_v1_abcd")
    assert changes.counts() == {"unchanged": 0, "new": 2, "changed": 0, "deleted": 0}
    assert changes.to_embed == ["a", "b"]
