"""The crash-point matrix of the switch, rollback, reconcile and garbage collection.

Each scenario has an alias and a registered model of its own. A step runs in a process
of its own (``tests/support/crash_runner.py``) with one crash point armed: the process
SIGKILLs itself exactly there, holding whatever it held (the alias lock included). Then
the documented recovery runs here (retry the switch, or `reconcile --apply`, or GC
again) and the outcome is checked: the alias target, exactly one ``live`` per alias, the
right ``previous``/``rolled_back``, the MLflow production alias, no orphaned collection,
no production row lost.

The crashes run one after another; the recoveries run side by side, because a process
killed inside the alias lock holds it until Prefect's lease expires (≤ 75 s), and each
scenario waits on its own alias's lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from indexpair import faults
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.pair import PairMetadata, PairState
from indexpair.reconcile import reconcile
from indexpair.roles import group_of
from indexpair.settings import Settings
from tasks.rollback import prepare
from tests.conftest import MODEL_NAME, PROJECT_DIR
from tests.support.crash_runner import promote_step

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ROWS = 5
S = PairState


@dataclass
class Scenario:
    """One crash point: how to set it up, crash it, recover, and what must hold after."""

    point: str
    step: str
    alias: str = ""
    model: str = ""
    names: dict[str, str] = field(default_factory=dict)
    crashed: int | None = None
    error: str = ""


def _ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds")


def plant(
    gateway: MilvusGateway, name: str, model: str, version: str, alias: str, state: S, **kw: str
) -> None:
    """A managed collection with ``ROWS`` real rows, loaded, and the given records."""
    meta = PairMetadata(
        model_name=model,
        model_version=version,
        model_uri=f"models:/{model}/{version}",
        dim=4,
        build_id=name.rsplit("_", 1)[1],
        source_uri="crash-matrix",
        source_fingerprint="sha256:crash",
        source_rows=ROWS,
        state=state,
        alias=alias,
        created_at=kw.pop("created_at", _ago(1)),
        **kw,
    )
    gateway.create_pair_collection(name, meta)
    ids = [f"{name}-{i}" for i in range(ROWS)]
    vectors = np.eye(ROWS, 4, dtype=np.float32) + 0.1
    gateway.insert(name, ids, ["h"] * ROWS, vectors)
    gateway.finalize(name)


def register(settings: Settings, model: str, source_version: str, versions: int = 4) -> None:
    """Model ``model`` in MLflow with versions 1 to 4 (the demo model's artifacts)."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    original = client.get_model_version(MODEL_NAME, source_version)
    client.create_registered_model(model)
    for _ in range(versions):
        client.create_model_version(
            model,
            original.source,
            run_id=original.run_id,
            model_id=original.model_id or str(original.source).removeprefix("models:/"),
        )


def crash(settings: Settings, scenario: Scenario, args: list[str]) -> int:
    """Run one step in its own process with the scenario's crash point armed."""
    armed = Path(os.environ[faults.ENV])
    faults.arm(armed, scenario.point)
    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.crash_runner", scenario.step, *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    left = armed.read_text(encoding="utf-8").split() if armed.exists() else []
    armed.unlink(missing_ok=True)
    assert scenario.point not in left, f"{scenario.point} never reached: {done.stderr[-2000:]}"
    assert done.returncode == -9, f"{scenario.point}: exit {done.returncode}\n{done.stderr[-2000:]}"
    return done.returncode


def roles(gateway: MilvusGateway, alias: str) -> dict[str, str]:
    """State of every pair of one alias's group."""
    return {n: p.state.value for n, p in gateway.list_pairs() if group_of(p) == alias}


# -- the scenarios -----------------------------------------------------------------------
SWITCH_POINTS = [
    "switch.approved",
    "switch.alias_moved",
    "switch.live_marked",
    "switch.done",
    "registry.synced",
]
ROLLBACK_POINTS = ["switch.alias_moved", "switch.done"]


def setup_promote(settings: Settings, gateway: MilvusGateway, s: Scenario, tag: str) -> list[str]:
    old, new = f"cm_{tag}_v1_aaaa{tag}", f"cm_{tag}_v2_bbbb{tag}"
    plant(gateway, old, s.model, "1", s.alias, S.LIVE, live_since=_ago(1))
    plant(gateway, new, s.model, "2", s.alias, S.APPROVED, baseline=old)
    gateway.point_alias(s.alias, old)
    with MlflowRegistry(settings) as registry:
        registry.set_alias(ModelVersionRef(name=s.model, version="1", uri=""), "production")
    s.names = {"old": old, "new": new, "live": new, "retired": old, "retired_as": "previous"}
    return [s.alias, new, old]


def setup_rollback(settings: Settings, gateway: MilvusGateway, s: Scenario, tag: str) -> list[str]:
    back, bad = f"cm_{tag}_v1_aaaa{tag}", f"cm_{tag}_v2_bbbb{tag}"
    plant(gateway, back, s.model, "1", s.alias, S.PREVIOUS, previous_since=_ago(0.5))
    plant(gateway, bad, s.model, "2", s.alias, S.LIVE, replaces=back, live_since=_ago(0.5))
    gateway.point_alias(s.alias, bad)
    with MlflowRegistry(settings) as registry:
        registry.set_alias(ModelVersionRef(name=s.model, version="2", uri=""), "production")
    s.names = {"live": back, "retired": bad, "retired_as": "rolled_back"}
    return [s.alias]


def setup_reconcile(settings: Settings, gateway: MilvusGateway, s: Scenario, tag: str) -> list[str]:
    # The alias was moved by a switch that died before writing any record.
    old, new = f"cm_{tag}_v1_aaaa{tag}", f"cm_{tag}_v2_bbbb{tag}"
    plant(gateway, old, s.model, "1", s.alias, S.LIVE, live_since=_ago(1))
    plant(gateway, new, s.model, "2", s.alias, S.APPROVED, replaces=old, switch_kind="promote")
    gateway.point_alias(s.alias, new)
    with MlflowRegistry(settings) as registry:
        registry.set_alias(ModelVersionRef(name=s.model, version="1", uri=""), "production")
    s.names = {"live": new, "retired": old, "retired_as": "previous"}
    return [s.alias]


def setup_gc(settings: Settings, gateway: MilvusGateway, s: Scenario, tag: str) -> list[str]:
    live, keep = f"cm_{tag}_v4_dddd{tag}", f"cm_{tag}_v3_cccc{tag}"
    plant(gateway, live, s.model, "4", s.alias, S.LIVE, live_since=_ago(1))
    plant(
        gateway, keep, s.model, "3", s.alias, S.PREVIOUS, previous_since=_ago(2), created_at=_ago(9)
    )
    for version, letter, age in (("2", "b", 3), ("1", "a", 4)):
        name = f"cm_{tag}_v{version}_{letter * 4}{tag}"
        plant(
            gateway,
            name,
            s.model,
            version,
            s.alias,
            S.PREVIOUS,
            previous_since=_ago(age),
            created_at=_ago(9),
        )
    gateway.point_alias(s.alias, live)
    with MlflowRegistry(settings) as registry:
        registry.set_alias(ModelVersionRef(name=s.model, version="4", uri=""), "production")
    s.names = {"live": live, "kept": keep}
    return [f"cm_{tag}_"]


SETUPS: dict[str, Callable[[Settings, MilvusGateway, Scenario, str], list[str]]] = {
    "promote": setup_promote,
    "rollback": setup_rollback,
    "reconcile": setup_reconcile,
    "gc": setup_gc,
}
MATRIX = (
    [Scenario(p, "promote") for p in SWITCH_POINTS]
    + [Scenario(p, "rollback") for p in ROLLBACK_POINTS]
    + [Scenario("reconcile.fixed", "reconcile"), Scenario("gc.planned", "gc")]
    + [Scenario("gc.dropped", "gc")]
)


def recover(settings: Settings, s: Scenario, args: list[str]) -> None:
    """The documented way back after a crash at ``s.point``."""
    from tests.support.crash_runner import run

    with prefect_api.prefect_api(settings):
        if s.step == "promote":  # the flow run is retried: its switch task runs again
            promote_step(settings, *args)
        elif s.step == "gc":
            run("gc", args)
        else:  # rollback, reconcile: `indexpair reconcile --alias A --apply`
            reconcile(settings, s.alias, apply=True)


@pytest.fixture(scope="module")
def matrix(stack_settings: Settings, demo_versions: dict[str, str]) -> dict[str, Scenario]:
    """Every scenario set up, crashed at its point, then recovered (side by side)."""
    done: dict[str, Scenario] = {}
    recoveries: list[tuple[Scenario, list[str]]] = []
    with MilvusGateway(stack_settings) as milvus:
        for i, s in enumerate(MATRIX):
            tag = f"{s.step[0]}{i}"
            s.alias, s.model = f"crash_{tag}", f"crash-model-{tag}"
            register(stack_settings, s.model, demo_versions["tfidf"], 4 if s.step == "gc" else 2)
            args = SETUPS[s.step](stack_settings, milvus, s, tag)
            s.crashed = crash(stack_settings, s, args)
            recoveries.append((s, args))
            done[f"{s.step}@{s.point}"] = s
    with ThreadPoolExecutor(len(recoveries)) as pool:
        futures = [(s, pool.submit(recover, stack_settings, s, a)) for s, a in recoveries]
        for s, future in futures:
            try:
                future.result(timeout=400)
            except Exception as exc:  # reported by the scenario's own test
                s.error = f"{type(exc).__name__}: {exc}"
    return done


def check_roles(settings: Settings, s: Scenario) -> None:
    """The alias truth and every record derived from it agree after recovery."""
    with MilvusGateway(settings) as milvus:
        assert milvus.alias_target(s.alias) == s.names["live"]
        states = roles(milvus, s.alias)
        assert list(states.values()).count("live") == 1, states
        assert states[s.names["live"]] == "live", states
        assert states[s.names["retired"]] == s.names["retired_as"], states
        assert set(states) == {s.names["live"], s.names["retired"]}, "orphan or lost collection"
        assert milvus.row_count(s.names["live"]) == ROWS
        version = milvus.read_pair(s.names["live"]).model_version
    with MlflowRegistry(settings) as registry:
        assert registry.alias_version(s.model, "production") == version
        tags = registry.version_tags(s.model, version)
    assert tags.get("indexpair.status") == "live", tags
    with prefect_api.prefect_api(settings):
        assert reconcile(settings, s.alias) == []  # nothing left to repair


@pytest.mark.parametrize("key", [f"{s.step}@{s.point}" for s in MATRIX])
def test_crash_then_recover_converges(
    stack_settings: Settings, matrix: dict[str, Scenario], key: str
) -> None:
    s = matrix[key]
    assert s.crashed == -9
    assert not s.error, s.error
    if s.step == "gc":
        with MilvusGateway(stack_settings) as milvus:
            mine = {n for n in milvus.collections() if n.startswith(f"cm_{s.alias[6:]}_")}
            assert mine == {s.names["live"], s.names["kept"]}
            assert milvus.alias_target(s.alias) == s.names["live"]
            assert milvus.row_count(s.names["live"]) == ROWS
        return
    check_roles(stack_settings, s)
    if s.step == "rollback":  # rolling back again never restores the pair rolled back from
        from indexpair.errors import RollbackRefused

        with pytest.raises(RollbackRefused):
            prepare(stack_settings, s.alias)


def test_every_point_of_the_matrix_is_a_known_point() -> None:
    assert {s.point for s in MATRIX} <= set(faults.POINTS)
    assert len(MATRIX) >= 10


def test_mlflow_down_after_the_switch_is_repaired_by_reconcile(
    stack_settings: Settings, demo_versions: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexpair.settings import LIBRARY_ENV
    from tests.conftest import free_port

    for key, value in LIBRARY_ENV.items():  # MLflow's retries as a worker's flow runs get
        monkeypatch.setenv(key, value)

    s = Scenario("none", "promote", alias="crash_mlflow_down", model="crash-model-mlflow-down")
    register(stack_settings, s.model, demo_versions["tfidf"], 2)
    with MilvusGateway(stack_settings) as milvus:
        alias, new, old = setup_promote(stack_settings, milvus, s, "md")
    down = stack_settings.model_copy(
        update={"mlflow_tracking_uri": f"http://127.0.0.1:{free_port()}"}
    )
    with prefect_api.prefect_api(stack_settings):
        warning = promote_step(down, alias, new, old)
    assert warning, "MLflow was down: the switch must report it"
    with MilvusGateway(stack_settings) as milvus:  # the promotion happened all the same
        assert milvus.alias_target(alias) == new
        assert milvus.read_pair(new).state == PairState.LIVE
    with MlflowRegistry(stack_settings) as registry:
        assert registry.alias_version(s.model, "production") == "1"
    with prefect_api.prefect_api(stack_settings):
        planned = reconcile(stack_settings, alias)
        assert {f.where for f in planned} == {"mlflow"}, planned
        reconcile(stack_settings, alias, apply=True)
    check_roles(stack_settings, s)
