"""Deterministic crash points, off unless a test arms them.

Every step boundary of promote, approval resume, rollback, refresh and garbage
collection calls :func:`crash_point` with its name. Nothing happens unless the
environment names a *crash file* (``INDEXPAIR_CRASH_FILE``) that exists and lists that
point: then the point is struck from the file (so the retry runs through) and the
process kills itself with SIGKILL, as a lost node would. Tests use it to show that a
retry, resume or reconcile converges from every boundary.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)
ENV = "INDEXPAIR_CRASH_FILE"

# The named boundaries, in the order a promotion passes them (documented in the docs'
# faults page; tests arm them by name).
POINTS = (
    "build.created",  # collection created with its pair metadata
    "build.inserted",  # rows embedded and inserted, before flush/load
    "build.validated",  # report recorded, state awaiting_approval, before the suspend
    "approval.verified",  # approval input checked against the build, before the switch
    "switch.approved",  # candidate marked approved with what it replaces, before the alias
    "switch.alias_moved",  # the alias points at the candidate, before the states are written
    "switch.live_marked",  # candidate marked live, before the old pair is retired
    "switch.done",  # Milvus records complete, before the MLflow mirror
    "registry.synced",  # MLflow alias and tags written, before the run reports
    "refresh.copied",  # unchanged vectors copied into the refresh build
    "gc.planned",  # retention verdicts made, before the first drop
    "gc.dropped",  # one collection dropped, before the next
    "reconcile.fixed",  # one repair applied, before the next
)


def crash_point(name: str) -> None:
    """Kill this process here if the armed crash file lists ``name`` (a no-op otherwise)."""
    path = os.environ.get(ENV)
    if not path:
        return
    file = Path(path)
    try:
        armed = file.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return
    if name not in armed:
        return
    armed.remove(name)
    file.write_text("\n".join(armed), encoding="utf-8")
    log.warning("crash point %s: killing process %d", name, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


def arm(file: Path, *names: str) -> None:
    """List crash points in ``file`` (for tests): each fires once, in any process."""
    unknown = [n for n in names if n not in POINTS]
    if unknown:
        raise ValueError(f"unknown crash point(s) {unknown}; known: {', '.join(POINTS)}")
    file.write_text("\n".join(names), encoding="utf-8")
