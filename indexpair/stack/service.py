"""What the local stack knows about one service: how to launch it and tell it is healthy.

:mod:`~indexpair.stack.specs` and :mod:`~indexpair.stack.database` build these;
:mod:`~indexpair.stack.control` starts, stops and reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """How to launch one local service and how to tell it is healthy.

    Attributes:
        name: Service name; also names its pid and log files.
        argv: Command line, executable first.
        make_env: Builds the complete environment of the child (called only to start it).
        port: Loopback port it serves (the worker serves none; it uses Prefect's).
        url: What `status` shows for it.
        startup_timeout_s: How long `up` waits for it to become healthy.
        healthy: Health probe; takes the time the process started (seconds since the epoch).
        database: The database URL it uses, as status shows it (password redacted).
        run_as: (uid, gid) it runs as when not ours (PostgreSQL refuses root).
    """

    name: str
    argv: list[str]
    make_env: Callable[[], dict[str, str]]
    port: int | None
    url: str
    startup_timeout_s: float
    healthy: Callable[[float], bool]
    database: str = ""
    run_as: tuple[int, int] | None = None
