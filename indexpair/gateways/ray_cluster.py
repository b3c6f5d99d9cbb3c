"""Gateway to Ray: connect to the cluster in ``RAY_ADDRESS`` or start a local one."""

from __future__ import annotations

import logging
import os
from typing import Any

from indexpair.settings import Settings

log = logging.getLogger(__name__)
READER_SLOTS = 2
RAY_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def connect(settings: Settings) -> None:
    """Connect to ``RAY_ADDRESS`` or start a local Ray, quietly."""
    if not settings.ray_address:
        # Ray's own switch for single-machine use: the node advertises 127.0.0.1, so a local
        # Ray never talks over a non-loopback interface. Read when ray is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "runtime_env": {"env_vars": RAY_ENV},
    }
    if settings.ray_address:
        kwargs["address"] = settings.ray_address
    else:  # a local Ray: loopback only, and a small object store (batches are streamed)
        kwargs["object_store_memory"] = 512 * 1024 * 1024
        # Two logical CPUs more than the cores: the source reader and the insert writers
        # need slots of their own (they take little CPU); without them, one embedding
        # actor per core starves the reader (tasks/embedding_layout.py).
        kwargs["num_cpus"] = (os.cpu_count() or 1) + READER_SLOTS
        # Ray starts workers at nice 15; the embedding actors are the build's main work
        # and would lose the CPU to every other process on the machine (measured).
        os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for attempt in (1, 2):
        try:
            ray.init(**kwargs)
            break
        except Exception as exc:  # a local raylet that fails to start once is retried
            if settings.ray_address or attempt == 2:
                raise
            log.warning("local Ray did not start (%s); retrying once", exc)
            ray.shutdown()
    ray.data.DataContext.get_current().enable_progress_bars = False


def disconnect() -> None:
    """Leave the cluster (and stop a local Ray this process started)."""
    import ray

    ray.shutdown()
