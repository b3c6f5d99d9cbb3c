"""Two promotions racing for one alias, and a Prefect server restarted while a run waits
for its approval."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from deployments.promotions import answer
from flows.switch_approved import switch_approved
from indexpair.errors import ValidationFailed
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.pair import PairState
from indexpair.settings import Settings
from tests.conftest import MODEL_NAME
from tests.e2e.conftest import build_name, decide, promotion_params
from tests.faults.conftest import restart_service, wait_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_two_promotions_at_once_one_wins_by_compare_and_swap(
    stack_settings: Settings, milvus: MilvusGateway, demo_versions: dict[str, str], base_alias: str
) -> None:
    live = milvus.alias_target(base_alias)
    versions = [demo_versions["tfidf"], demo_versions["minilm"]]
    with prefect_api.prefect_api(stack_settings):
        runs = [
            prefect_api.start_deployment(stack_settings, promotion_params(v, base_alias))
            for v in versions
        ]
    snaps = [wait_run(stack_settings, run["id"], 600) for run in runs]
    assert [s["state_type"] for s in snaps] == ["PAUSED", "PAUSED"], snaps
    names = [build_name(s, v) for s, v in zip(snaps, versions, strict=True)]
    for name in names:  # both validated against the same live pair
        assert milvus.read_pair(name).baseline == live

    with ThreadPoolExecutor(2) as pool:
        ends = list(
            pool.map(
                lambda s: answer(stack_settings, s["id"], True, "racer", "both approved"), snaps
            )
        )
    states = sorted(e["state_type"] for e in ends)
    assert states == ["COMPLETED", "FAILED"], ends
    winner = next(i for i, e in enumerate(ends) if e["state_type"] == "COMPLETED")
    loser = 1 - winner
    assert "PromotionConflict" in ends[loser]["message"], ends[loser]
    assert "stays approved" in ends[loser]["message"], ends[loser]
    assert milvus.alias_target(base_alias) == names[winner]
    assert milvus.read_pair(names[winner]).state == PairState.LIVE
    # A person approved the loser: it is kept, approved, for `indexpair switch-approved`.
    assert milvus.read_pair(names[loser]).state == PairState.APPROVED
    with MlflowRegistry(stack_settings) as registry:
        assert registry.alias_version(MODEL_NAME, "production") == versions[winner]

    # Switching it later validates it again, against the winner now live.
    with prefect_api.prefect_api(stack_settings):
        try:
            result = switch_approved(collection=names[loser])
        except ValidationFailed as exc:  # worse than the winner: refused, still approved
            assert "stays approved" in str(exc) and names[winner] in str(exc)
            assert milvus.read_pair(names[loser]).state == PairState.APPROVED
            assert milvus.alias_target(base_alias) == names[winner]
        else:
            assert (result.collection, result.previous) == (names[loser], names[winner])
            assert milvus.alias_target(base_alias) == names[loser]
            assert milvus.read_pair(names[loser]).state == PairState.LIVE
            assert milvus.read_pair(names[winner]).state == PairState.PREVIOUS
            with MlflowRegistry(stack_settings) as registry:
                production = registry.alias_version(MODEL_NAME, "production")
            assert production == versions[loser]


def test_prefect_restart_while_suspended_then_approve(
    stack_settings: Settings, milvus: MilvusGateway, demo_versions: dict[str, str]
) -> None:
    # Its own alias: the race above leaves whichever version won live behind e2e_base, and
    # a TF-IDF candidate would fail validation against a live MiniLM pair.
    alias = "fault_prefect_restart"
    with prefect_api.prefect_api(stack_settings):
        run = prefect_api.start_deployment(
            stack_settings, promotion_params(demo_versions["tfidf"], alias)
        )
    snap = wait_run(stack_settings, run["id"], 600)
    assert snap["state_type"] == "PAUSED", snap
    candidate = build_name(snap, demo_versions["tfidf"])

    restart_service(stack_settings, ["prefect", "worker"], down_s=2)

    assert wait_run(stack_settings, snap["id"], 10)["state_type"] == "PAUSED"
    done = decide(stack_settings, snap, approve=True, approver="after-restart")
    assert done["state_type"] == "COMPLETED", done
    assert milvus.alias_target(alias) == candidate
    with MlflowRegistry(stack_settings) as registry:
        tags = registry.version_tags(MODEL_NAME, demo_versions["tfidf"])
    assert tags["indexpair.approved_by"] == "after-restart"
    assert tags["indexpair.collection"] == candidate
