"""A build hit mid-insert — its process killed, or Milvus restarted — ends with exactly
the source's rows once retried: no gaps, no duplicates, production untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.settings import Settings
from tests.e2e.conftest import build_name, decide
from tests.faults.conftest import (
    collection_ids,
    count_rows,
    kill_flow_run,
    mid_params,
    partly_inserted,
    reschedule,
    restart_service,
    source_ids,
    wait_for,
    wait_run,
    worker_log_size,
)
from tests.support.production import assert_unchanged, production_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
Source = tuple[Path, Path]


def start_mid(settings: Settings, source: Source, version: str, alias: str) -> dict[str, str]:
    with prefect_api.prefect_api(settings):
        return prefect_api.start_deployment(settings, mid_params(source, version, alias))


def assert_exact_rows(milvus: MilvusGateway, name: str, source: Source) -> None:
    """The collection holds every source id once: no gap, no duplicate."""
    expected = source_ids(source[0])
    stored = collection_ids(milvus, name)
    assert len(stored) == len(set(stored)), "duplicate ids in the collection"
    assert sorted(stored) == sorted(expected)
    assert count_rows(milvus, name) == len(expected)
    assert milvus.row_count(name) == len(expected)


def test_killed_build_resumes_with_exact_rows(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    base_alias: str,
    mid_source: Source,
) -> None:
    before = production_snapshot(stack_settings, base_alias)
    total = len(source_ids(mid_source[0]))
    run = start_mid(stack_settings, mid_source, demo_versions["tfidf"], base_alias)
    name = build_name(run, demo_versions["tfidf"])
    partial = wait_for(partly_inserted(milvus, name, total), 600, f"first rows in {name}")
    log_end = worker_log_size(stack_settings)
    assert kill_flow_run(stack_settings, run["id"]) >= 1
    crashed = wait_run(stack_settings, run["id"], 120, paused=False)
    assert crashed["state_type"] in {"CRASHED", "FAILED"}, crashed
    assert 0 < partial < total
    assert milvus.exists(name)  # the half-built candidate waits for its run to resume

    reschedule(stack_settings, run["id"], log_end)  # the same flow run id, so the same build id
    resumed = wait_run(stack_settings, run["id"], 600)
    assert resumed["state_type"] == "PAUSED", resumed
    assert_exact_rows(milvus, name, mid_source)
    now = production_snapshot(stack_settings, base_alias)  # nothing switched yet
    assert (now.alias_target, now.live_rows) == (before.alias_target, before.live_rows)

    done = decide(stack_settings, resumed, approve=False)
    assert done["state_name"] == "Denied", done
    assert not milvus.exists(name)
    assert_unchanged(before, production_snapshot(stack_settings, base_alias))


def test_milvus_restart_mid_insert_ends_with_exact_rows(
    stack_settings: Settings,
    milvus: MilvusGateway,
    demo_versions: dict[str, str],
    base_alias: str,
    mid_source: Source,
) -> None:
    before = production_snapshot(stack_settings, base_alias)
    total = len(source_ids(mid_source[0]))
    run = start_mid(stack_settings, mid_source, demo_versions["tfidf"], base_alias)
    name = build_name(run, demo_versions["tfidf"])
    wait_for(partly_inserted(milvus, name, total), 600, f"first rows in {name}")
    milvus.close()
    restart_service(stack_settings, ["milvus"], down_s=2)
    with MilvusGateway(stack_settings) as milvus:
        snap = wait_run(stack_settings, run["id"], 600)
        if snap["state_type"] != "PAUSED":
            # The build may fail instead of riding the restart out: then cleanly (rejected
            # and dropped, the cause named), and a new run completes.
            assert snap["state_type"] == "FAILED", snap
            assert "Error" in snap["message"] or "Exception" in snap["message"], snap
            assert not milvus.exists(name)
            run = start_mid(stack_settings, mid_source, demo_versions["tfidf"], base_alias)
            name = build_name(run, demo_versions["tfidf"])
            snap = wait_run(stack_settings, run["id"], 600)
            assert snap["state_type"] == "PAUSED", snap
        assert_exact_rows(milvus, name, mid_source)
        done = decide(stack_settings, snap, approve=False)
        assert done["state_name"] == "Denied", done
        assert not milvus.exists(name)
    assert_unchanged(before, production_snapshot(stack_settings, base_alias))
