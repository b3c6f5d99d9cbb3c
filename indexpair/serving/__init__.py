"""Serving: queries answered through an alias by the pair behind it.

The pair-consistent query client (:class:`PairSearcher`) and the model versions it keeps
in memory, the HTTP search service around it (``indexpair serve``), the bounded log of
the queries it answered (which the promote flow replays as shadow traffic), and an
independent checker that a response is not mixed.
"""

from indexpair.serving.app import create_app, serve
from indexpair.serving.consistency import ConsistencyChecker, Verdict
from indexpair.serving.model_cache import ModelCache
from indexpair.serving.query import (
    Hit,
    PairSearcher,
    PairTarget,
    SearchResponse,
    connection_lost,
    source_titles,
)
from indexpair.serving.query_log import QueryLog, recent_queries

__all__ = [
    "ConsistencyChecker",
    "Hit",
    "ModelCache",
    "PairSearcher",
    "PairTarget",
    "QueryLog",
    "SearchResponse",
    "Verdict",
    "connection_lost",
    "create_app",
    "recent_queries",
    "serve",
    "source_titles",
]
