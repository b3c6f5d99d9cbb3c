"""The runtime environment the build's Ray job gets: code shipped only to a cluster."""

from __future__ import annotations

import pytest

import indexpair
from indexpair.build import BatchEmbedder, BatchWriter
from indexpair.gateways.ray_cluster import RAY_ENV, runtime_env
from indexpair.settings import Settings


def test_a_local_ray_gets_only_the_env_vars() -> None:
    assert runtime_env(Settings(RAY_ADDRESS=None)) == {"env_vars": RAY_ENV}


def test_a_cluster_gets_the_library_and_the_env_vars() -> None:
    env = runtime_env(Settings(RAY_ADDRESS="10.0.0.5:6379"))
    assert env["py_modules"] == [indexpair]
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_shipping_turns_off_where_the_cluster_has_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INDEXPAIR_RAY_SHIP_CODE", "false")
    assert runtime_env(Settings(RAY_ADDRESS="10.0.0.5:6379")) == {"env_vars": RAY_ENV}


def test_what_ray_workers_run_lives_in_the_shipped_package() -> None:
    for actor in (BatchEmbedder, BatchWriter):
        assert actor.__module__.startswith("indexpair."), actor
