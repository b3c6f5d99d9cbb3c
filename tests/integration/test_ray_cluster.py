"""A build on an existing Ray cluster (``RAY_ADDRESS``): two nodes started with ``ray start``.

The cluster's processes cannot import indexpair (tests/support/ray_cluster.py hides the
editable install from them), so the build working there shows that the code travelled in
the job's runtime environment.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from indexpair.errors import ConfigError
from indexpair.gateways import ray_cluster
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry
from indexpair.gateways.ray_cluster import RayCluster
from indexpair.settings import Settings
from tasks.embedding import embed_into
from tasks.registry import probe
from tasks.source import SourceSpec, check_source, sample_texts
from tests.conftest import DATA_DIR, MODEL_NAME, free_port
from tests.support.pairs import create_test_pair
from tests.support.ray_cluster import LocalCluster, members, two_node_cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
SMALL = SourceSpec(uri=str(DATA_DIR / "products_small.parquet"))


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LocalCluster]:
    """The two-node cluster; the driver runs from an empty directory (Ray puts the
    driver's working directory on the workers' path, and ours holds the project)."""
    monkeypatch.chdir(tmp_path)
    with two_node_cluster() as running:
        try:
            yield running
        finally:
            ray_cluster.disconnect()
    assert members(running) == [], "cluster processes left running"


def test_cluster_processes_cannot_import_the_project(cluster: LocalCluster) -> None:
    """The premise of the build test: without the runtime env there is no indexpair."""
    done = subprocess.run(
        [sys.executable, "-c", "import indexpair"],
        env=cluster.env,
        cwd=cluster.temp_dir,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "No module named 'indexpair'" in done.stderr


def test_build_runs_on_an_existing_cluster(
    stack_settings: Settings,
    demo_versions: dict[str, str],
    cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build's driver runs in a fresh process, as a flow run does under the Prefect
    worker, without what an earlier local Ray of this test process left in its
    environment: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (ours, read once at import: the
    driver would advertise 127.0.0.1, outside this cluster) and ``RAY_AUTH_MODE=token``
    (Ray's, where ``~/.ray/auth_token`` exists; this cluster runs without). With them,
    the cluster destroyed the driver's actors as soon as it created them."""
    settings = stack_settings.model_copy(update={"ray_address": cluster.address, "embed_actors": 2})
    for leftover in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE"):
        monkeypatch.delenv(leftover, raising=False)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as driver:
        facts = driver.submit(build_on_cluster, settings, demo_versions["tfidf"]).result()

    assert facts["inserted"] == facts["source_rows"] == facts["finalized"]
    assert facts["stored_ids"] == facts["source_ids"]
    assert facts["dims"] == [facts["model_dim"]]
    # It joined the cluster (two live nodes, ours), it did not start a Ray of its own.
    assert sorted(facts["nodes"].values()) == ["127.0.0.2", "127.0.0.3"]
    assert facts["gcs_address"] == cluster.address
    # The embedding actors ran on both nodes (the pool spreads them).
    assert facts["actor_nodes"] == sorted(facts["nodes"]), facts["actors"]
    # On each node the code came from the runtime env, with its env_vars.
    for path, offline in facts["origins"]:
        assert "runtime_resources" in path and path.startswith(str(cluster.temp_dir)), path
        assert offline == "1"
    print(f"cluster start {cluster.start_s:.1f}s, build {facts['build_s']:.1f}s")


def build_on_cluster(settings: Settings, version: str) -> dict[str, Any]:
    """Build the small catalog on ``settings.ray_address``; what the test checks."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    with MlflowRegistry(settings) as registry:
        ref = registry.resolve_version(MODEL_NAME, version)
    model = probe(settings, ref, sample_texts(settings, SMALL))
    summary, ids = check_source(settings, SMALL)
    name = "it_ray_cluster_build_v1"
    with RayCluster(settings), MilvusGateway(settings) as milvus:
        try:
            create_test_pair(milvus, name, model, summary, SMALL.uri, build_id="test-cluster")
            started = time.monotonic()
            inserted = embed_into(settings, SMALL, model, name, lambda done: None)
            build_s = time.monotonic() - started
            finalized = milvus.finalize(name)
            stored = milvus.fetch(name, sorted(ids))
            nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
            actors = list(ray._private.state.actors().values())  # the GCS actor table
            embedders = [a for a in actors if a["ActorClassName"] == "BatchEmbedder"]

            @ray.remote(num_cpus=0)
            def origin() -> tuple[str, str | None]:
                import os

                import indexpair

                return indexpair.__file__, os.environ.get("HF_HUB_OFFLINE")

            origins = [
                ray.get(
                    origin.options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                    ).remote()
                )
                for node in nodes
            ]
            return {
                "inserted": inserted,
                "source_rows": summary.rows,
                "finalized": finalized,
                "stored_ids": sorted(stored),
                "source_ids": sorted(ids),
                "dims": sorted({len(r["vector"]) for r in stored.values()}),
                "model_dim": model.dim,
                "nodes": nodes,
                "gcs_address": ray.get_runtime_context().gcs_address,
                "actors": [a["ActorClassName"] for a in actors],
                "actor_nodes": sorted({a["Address"]["NodeID"] for a in embedders}),
                "origins": origins,
                "build_s": build_s,
            }
        finally:
            milvus.drop(name)


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_cluster_is_a_config_error_in_seconds(scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{free_port()}"
    settings = Settings(RAY_ADDRESS=address, ray_connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"RAY_ADDRESS='{address}': no Ray cluster answers"):
        ray_cluster.connect(settings)
    assert time.monotonic() - started < 5


def test_malformed_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RAY_ADDRESS='ray-head' is not host:port"):
        ray_cluster.connect(Settings(RAY_ADDRESS="ray-head"))
