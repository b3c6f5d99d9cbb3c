"""Pre-loading: the pairs an alias may switch to next are warm before it switches.

A candidate awaiting approval (or approved and not yet switched) and the pair a rollback
would return to are loaded ahead of any switch: their model in the query client's cache
(with one warm-up encode) and their collection in Milvus (with one warm-up search). The
first answers from a new pair then cost what later ones do.

Pre-loading only warms caches. Which pair answers is decided by the alias alone, at
request time, so a pre-loaded candidate never answers before the switch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from indexpair.pair import PairMetadata, PairState
from indexpair.roles import group_of, rollback_targets
from indexpair.serving.query import PairSearcher

log = logging.getLogger(__name__)
UPCOMING = (PairState.AWAITING_APPROVAL, PairState.APPROVED)


def preload_targets(
    pairs: Iterable[tuple[str, PairMetadata]], alias: str, live: str | None, room: int
) -> list[str]:
    """The pairs to keep warm for ``alias``: candidates first, newest first, then the
    default rollback target; never the live pair, at most ``room`` of them."""
    pairs = list(pairs)
    upcoming = [
        name
        for name, pair in reversed(pairs)  # list_pairs sorts by creation time
        if pair.state in UPCOMING and group_of(pair) == alias
    ]
    back = rollback_targets(pairs, alias)[:1]
    chosen = [name for name in dict.fromkeys(upcoming + back) if name != live]
    return chosen[: max(room, 0)]


class Preloader:
    """A thread that asks Milvus every ``interval_s`` what to warm, and warms it.

    Args:
        searcher: the query client whose caches are warmed (a ``PairSearcher``).
        interval_s: seconds between two looks; 0 starts no thread.
    """

    def __init__(self, searcher: PairSearcher, interval_s: float) -> None:
        self.searcher = searcher
        self.interval_s = interval_s
        self.warmed: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start looking (once)."""
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="preloader", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # a failed look is retried at the next interval
                log.warning(
                    "pre-loading failed; trying again in %.0f s", self.interval_s, exc_info=True
                )
            self._stop.wait(self.interval_s)

    def run_once(self) -> list[str]:
        """Warm what may be switched to next; returns the collections warmed this time."""
        searcher = self.searcher
        pairs = searcher.list_pairs()
        live = searcher.alias_collection()
        room = searcher.models.capacity - 1  # the live pair's model is never evicted
        by_name = dict(pairs)
        warmed = []
        for name in preload_targets(pairs, searcher.alias, live, room):
            if name in self.warmed and searcher.models.is_ready(by_name[name]):
                continue
            searcher.warm(name, by_name[name])
            self.warmed.add(name)
            warmed.append(name)
            log.info("pre-loaded %s (%s)", name, by_name[name].state.value)
        return warmed

    def stop(self) -> None:
        """Stop looking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
