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
    with MilvusGateway(stack_settings) as milvus:
        yield milvus


@pytest.fixture(scope="module")
def base_alias(stack_settings: Settings, demo_versions: dict[str, str]) -> str:
    """An alias with the TF-IDF pair live behind it, promoted through the whole flow."""
    alias = "e2e_base"
    snap = start(stack_settings, promotion_params(demo_versions["tfidf"], alias))
    done = decide(stack_settings, snap, approve=True)
    assert done["state_type"] == "COMPLETED", done
    return alias


TRIGGER_ALIAS = "trigger_e2e"


@pytest.fixture(scope="session")
def trigger_defaults(stack_settings: Settings) -> Iterator[dict[str, Any]]:
    """The promote deployment's default parameters set to the small demo set.

    Triggers pass only the model name and version; the deployment's defaults give the
    rest, as in production. Restored afterwards.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    from indexpair.gateways import prefect as prefect_api

    small = promotion_params("0", TRIGGER_ALIAS, approval_timeout_s=900)
    small = {k: v for k, v in small.items() if k not in ("model_name", "model_version")}
    with prefect_api.prefect_api(stack_settings), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(stack_settings.deployment_name)
        saved = dict(deployment.parameters)
        client.update_deployment(deployment.id, DeploymentUpdate(parameters={**saved, **small}))
    yield small
    with prefect_api.prefect_api(stack_settings), get_client(sync_client=True) as client:
        client.update_deployment(deployment.id, DeploymentUpdate(parameters=saved))


def new_version_like(settings: Settings, version: str) -> str:
    """Register another version of the demo model with the same artifacts as ``version``.

    Each trigger test gets a version nobody has built yet, without training anything.
    """
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    original = client.get_model_version(MODEL_NAME, version)
    copy = client.create_model_version(
        MODEL_NAME,
        original.source,
        run_id=original.run_id,
        tags={"copy_of": version},
        model_id=original.model_id or str(original.source).removeprefix("models:/"),
    )
    return str(copy.version)


def wait_for(check: Any, timeout_s: float, what: str, poll_s: float = 1.0) -> Any:
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
