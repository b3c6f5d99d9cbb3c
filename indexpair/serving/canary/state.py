"""What the request path and the canary's background thread share."""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from indexpair.serving.canary.interleave import Team
from indexpair.serving.canary.metrics import CanaryMetrics
from indexpair.serving.canary.stats import CanaryStats
from indexpair.serving.query import PairTarget


@dataclass
class Impression:
    """What one response showed: hit id -> (team, collection, model version)."""

    candidate: str
    interleaved: bool
    shown: dict[str, tuple[Team, str, str]]
    clicked: set[str] = field(default_factory=set)


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
        self.metrics = CanaryMetrics(registry)
