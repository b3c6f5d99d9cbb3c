"""Peak memory and CPU time of a process and everything it started (Ray's raylet,
workers, actors; a server's workers).

Sums the proportional set size (PSS, ``/proc/<pid>/smaps_rollup``) of a process tree, so
pages shared between processes (Ray's object store, forked workers) count once.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

PROC = Path("/proc")


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible now."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # it just ended
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pss_kib(pid: int) -> int:
    try:
        text = Path(PROC, str(pid), "smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_pss_mib(root: int) -> float:
    """PSS of ``root`` and all its descendants, in MiB."""
    tree, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        total += _pss_kib(pid)
        todo.extend(tree.get(pid, []))
    return total / 1024


class PeakMemory:
    """Samples a process tree's PSS in a background thread; ``peak_mib`` is the maximum."""

    def __init__(self, root: int, every_s: float = 1.0) -> None:
        self.root, self.every_s, self.peak_mib = root, every_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, tree_pss_mib(self.root))
            self._stop.wait(self.every_s)


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) spent so far by ``root`` and its live descendants."""
    tree, todo, total = _children(), [root], 0.0
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        pid = todo.pop()
        try:
            fields = Path(PROC, str(pid), "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it just ended
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo.extend(tree.get(pid, []))
    return total
