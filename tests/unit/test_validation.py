"""Retrieval metrics, the accept/reject decision and golden-file checks."""

import json
import math
from pathlib import Path

import pytest

from indexpair.errors import GoldenQueryError
from tasks.validation import (
    GoldenQuery,
    GoldenSet,
    Metrics,
    ValidationPolicy,
    check_golden_ids,
    decide,
    load_golden,
    mean_metrics,
    ndcg_at_k,
    recall_at_k,
    reciprocal_rank,
)


def test_recall_caps_denominator_at_k() -> None:
    assert recall_at_k(["a", "b", "c"], {"a", "c", "x"}, 3) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "b"], {"a", "b", "c", "d"}, 2) == 1.0
    assert recall_at_k(["z"], {"a"}, 10) == 0.0


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a"}, 2) == 0.0


def test_ndcg_perfect_and_partial() -> None:
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a"], {"a", "b"}, 10) == pytest.approx(expected)


def test_mean_metrics_over_queries() -> None:
    golden = GoldenSet(
        uri="g",
        queries=[
            GoldenQuery(query="q1", relevant_ids=["a"]),
            GoldenQuery(query="q2", relevant_ids=["b"]),
        ],
    )
    m = mean_metrics([["a"], ["x", "b"]], golden, 10)
    assert m.recall_at_k == 1.0
    assert m.mrr == pytest.approx(0.75)


def _m(r: float, mrr: float, n: float) -> Metrics:
    return Metrics(recall_at_k=r, mrr=mrr, ndcg_at_k=n, queries=60)


@pytest.mark.parametrize(
    ("candidate", "live", "n_failures", "fragment"),
    [
        (_m(0.9, 0.8, 0.8), None, 0, ""),
        (_m(0.9, 0.8, 0.8), _m(0.9, 0.8, 0.8), 0, ""),
        (_m(0.3, 0.8, 0.8), None, 1, "recall_at_k 0.300 < threshold 0.400"),
        (_m(0.9, 0.8, 0.8), _m(0.99, 0.8, 0.8), 1, "recall_at_k 0.900 regresses from live 0.990"),
        (_m(0.96, 0.8, 0.8), _m(0.99, 0.8, 0.8), 0, ""),  # within tolerance 0.05
        (_m(0.05, 0.05, 0.05), _m(0.9, 0.8, 0.8), 6, "mrr 0.050 < threshold"),
    ],
)
def test_decide(candidate: Metrics, live: Metrics | None, n_failures: int, fragment: str) -> None:
    failures = decide(candidate, live, ValidationPolicy())
    assert len(failures) == n_failures
    assert fragment in "; ".join(failures)


def _write(tmp_path: Path, content: str) -> str:
    path = tmp_path / "golden.json"
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must hold a non-empty JSON list"),
        ('{"a": 1}', "must hold a non-empty JSON list"),
        ('[{"query": "boots"}]', "entry #0"),
        ('[{"query": "", "relevant_ids": ["P1"]}]', "entry #0"),
        (
            '[{"query": "ok", "relevant_ids": ["P1"]}, {"query": "x", "relevant_ids": []}]',
            "entry #1",
        ),
    ],
)
def test_load_golden_rejects(tmp_path: Path, content: str, fragment: str) -> None:
    with pytest.raises(GoldenQueryError, match=fragment):
        load_golden(_write(tmp_path, content))


def test_load_golden_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GoldenQueryError, match="does not exist"):
        load_golden(str(tmp_path / "nope.json"))


def test_golden_unknown_ids(tmp_path: Path) -> None:
    uri = _write(tmp_path, json.dumps([{"query": "red boots", "relevant_ids": ["P1", "P9"]}]))
    golden = load_golden(uri)
    with pytest.raises(GoldenQueryError, match=r"'red boots' names ids not in source.*P9"):
        check_golden_ids(golden, {"P1", "P2"}, "src.parquet")
