"""Micro-batching and the pre-load choice, without services."""

from __future__ import annotations

import threading

import pytest

from indexpair.pair import PairState
from indexpair.serving.batching import MicroBatcher, Request
from indexpair.serving.preload import preload_targets
from tests.support.pairs import pair_metadata


def _concurrently(batcher: MicroBatcher, texts: list[str]) -> list[object]:
    answers: list[object] = [None] * len(texts)
    start = threading.Barrier(len(texts))

    def ask(i: int) -> None:
        start.wait()
        try:
            answers[i] = batcher.submit(texts[i], i + 1)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each caller got
            answers[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_concurrent_requests_share_batches_and_get_their_own_answers() -> None:
    sizes: list[int] = []

    def run(batch: list[Request]) -> list[str]:
        sizes.append(len(batch))
        return [f"{r.text}:{r.k}" for r in batch]

    batcher = MicroBatcher(run, max_batch=8, wait_ms=50)
    try:
        texts = [f"q{i}" for i in range(20)]
        answers = _concurrently(batcher, texts)
    finally:
        batcher.close()
    assert answers == [f"q{i}:{i + 1}" for i in range(20)]
    assert sum(sizes) == 20 and max(sizes) <= 8
    assert len(sizes) < 20, sizes  # some requests shared a batch
    assert (batcher.batches, batcher.answered) == (len(sizes), 20)


def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_runs() -> None:
    calls = []

    def run(batch: list[Request]) -> list[str]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("milvus went away")
        return [r.text for r in batch]

    batcher = MicroBatcher(run, max_batch=64, wait_ms=50)
    try:
        first = _concurrently(batcher, ["a", "b", "c"])
        assert all(isinstance(a, RuntimeError) for a in first[: calls[0]])
        assert batcher.submit("again", 1) == "again"
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("late", 1)


def test_a_cancelled_request_is_left_out_and_the_others_are_answered() -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def run(batch: list[Request]) -> list[str]:
        seen.append([r.text for r in batch])
        if len(seen) == 1:
            started.set()
            release.wait(10)  # the next requests queue up meanwhile
        return [r.text.upper() for r in batch]

    batcher = MicroBatcher(run, max_batch=8, wait_ms=1, finish=lambda answers: answers)
    try:
        first = batcher.submit_future("a", 1)
        assert started.wait(10)
        gone, kept = batcher.submit_future("b", 1), batcher.submit_future("c", 1)
        assert gone.cancel()  # its caller gave up while it waited for a batch
        release.set()
        assert first.result(10) == "A" and kept.result(10) == "C"
        assert batcher.submit("d", 1) == "D"  # the batcher still answers
    finally:
        batcher.close()
    assert seen == [["a"], ["c"], ["d"]]
    assert (batcher.batches, batcher.answered) == (3, 3)


def test_the_second_stage_gets_the_first_stages_result_and_its_errors_fail_the_batch() -> None:
    def finish(texts: list[str]) -> list[str]:
        if "bad" in texts:
            raise RuntimeError("search failed")
        return [f"{t}!" for t in texts]

    batcher = MicroBatcher(lambda batch: [r.text for r in batch], 4, 1, finish=finish)
    try:
        assert batcher.submit("x", 1) == "x!"
        with pytest.raises(RuntimeError, match="search failed"):
            batcher.submit("bad", 1)
        answers = _concurrently(batcher, [f"q{i}" for i in range(10)])
        assert answers == [f"q{i}!" for i in range(10)]
    finally:
        batcher.close()


def _pair(name: str, state: PairState, alias: str = "prod", since: str = "") -> tuple:
    return name, pair_metadata(name, state=state, alias=alias, previous_since=since)


@pytest.mark.parametrize(
    ("pairs", "room", "expected"),
    [
        # a candidate and the newest previous pair; the live one and other aliases never
        (
            [
                _pair("m_v1_old0", PairState.PREVIOUS, since="2026-01-01T00:00:00+00:00"),
                _pair("m_v2_prev", PairState.PREVIOUS, since="2026-02-01T00:00:00+00:00"),
                _pair("m_v3_live", PairState.LIVE),
                _pair("m_v4_cand", PairState.AWAITING_APPROVAL),
                _pair("m_v5_othr", PairState.AWAITING_APPROVAL, alias="other"),
            ],
            2,
            ["m_v4_cand", "m_v2_prev"],
        ),
        # an approved candidate waiting for its switch counts; no room for the rest
        (
            [
                _pair("m_v2_prev", PairState.PREVIOUS, since="2026-02-01T00:00:00+00:00"),
                _pair("m_v3_live", PairState.LIVE),
                _pair("m_v4_appr", PairState.APPROVED),
                _pair("m_v5_cand", PairState.AWAITING_APPROVAL),
            ],
            1,
            ["m_v5_cand"],
        ),
        # rolled back, rejected, building: never warmed
        (
            [
                _pair("m_v1_back", PairState.ROLLED_BACK),
                _pair("m_v2_rejd", PairState.REJECTED),
                _pair("m_v3_live", PairState.LIVE),
                _pair("m_v4_bild", PairState.BUILDING),
            ],
            2,
            [],
        ),
    ],
)
def test_what_is_preloaded(pairs: list, room: int, expected: list[str]) -> None:
    assert preload_targets(pairs, "prod", "m_v3_live", room) == expected
