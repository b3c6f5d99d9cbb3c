"""Table-driven tests of how a build spreads over Ray (actors, threads, GPUs, writers)."""

from __future__ import annotations

import re

import pytest

from indexpair.build.layout import plan
from indexpair.errors import ConfigError
from indexpair.settings import Settings


def settings(**values: object) -> Settings:
    """Settings with only the given build values changed."""
    return Settings().model_copy(update=values)


@pytest.mark.parametrize(
    ("values", "cpus", "gpus", "backend", "expected", "rows"),
    [
        # A local Ray on 2 cores has 3 logical CPUs: one actor per core and a slot for
        # the writers (the driver reads the source).
        ({}, 3, 0, "lite", (2, 1, 1.0, 0.0, 1), None),
        ({}, 17, 0, "lite", (16, 1, 1.0, 0.0, 1), None),
        ({}, 2, 0, "lite", (1, 1, 1.0, 0.0, 1), None),
        ({}, 1, 0, "lite", (1, 1, 1.0, 0.0, 1), None),
        # A Milvus server takes several writers; Milvus Lite one.
        ({}, 3, 0, "standalone", (2, 1, 1.0, 0.0, 4), None),
        ({"insert_writers": 2}, 3, 0, "standalone", (2, 1, 1.0, 0.0, 2), None),
        ({"insert_writers": 3}, 3, 0, "lite", (2, 1, 1.0, 0.0, 3), None),
        # Actors given: the cores are shared out among them.
        ({"embed_actors": 1}, 3, 0, "lite", (1, 2, 2.0, 0.0, 1), None),
        ({"embed_actors": 3}, 13, 0, "lite", (3, 4, 4.0, 0.0, 1), None),
        ({"embed_threads": 2}, 9, 0, "lite", (4, 2, 2.0, 0.0, 1), None),
        # A small build: fewer actors (one per 5,000 rows), the cores shared out.
        ({}, 3, 0, "lite", (2, 1, 1.0, 0.0, 1), 10_000),
        ({}, 3, 0, "lite", (1, 2, 2.0, 0.0, 1), 9_999),
        ({}, 3, 0, "lite", (1, 2, 2.0, 0.0, 1), 800),
        ({}, 17, 0, "lite", (3, 5, 5.0, 0.0, 1), 15_000),
        ({"embed_actors": 2}, 3, 0, "lite", (2, 1, 1.0, 0.0, 1), 800),
        # GPUs: one actor per GPU (or per share of one), one thread each.
        ({"embed_num_gpus": 1.0}, 17, 4, "lite", (4, 1, 1.0, 1.0, 1), None),
        ({"embed_num_gpus": 0.5}, 17, 1, "standalone", (2, 1, 1.0, 0.5, 4), None),
        ({"embed_num_gpus": 1.0, "embed_actors": 1}, 17, 8, "lite", (1, 1, 1.0, 1.0, 1), None),
    ],
)
def test_layout(
    values: dict[str, object],
    cpus: float,
    gpus: float,
    backend: str,
    expected: tuple[int, int, float, float, int],
    rows: int | None,
) -> None:
    layout = plan(settings(**values), cpus, gpus, backend, rows)
    got = (
        layout.actors,
        layout.threads,
        layout.cpus_per_actor,
        layout.gpus_per_actor,
        layout.writers,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("values", "cpus", "gpus", "message"),
    [
        ({"embed_actors": 3}, 2, 0, "INDEXPAIR_EMBED_ACTORS=3 × INDEXPAIR_EMBED_THREADS=1"),
        ({"embed_actors": 2}, 1.5, 0, "needs 2 CPUs"),
        ({"embed_actors": 2, "insert_writers": 4}, 2.3, 0, "needs 2.4 CPUs"),
        ({"embed_threads": 4, "embed_actors": 1}, 3, 0, "needs 4 CPUs"),
        ({"embed_num_gpus": 1.0}, 3, 0, "INDEXPAIR_EMBED_NUM_GPUS=1 × 1 actor(s) needs 1 GPUs"),
        ({"embed_num_gpus": 1.0, "embed_actors": 2}, 9, 1, "the Ray cluster has 1"),
    ],
)
def test_a_layout_the_cluster_cannot_hold_is_refused(
    values: dict[str, object], cpus: float, gpus: float, message: str
) -> None:
    """Ray would wait for ever for resources that are not there; say so instead."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan(settings(**values), cpus, gpus, "lite")


def test_describe_names_the_layout() -> None:
    layout = plan(settings(), 3, 0, "standalone")
    assert layout.describe() == (
        "2 embedding actor(s) × 1 thread(s) (CPU), forward batch 16, 4 writer(s)"
    )


@pytest.mark.parametrize(
    ("values", "gpus", "expected"),
    [
        ({}, 0, 16),  # the CPU: small batches pad less
        ({"embed_num_gpus": 1.0}, 1, 256),  # a GPU: big ones
        ({"embed_model_batch_size": 48}, 0, 48),
        ({"embed_model_batch_size": 48, "embed_num_gpus": 1.0}, 1, 48),
    ],
)
def test_forward_batch_follows_the_device_unless_set(
    values: dict[str, object], gpus: float, expected: int
) -> None:
    assert plan(settings(**values), 17, gpus, "lite").forward_batch == expected
