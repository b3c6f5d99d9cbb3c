"""Helpers to drive the promote deployment through the real Prefect server and worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deployments.promotions import answer, promotion_parameters, start_promotion
from indexpair.gateways.milvus import MilvusGateway
from indexpair.pair import collection_name
from indexpair.settings import Settings
from tests.conftest import DATA_DIR, MODEL_NAME

# Thresholds the small demo set is validated with (measured: see demo/evaluate.py).
SMALL_POLICY = {
    "k": 10,
    "min_recall_at_k": 0.4,
    "min_mrr": 0.4,
    "min_ndcg_at_k": 0.35,
    "max_regression": 0.05,
}


def promotion_params(version: str, alias: str, **extra: Any) -> dict[str, Any]:
    """Parameters of a promote run on the small demo catalog."""
    extra.setdefault("validation", SMALL_POLICY)
    params = promotion_parameters(
        MODEL_NAME,
        str(DATA_DIR / "products_small.parquet"),
        str(DATA_DIR / "golden_queries_small.json"),
        version,
        alias,
    )
    params.update(extra)
    return params


def start(settings: Settings, params: dict[str, Any], wait_s: float = 600) -> dict[str, Any]:
    """Start a promote run; return its state once it awaits approval or ended."""
    return start_promotion(settings, params, wait_s)


def decide(
    settings: Settings, snap: dict[str, Any], approve: bool, approver: str = "pytest"
) -> dict[str, Any]:
    """Answer the approval form and wait for the run to end."""
    assert snap["state_type"] == "PAUSED", snap
    return answer(settings, snap["id"], approve, approver, "from the e2e tests")


def build_name(snap: dict[str, Any], version: str) -> str:
    """The collection a run builds (the build id is derived from the flow run id)."""
    return collection_name(MODEL_NAME, version, snap["id"].replace("-", "")[:12])


@pytest.fixture()
def milvus(stack_settings: Settings) -> Iterator[MilvusGateway]:
    """A Milvus gateway on the test stack."""
    gateway = MilvusGateway(stack_settings)
    yield gateway
    gateway.close()


@pytest.fixture(scope="module")
def base_alias(stack_settings: Settings, demo_versions: dict[str, str]) -> str:
    """An alias with the TF-IDF pair live behind it, promoted through the whole flow."""
    alias = "e2e_base"
    snap = start(stack_settings, promotion_params(demo_versions["tfidf"], alias))
    done = decide(stack_settings, snap, approve=True)
    assert done["state_type"] == "COMPLETED", done
    return alias
