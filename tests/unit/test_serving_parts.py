"""Serving pieces that need no service: the query log, overlap@k, the shadow report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pymilvus import MilvusException

from indexpair.gateways.mlflow import ModelVersionRef
from indexpair.serving.query import connection_lost
from indexpair.serving.query_log import QueryLog, recent_queries
from tasks.reporting import report_markdown
from tasks.shadow import QuerySetShadow, ShadowReport, overlap_at_k
from tasks.validation import Metrics, ValidationPolicy, ValidationReport


def test_query_log_stays_bounded_and_gives_newest_distinct_first(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = QueryLog(path, max_entries=5)
    for i in range(23):
        log.append(f"query {i % 7}", 10, "c", "1")
    lines = path.read_text().splitlines()
    assert 5 <= len(lines) < 10
    assert json.loads(lines[-1])["q"] == "query 1"  # 22 % 7
    assert recent_queries(path, 3) == ["query 1", "query 0", "query 6"]


def test_query_log_reading_tolerates_damage_and_absence(tmp_path: Path) -> None:
    assert recent_queries(tmp_path / "missing.jsonl", 5) == []
    path = tmp_path / "log.jsonl"
    path.write_text('{"q": "boots"}\nnot json\n{"q": ""}\n[1]\n{"q": "tent"}\n')
    assert recent_queries(path, 5) == ["tent", "boots"]
    QueryLog(path, max_entries=0).append("ignored", 5, "c", "1")  # disabled: no write
    assert "ignored" not in path.read_text()


@pytest.mark.parametrize(
    ("a", "b", "k", "expected"),
    [
        (["1", "2", "3"], ["1", "2", "3"], 3, 1.0),
        (["1", "2", "3"], ["3", "2", "1"], 3, 1.0),  # order does not matter
        (["1", "2", "3"], ["4", "5", "6"], 3, 0.0),
        (["1", "2"], ["2", "9"], 4, 0.25),  # fewer than k results count against overlap
    ],
)
def test_overlap_at_k(a: list[str], b: list[str], k: int, expected: float) -> None:
    assert overlap_at_k(a, b, k) == expected


def _report() -> ValidationReport:
    m = Metrics(recall_at_k=0.7, mrr=0.7, ndcg_at_k=0.6, queries=30)
    return ValidationReport(
        collection="c_v2_x", k=10, candidate=m, live=m, live_collection="c_v1_y"
    )


def test_report_shows_the_shadow_comparison_side_by_side() -> None:
    shadow = ShadowReport(
        k=10,
        live_collection="c_v1_y",
        candidate_collection="c_v2_x",
        sets=[
            QuerySetShadow(
                origin="golden",
                queries=29,
                skipped=1,
                mean_overlap=0.55,
                min_overlap=0.0,
                live_ms_p50=7.7,
                candidate_ms_p50=17.6,
                lowest=[("red boots", 0.0)],
            ),
            QuerySetShadow(
                origin="recent live",
                queries=12,
                skipped=0,
                mean_overlap=0.48,
                min_overlap=0.1,
                live_ms_p50=8.0,
                candidate_ms_p50=18.0,
            ),
        ],
    )
    ref = ModelVersionRef(name="m", version="2", uri="models:/m/2")
    text = report_markdown(_report(), ref, 800, ValidationPolicy(), shadow)
    assert "## Shadow comparison: live `c_v1_y` vs candidate" in text
    assert "| golden | 29 (+1 not encodable) | 0.55 | 0.00 | 7.7 | 17.6 |" in text
    assert "| recent live | 12 | 0.48 | 0.10 | 8.0 | 18.0 |" in text
    assert "'red boots' 0.00" in text
    no_live = ShadowReport(
        k=10, live_collection="c_v1_y", candidate_collection="c_v2_x", sets=shadow.sets[:1]
    )
    assert "the search service logged no queries" in report_markdown(
        _report(), ref, 800, ValidationPolicy(), no_live
    )
    assert "Shadow comparison" not in report_markdown(_report(), ref, 800, ValidationPolicy())


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (MilvusException(message="should create connection first"), True),
        (MilvusException(code=2, message="GOAWAY received; too_many_pings"), True),
        (ValueError("Cannot invoke RPC on closed channel!"), True),
        (MilvusException(code=100, message="collection not found[collection=x]"), False),
        (ValueError("dimension mismatch"), False),
    ],
)
def test_what_counts_as_a_lost_connection(exc: Exception, lost: bool) -> None:
    assert connection_lost(exc) is lost


def test_batch_threads_one_for_small_batches_all_for_large_in_the_calling_thread() -> None:
    import threading

    import torch

    from indexpair.models import BatchThreads

    every = torch.get_num_threads()
    policy = BatchThreads(parallel_from=8)
    seen: dict[str, int] = {}

    def batch(size: int, key: str) -> None:
        policy.for_batch(size)
        seen[key] = torch.get_num_threads()

    try:
        for size, key in ((1, "one"), (7, "seven"), (8, "eight"), (64, "large"), (2, "small")):
            worker = threading.Thread(target=batch, args=(size, key))  # as the batcher does
            worker.start()
            worker.join()
        batch(1, "here")
        assert seen == {"one": 1, "seven": 1, "eight": every, "large": every, "small": 1, "here": 1}
    finally:
        torch.set_num_threads(every)


def test_batch_threads_leave_a_process_without_pytorch_alone() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from indexpair.models import BatchThreads; "
        "BatchThreads(8).for_batch(1); BatchThreads(1).for_batch(64); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
