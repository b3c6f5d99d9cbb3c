"""Gateway to Ray: connect to the cluster in ``RAY_ADDRESS`` or start a local one.

On an existing cluster the project's library (``indexpair``, which holds everything a
Ray worker runs: ``indexpair.build``) travels to the workers in the job's runtime
environment (``py_modules``), unless ``INDEXPAIR_RAY_SHIP_CODE=false`` says the cluster
has indexpair installed. Third-party packages (torch, sentence-transformers,
mlflow, pymilvus, ...) must already be installed in the cluster's Python.

Ray's connection is process-global state, not an object: ``ray.init`` joins (or starts)
one cluster per process and ``ray.shutdown`` leaves it for everyone in the process.
:class:`RayCluster` is a context over that one connection (``with RayCluster(settings):``
connects, or reuses a connection already made; leaving shuts it down, a local Ray this
process started included), not a client of its own: two nested contexts share the
connection and the inner one's exit ends it for the outer. :func:`connect` stays for
code that runs inside such a context or manages the lifetime itself.
"""

from __future__ import annotations

import logging
import os
import socket
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from indexpair.errors import ConfigError
from indexpair.settings import Settings

log = logging.getLogger(__name__)
WRITER_SLOTS = 1
RAY_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# Addresses that make Ray look for a cluster on this machine itself; nothing to probe.
LOOKUP_ADDRESSES = {"auto", "local"}


def shipped_modules() -> list[ModuleType]:
    """The project's packages that Ray workers import: only ``indexpair``, where the
    embedding and writer actors live (``indexpair.build``) and the classes of the models
    they unpickle."""
    import indexpair

    return [indexpair]


def runtime_env(settings: Settings) -> dict[str, Any]:
    """The job's runtime environment: offline model loading, and on an existing cluster
    (``RAY_ADDRESS``) the project's code unless the cluster has it installed."""
    env: dict[str, Any] = {"env_vars": dict(RAY_ENV)}
    if settings.ray_address and settings.ray_ship_code:
        env["py_modules"] = shipped_modules()
    return env


def probe(address: str, timeout_s: float) -> None:
    """Fail fast when nothing listens at a Ray address (``host:port`` or ``ray://host:port``).

    ``ray.init`` retries a dead GCS address for many minutes before it gives up.

    Raises:
        ConfigError: the address is malformed or nothing answers there within ``timeout_s``.
    """
    if address in LOOKUP_ADDRESSES:
        return
    parsed = urlparse(address if "://" in address else f"//{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError as exc:
        raise ConfigError(f"RAY_ADDRESS={address!r} is not host:port ({exc})") from None
    if not host or port is None:
        raise ConfigError(f"RAY_ADDRESS={address!r} is not host:port or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"RAY_ADDRESS={address!r}: no Ray cluster answers at {host}:{port} "
            f"within {timeout_s:g}s ({exc})"
        ) from None


def connect(settings: Settings) -> None:
    """Connect to ``RAY_ADDRESS`` or start a local Ray, quietly.

    Raises:
        ConfigError: ``RAY_ADDRESS`` is set and no Ray cluster can be reached there.
    """
    address = settings.ray_address
    if not address:
        # Ray's own switch for single-machine use: the node advertises 127.0.0.1, so a local
        # Ray never talks over a non-loopback interface. Read when ray is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "runtime_env": runtime_env(settings),
    }
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        probe(address, settings.ray_connect_timeout_s)
        try:  # an address given: ray.init joins that cluster, it never starts one
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise ConfigError(
                f"RAY_ADDRESS={address!r}: cannot join the Ray cluster ({exc})"
            ) from exc
        log.info("joined the Ray cluster at %s", address)
    else:  # a local Ray: loopback only, and a small object store (batches are streamed)
        _start_local(ray, kwargs)


def local_cpus() -> int:
    """Logical CPUs a local Ray gets: the cores plus one, shared by the insert writers on
    a Milvus server (they take little CPU), beside one embedding actor per core
    (indexpair/build/layout.py)."""
    return (os.cpu_count() or 1) + WRITER_SLOTS


def _start_local(ray: Any, kwargs: dict[str, Any]) -> None:
    kwargs["num_cpus"] = local_cpus()
    # Ray starts workers at nice 15; the embedding actors are the build's main work and
    # would lose the CPU to every other process on the machine (measured).
    os.environ.setdefault("RAY_worker_niceness", "0")
    for attempt in (1, 2):
        try:
            ray.init(object_store_memory=512 * 1024 * 1024, **kwargs)
            return
        except Exception as exc:  # a local raylet that fails to start once is retried
            if attempt == 2:
                raise
            log.warning("local Ray did not start (%s); retrying once", exc)
            ray.shutdown()


def disconnect() -> None:
    """Leave the cluster (and stop a local Ray this process started)."""
    import ray

    ray.shutdown()


class RayCluster:
    """The process's Ray connection for the span of a ``with`` block (see the module
    docstring: the connection is process-global)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> RayCluster:
        try:
            connect(self.settings)
        except BaseException:
            disconnect()  # a half-started local Ray is not left behind
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        disconnect()
