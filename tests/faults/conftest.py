"""Helpers to inject faults into a running promotion: find and kill its process, count
the rows it has written so far, restart one service of the stack."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from deployments.promotions import promotion_parameters
from indexpair import stack
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.settings import Settings
from indexpair.stack import procs
from tests.conftest import DATA_DIR, MODEL_NAME, PROJECT_DIR
from tests.e2e.conftest import base_alias, milvus  # noqa: F401 - fixtures re-used here

MID_ROWS = 6000  # six insert batches of 1,000 (with 3,000 Ray delivered all at once here)
# This test is about rows, not quality: no floors, any regression allowed.
ANY_QUALITY = {"min_recall_at_k": 0, "min_mrr": 0, "min_ndcg_at_k": 0, "max_regression": 1}


def write_mid_source(folder: Path) -> tuple[Path, Path]:
    """The first `MID_ROWS` products and the golden queries that fit them."""
    table = pq.read_table(DATA_DIR / "products.parquet").slice(0, MID_ROWS)
    source = folder / "products_mid.parquet"
    pq.write_table(table, source)
    ids = {str(i) for i in table.column("id").to_pylist()}
    golden = []
    for entry in json.loads((DATA_DIR / "golden_queries.json").read_text(encoding="utf-8")):
        relevant = [i for i in entry["relevant_ids"] if i in ids]
        if relevant:
            golden.append({**entry, "relevant_ids": relevant})
    golden_path = folder / "golden_mid.json"
    golden_path.write_text(json.dumps(golden), encoding="utf-8")
    return source, golden_path


@pytest.fixture(scope="session")
def mid_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The `MID_ROWS`-row source and its golden queries, readable by the worker."""
    return write_mid_source(tmp_path_factory.mktemp("mid-source"))


def mid_params(source: tuple[Path, Path], version: str, alias: str) -> dict[str, Any]:
    """A promotion over the `MID_ROWS`-row source."""
    return promotion_parameters(
        MODEL_NAME, str(source[0]), str(source[1]), version, alias, validation=ANY_QUALITY
    )


def source_ids(path: Path) -> list[str]:
    """Every id of a Parquet source, in order."""
    return [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]


def count_rows(gateway: MilvusGateway, name: str) -> int:
    """Rows written so far (flushed or not): a strong-consistency count(*)."""
    rows = gateway.client.query(
        name, filter="", output_fields=["count(*)"], consistency_level="Strong"
    )
    return int(rows[0]["count(*)"])


def collection_ids(gateway: MilvusGateway, name: str) -> list[str]:
    """Every id stored in a collection, duplicates kept."""
    return [str(row["id"]) for batch in gateway.iter_rows(name) for row in batch]


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def partly_inserted(gateway: MilvusGateway, name: str, total: int) -> Callable[[], int]:
    """A check that returns the row count once some, but not all, rows are in."""

    def check() -> int:
        try:
            if not gateway.exists(name):
                return 0
            rows = count_rows(gateway, name)
        except Exception:  # the collection is being created or loaded right now
            return 0
        assert rows < total, f"{name} was filled ({rows} rows) before the fault could hit"
        return rows

    return check


def flow_run_processes(settings: Settings, flow_run_id: str) -> dict[int, int]:
    """The process the worker started for one flow run, and all its descendants (Ray).

    Only descendants of our own worker whose environment names this flow run are taken,
    so no other process on the machine is ever touched.
    """
    (worker,) = stack.status(settings, ["worker"])
    assert worker.pid is not None, "the stack's worker is not running"
    found: dict[int, int] = {}
    for pid, ticks in procs.descendants(worker.pid).items():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environ and any(
            "prefect.engine" in arg for arg in procs.cmdline(pid)
        ):
            found[pid] = ticks
            found.update(procs.descendants(pid))
    assert found, f"no process of flow run {flow_run_id} under worker {worker.pid}"
    return found


def kill_flow_run(settings: Settings, flow_run_id: str) -> int:
    """SIGKILL a flow run's process tree (as a node loss would); return how many died."""
    victims = flow_run_processes(settings, flow_run_id)
    for pid, ticks in victims.items():
        if procs.start_ticks(pid) == ticks:  # never a pid reused meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return len(victims)


def restart_service(settings: Settings, names: list[str], down_s: float = 0.0) -> None:
    """Stop the named services of the test stack (ours, by pid file), then start them."""
    for status in stack.status(settings, names):
        assert status.pid is not None, f"{status.name} is not running"
        procs.terminate(status.pid, 15)
        (settings.state_dir / "pids" / f"{status.name}.pid").unlink(missing_ok=True)
    time.sleep(down_s)
    stack.up(settings, PROJECT_DIR, services=names)


def wait_run(settings: Settings, flow_run_id: str, timeout_s: float, paused: bool = True) -> Any:
    """The run's state once it is paused (if asked) or final."""
    with prefect_api.prefect_api(settings):
        return prefect_api.wait(settings, flow_run_id, timeout_s, until_paused=paused)


def worker_log_size(settings: Settings) -> int:
    """Where the worker's log ends now (to read only what it writes after a fault)."""
    return (settings.state_dir / "logs" / "worker.log").stat().st_size


def worker_saw_exit(settings: Settings, flow_run_id: str, since: int) -> bool:
    """Whether the worker itself has handled the exit of the run's process.

    The flow-run process's runner reports the crash first; the worker proposes it again
    seconds later ("Reported flow run ... as crashed", or only its resolution hint when
    the server turned the repeat down). Rescheduling before that lets the late report
    crash the new attempt.
    """
    with (settings.state_dir / "logs" / "worker.log").open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return any(
        "prefect.flow_runs.worker" in line
        and (f"Reported flow run '{flow_run_id}'" in line or "Check whether the flow" in line)
        for line in text.splitlines()
    )


def reschedule(settings: Settings, flow_run_id: str, since: int) -> None:
    """Put a crashed run back in the queue, as `prefect flow-run retry` does: same id."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    wait_for(lambda: worker_saw_exit(settings, flow_run_id, since), 120, "the worker's report")
    with prefect_api.prefect_api(settings), get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Scheduled(), force=True)
