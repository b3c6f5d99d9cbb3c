"""A small, bounded log of the live queries the search service answered (JSON lines).

The promote flow reads a sample of it to compare the live pair and a candidate on real
traffic before anyone approves the candidate. It holds what users searched for, so the
file is readable by its owner only (mode 0600, also enforced on a file found in place).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

PRIVATE = 0o600


class QueryLog:
    """Appends one JSON line per query; keeps at most about ``max_entries`` lines.

    The file is compacted to the newest ``max_entries`` lines whenever it holds twice
    as many, so appending stays cheap and the file stays small.
    """

    def __init__(self, path: Path, max_entries: int) -> None:
        self.path = path
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._count: int | None = None

    def append(self, query: str, k: int, collection: str, model_version: str) -> None:
        """Record one answered query (a no-op when the log is disabled)."""
        if self.max_entries <= 0:
            return
        line = json.dumps(
            {
                "ts": round(time.time(), 3),
                "q": query,
                "k": k,
                "collection": collection,
                "model_version": model_version,
            }
        )
        with self._lock:
            if self._count is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists():
                    os.chmod(self.path, PRIVATE)  # a log written before, with a looser mode
                self._count = len(_lines(self.path))
            _write_private(self.path, line + "\n", os.O_APPEND)
            self._count += 1
            if self._count >= 2 * self.max_entries:
                keep = _lines(self.path)[-self.max_entries :]
                tmp = self.path.with_suffix(".tmp")
                tmp.unlink(missing_ok=True)  # created afresh below, with mode 0600
                _write_private(tmp, "".join(x + "\n" for x in keep), os.O_EXCL)
                tmp.replace(self.path)
                self._count = len(keep)


def _write_private(path: Path, text: str, mode_flag: int) -> None:
    """Write ``text`` to ``path``, creating it with mode 0600 (never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode_flag, PRIVATE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def recent_queries(path: Path, limit: int) -> list[str]:
    """The newest distinct query texts in the log (newest first), at most ``limit``.

    A missing file or a damaged line gives fewer queries, never an error: the log is
    a convenience for the approval report, not a source of truth.
    """
    seen: dict[str, None] = {}
    for line in reversed(_lines(path)):
        if len(seen) >= limit:
            break
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError:
            continue
        text = record.get("q") if isinstance(record, dict) else None
        if isinstance(text, str) and text.strip():
            seen.setdefault(text, None)
    return list(seen)
