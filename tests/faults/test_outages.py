"""A service that is down when a promotion starts: a clear error naming the service's
address, no collection created, production untouched.

The flow runs in this process (a real Prefect flow run on the test stack's server) with
one setting pointed at a closed port, as a worker with a wrong or dead endpoint would.
"""

from __future__ import annotations

from typing import Any

import pytest

from flows.promote import promote
from indexpair.errors import RegistryError, SourceDataError
from indexpair.gateways import prefect as prefect_api
from indexpair.settings import LIBRARY_ENV, Settings
from tests.conftest import DATA_DIR, free_port
from tests.e2e.conftest import SMALL_POLICY
from tests.support.production import assert_unchanged, production_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ALIAS = "faults_outage"


def run_here(settings: Settings, **params: Any) -> None:
    """Run the promote flow in this process against the stack's Prefect server."""
    params.setdefault("source", {"uri": str(DATA_DIR / "products_small.parquet")})
    params.setdefault("golden_queries", str(DATA_DIR / "golden_queries_small.json"))
    with prefect_api.prefect_api(settings):
        promote(alias=ALIAS, validation=SMALL_POLICY, **params)


@pytest.fixture()
def worker_like_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The library settings a worker's flow runs get (MLflow's retries and timeouts)."""
    for key, value in LIBRARY_ENV.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_mlflow_down_at_start(
    stack_settings: Settings, demo_versions: dict[str, str], worker_like_env: pytest.MonkeyPatch
) -> None:
    before = production_snapshot(stack_settings, ALIAS)
    dead = f"http://127.0.0.1:{free_port()}"
    worker_like_env.setenv("MLFLOW_TRACKING_URI", dead)
    with pytest.raises(RegistryError) as caught:
        run_here(stack_settings, model_version=demo_versions["tfidf"])
    assert f"MLflow at {dead} is unreachable" in str(caught.value)
    worker_like_env.undo()
    assert_unchanged(before, production_snapshot(stack_settings, ALIAS))


def test_s3_source_unreachable(
    stack_settings: Settings, demo_versions: dict[str, str], worker_like_env: pytest.MonkeyPatch
) -> None:
    before = production_snapshot(stack_settings, ALIAS)
    endpoint = f"http://127.0.0.1:{free_port()}"
    worker_like_env.setenv("AWS_ENDPOINT_URL", endpoint)
    worker_like_env.setenv("AWS_ACCESS_KEY_ID", "indexpair-test-key")
    worker_like_env.setenv("AWS_SECRET_ACCESS_KEY", "indexpair-test-secret")
    uri = "s3://indexpair-faults/products_small.parquet"
    with pytest.raises(SourceDataError) as caught:
        run_here(stack_settings, model_version=demo_versions["tfidf"], source={"uri": uri})
    message = str(caught.value)
    assert uri in message and f"S3 endpoint {endpoint} is unreachable" in message
    assert "indexpair-test-secret" not in message
    worker_like_env.undo()
    assert_unchanged(before, production_snapshot(stack_settings, ALIAS))
