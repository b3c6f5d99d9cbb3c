"""Retention: what garbage collection keeps or drops, and the abandoned-build reaper.

- :mod:`tasks.retention.decision`: the pure decision (:func:`decide`) over collection facts.
- :mod:`tasks.retention.collect`: reading the facts, checked drops, the GC tasks.
- :mod:`tasks.retention.reaper`: rejecting unfinished builds the decision drops.
"""

from tasks.retention.collect import (
    apply,
    apply_retention,
    facts_of,
    gather,
    plan,
    plan_retention,
    publish_retention,
    recheck,
)
from tasks.retention.decision import CollectionFacts, RetentionPolicy, Verdict, decide
from tasks.retention.reaper import reap_abandoned, reap_abandoned_builds

__all__ = [
    "CollectionFacts",
    "RetentionPolicy",
    "Verdict",
    "apply",
    "apply_retention",
    "decide",
    "facts_of",
    "gather",
    "plan",
    "plan_retention",
    "publish_retention",
    "reap_abandoned",
    "reap_abandoned_builds",
    "recheck",
]
