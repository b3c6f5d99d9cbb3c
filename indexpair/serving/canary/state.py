"""What the request path and the canary's background thread share."""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client import CollectorRegistry

from indexpair.serving.canary.interleave import Team
from indexpair.serving.canary.metrics import CanaryMetrics
from indexpair.serving.canary.stats import CanaryStats
from indexpair.serving.query import PairTarget


class Impression(NamedTuple):
    """What one response showed: per hit, in order, (hit id, team, collection, model
    version), all plain strings.

    The service remembers thousands of these (``canary_impressions``). Plain tuples of
    strings leave the garbage collector's lists, so each remembered response is one
    object to its full passes, not a dozen; the clicks on them are kept apart
    (:attr:`Shared.clicks`), for the few responses clicked.
    """

    candidate: str
    interleaved: bool
    shown: tuple[tuple[str, str, str, str], ...]

    def find(self, hit_id: str) -> tuple[Team, str, str] | None:
        """The team, collection and model version that showed ``hit_id`` (None: not shown)."""
        for shown_id, team, collection, version in self.shown:
            if shown_id == hit_id:
                return Team(team), collection, version
        return None

    def teams(self) -> list[tuple[str, Team]]:
        """(hit id, team) of every hit shown."""
        return [(hit_id, Team(team)) for hit_id, team, _, _ in self.shown]


@dataclass
class Candidate:
    """The candidate under comparison and its evidence so far."""

    target: PairTarget
    stats: CanaryStats
    live_version: str
    dirty: bool = False


@dataclass(frozen=True)
class MirrorJob:
    """One live query copied to the candidate."""

    text: str
    k: int
    live_ids: list[str]
    live_ms: float
    candidate: str


class Shared:
    """The candidate, the mirror queue, the recent responses and the metrics.

    ``current`` is replaced as a whole by the background thread and read without the
    lock; the evidence inside it is changed only under ``lock``.
    """

    def __init__(self, registry: CollectorRegistry, queue_size: int) -> None:
        self.lock = threading.Lock()
        self.current: Candidate | None = None
        self.queue: queue.Queue[MirrorJob] = queue.Queue(maxsize=queue_size)
        self.impressions: OrderedDict[str, Impression] = OrderedDict()
        self.clicks: dict[str, set[str]] = {}  # query id -> hits clicked, while remembered
        self.metrics = CanaryMetrics(registry)
