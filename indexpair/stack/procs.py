"""Linux process helpers for the local stack: identity from /proc, memory, termination.

A process is identified by its pid *and* its kernel start time, so a pid the kernel has
reused for an unrelated process is never mistaken for one of ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

# Popen handles of children started by this process, so they are reaped, not left zombies.
children: dict[int, subprocess.Popen[bytes]] = {}


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: index 0 is field 3 (the state).

    So ``[1]`` is the parent pid, ``[2]`` the process group, ``[19]`` the start time in
    clock ticks and ``[21]`` the resident set size in pages.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """Kernel start time of a live (non-zombie) pid, or None."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    """The command line of ``pid``; empty while it is still exec-ing or when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return []
    return [arg for arg in raw.rstrip("\0").split("\0") if arg] if raw else []


def wait_exec(pid: int, timeout_s: float = 5.0) -> list[str]:
    """Wait until a just-spawned child shows its new command line.

    ``Popen`` may return (vfork) before the kernel has set up the new argv, when
    /proc/PID/cmdline still reads empty.
    """
    deadline = time.monotonic() + timeout_s
    while not (args := cmdline(pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return args


def runs(pid: int, ticks: int, argv: list[str]) -> bool:
    """Whether ``pid`` is the process started at ``ticks`` and still runs ``argv``.

    A console script runs as ``python /path/script args...``, so only the arguments after
    the executable are compared, as the tail of the command line.
    """
    if start_ticks(pid) != ticks:
        return False
    args, tail = cmdline(pid), argv[1:]
    if len(args) >= len(tail) and args[len(args) - len(tail) :] == tail:
        return True
    logger.debug("pid %d runs %r, not %r", pid, args, argv)
    return False


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in the process group, in MiB."""
    pages = 0
    for entry in Path("/proc").iterdir():
        fields = stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid:
            pages += int(fields[21])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def descendants(pid: int) -> dict[int, int]:
    """Every descendant of ``pid`` (pid -> start ticks), whatever its session.

    A Prefect worker starts each flow run in a session of its own; they are found here.
    """
    parent_of: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            parent_of[int(entry.name)] = int(fields[1])
            ticks[int(entry.name)] = int(fields[19])
    found: dict[int, int] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parent_of.items():
            if its_parent == parent and child not in found:
                found[child] = ticks[child]
                frontier.append(child)
    return found


def _signal_all(pgid: int, others: dict[int, int], sig: signal.Signals) -> None:
    for pid, ticks in others.items():
        if start_ticks(pid) == ticks:  # never signal a pid reused meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _all_gone(pgid: int, others: dict[int, int]) -> bool:
    proc = children.get(pgid)
    if proc is not None:
        proc.poll()  # reap our own child, or the group never looks empty
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return all(start_ticks(pid) != ticks for pid, ticks in others.items())
    return False


def terminate(pgid: int, timeout_s: float) -> None:
    """Stop a process group and every descendant of its leader.

    SIGTERM first, SIGKILL whatever is left after ``timeout_s``.
    """
    others = descendants(pgid)
    _signal_all(pgid, others, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while not _all_gone(pgid, others):
        if time.monotonic() > deadline:
            logger.warning("pid %d still alive after %.0f s; sending SIGKILL", pgid, timeout_s)
            _signal_all(pgid, others, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc = children.pop(pgid, None)
    if proc is not None:
        proc.wait(timeout=5)


def kept_secret(path: Path, generate: Callable[[], str], what: str) -> str:
    """A secret generated once into ``path`` and read back after (mode 0600 from the
    start, whatever the umask; a file already there is kept as it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(generate())
    logger.info("generated %s in %s", what, path)
    return path.read_text(encoding="ascii").strip()
