"""The local stack: Milvus (Lite or the standalone server), MLflow, the Prefect server
and its worker as real processes on loopback (``indexpair stack up | down | status``), with
Prefect and MLflow on SQLite files or on a local PostgreSQL server.

:mod:`~indexpair.stack.specs` describes each service, :mod:`~indexpair.stack.control`
starts, stops and reports them, :mod:`~indexpair.stack.procs` identifies and ends their
processes, :mod:`~indexpair.stack.milvus_standalone` runs the real Milvus server,
:mod:`~indexpair.stack.database` chooses the database of Prefect and MLflow and
:mod:`~indexpair.stack.postgres` runs the local PostgreSQL server.
"""

from indexpair.stack.control import ServiceStatus, down, status, up
from indexpair.stack.specs import (
    ALL_SERVICES,
    ServiceSpec,
    build_spec,
    executable,
    profile_services,
    service_env,
)

__all__ = [
    "ALL_SERVICES",
    "ServiceSpec",
    "ServiceStatus",
    "build_spec",
    "down",
    "executable",
    "profile_services",
    "service_env",
    "status",
    "up",
]
