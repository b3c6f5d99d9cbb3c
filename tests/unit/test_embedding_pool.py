"""How the build cuts the source into embedding batches (no Ray needed)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from indexpair.build.pool import embedding_batches, groups, id_set, keep_rows


def source(*sizes: int) -> list[pa.Table]:
    """Source tables of the given sizes, ids numbered on from 0."""
    tables, at = [], 0
    for n in sizes:
        tables.append(pa.table({"id": list(range(at, at + n)), "text": ["t"] * n}))
        at += n
    return tables


@pytest.mark.parametrize(
    ("sizes", "size", "total", "actors", "expected"),
    [
        # Re-cut to full batches whatever the source's own batches are.
        # With no total known, what is left at the end goes in quarter batches.
        ((10, 10, 10), 8, None, 2, [8, 8, 8, 2, 2, 2]),
        ((30,), 8, None, 2, [8, 8, 8, 2, 2, 2]),
        ((3, 3, 3, 3), 4, None, 1, [4, 4, 4]),
        # Known total: the last actors × size rows go in quarter batches.
        ((100,), 16, 100, 2, [16] * 5 + [4] * 5),
        ((100,), 16, 100, 1, [16] * 6 + [4]),
        ((5,), 16, 5, 2, [4, 1]),
        # Nothing, or empty tables, gives no batch.
        ((), 16, None, 2, []),
        ((0, 0), 16, 0, 2, []),
    ],
)
def test_batches_are_full_and_shrink_at_the_end(
    sizes: tuple[int, ...], size: int, total: int | None, actors: int, expected: list[int]
) -> None:
    batches = list(embedding_batches(source(*sizes), size, total, actors))
    assert [b.num_rows for b in batches] == expected
    ids = [i for b in batches for i in b.column("id").to_pylist()]
    assert ids == list(range(sum(sizes))), "every row once, in order"


def test_keep_rows_filters_by_id_as_text() -> None:
    batch = pa.record_batch({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"]})
    kept = keep_rows(batch, "id", id_set(frozenset({"2", "4", "9"})))
    assert kept.column("text").to_pylist() == ["b", "d"]
    assert keep_rows(batch, "id", id_set(None)).num_rows == 4
    assert keep_rows(batch, "id", id_set(frozenset())).num_rows == 0


@pytest.mark.parametrize(
    ("rows_each", "rows", "expected"),
    [
        ((3, 3, 3), 5, [["b0", "b1"], ["b2"]]),
        ((3, 3, 3), 3, [["b0"], ["b1"], ["b2"]]),
        ((1000,), 1000, [["b0"]]),
        ((), 1000, []),
    ],
)
def test_finished_batches_group_into_upserts(
    rows_each: tuple[int, ...], rows: int, expected: list[list[str]]
) -> None:
    finished = [(f"b{i}", n) for i, n in enumerate(rows_each)]
    assert list(groups(finished, rows)) == expected
