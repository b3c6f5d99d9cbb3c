"""The canary inside the search service: shadow mirroring, interleaved answers, clicks.

While a candidate pair awaits approval behind the service's alias:

- a fraction of live queries (``shadow_fraction``) is copied to a bounded queue that a
  background thread drains: it asks the candidate the same query and records overlap@k,
  rank-biased overlap and latency. The live answer is returned before, and untouched;
  a full queue drops the copy;
- a fraction of sessions (``interleave_fraction``, sticky by hashed session id) gets a
  team-draft interleaving of the live and the candidate rankings, each hit labelled with
  the pair that produced it; ``POST /feedback`` credits clicks to the pairs.

Every response gets a query id, which ``POST /feedback`` refers to.
"""

from __future__ import annotations

import logging
import queue
import random
import time
import uuid
from typing import Any

import grpc
from prometheus_client import CollectorRegistry
from pymilvus import MilvusException

from indexpair.errors import IndexPairError
from indexpair.serving.canary.background import Background
from indexpair.serving.canary.interleave import (
    Team,
    clicks_per_team,
    in_bucket,
    outcome,
    team_draft,
)
from indexpair.serving.canary.state import Candidate, Impression, MirrorJob, Shared
from indexpair.serving.query import PairSearcher, SearchResponse
from indexpair.settings import Settings

log = logging.getLogger(__name__)
SEARCH_ERRORS = (IndexPairError, MilvusException, grpc.RpcError)
Shown = tuple[tuple[str, str, str, str], ...]  # (hit id, team, collection, version) per hit


class FeedbackRefused(IndexPairError):
    """A click that cannot be recorded; ``status`` is the HTTP status to answer with."""

    status = 422


class UnknownQuery(FeedbackRefused):
    """The query id was never issued, or is no longer remembered."""

    status = 404


class HitNotShown(FeedbackRefused):
    """The clicked hit was not among the hits shown for that query."""


def _labelled(response: SearchResponse, team: Team) -> Shown:
    return tuple(
        (h.id, team.value, response.collection, response.model_version) for h in response.hits
    )


class Canary:
    """Shadow traffic and interleaving for the candidate behind one search service."""

    def __init__(
        self, settings: Settings, searcher: PairSearcher, registry: CollectorRegistry
    ) -> None:
        self.settings = settings
        self.searcher = searcher
        self.shared = Shared(registry, settings.shadow_queue_size)
        self.background = Background(settings, searcher, self.shared)

    def start(self) -> None:
        """Start the background thread (it looks for a candidate at once)."""
        self.background.start()

    def close(self) -> None:
        """Stop the background thread and store the evidence not stored yet."""
        self.background.stop()

    def may_search(self, session: str, mix: bool) -> bool:
        """Whether :meth:`answer` may search the candidate (block on it) for this caller:
        only an interleaved response does."""
        return bool(mix and session and self.settings.interleave_fraction > 0)

    def answer(
        self, text: str, k: int, live: SearchResponse, live_s: float, session: str, mix: bool
    ) -> dict[str, Any]:
        """What to add to (or replace in) a live response: a query id, maybe interleaving.

        Args:
            text: the query.
            k: hits asked for.
            live: the live pair's answer (returned unchanged unless interleaved).
            live_s: how long the live answer took.
            session: the caller's session id ("" for none: never interleaved).
            mix: False when the caller opted out of interleaving.
        """
        cand = self.shared.current
        query_id = uuid.uuid4().hex
        extra: dict[str, Any] = {"query_id": query_id, "interleaved": False}
        shown = _labelled(live, Team.LIVE)
        if cand is not None and cand.stats.live == live.collection:
            if self.may_search(session, mix) and self._mixes(cand, session):
                mixed = self._interleave(text, k, live, cand)
                if mixed is not None:
                    extra, shown = {**mixed[0], "query_id": query_id}, mixed[1]
            elif random.random() < self.settings.shadow_fraction:
                ids = [h.id for h in live.hits]
                self._offer(MirrorJob(text, k, ids, live_s * 1000, cand.stats.candidate))
        owner = cand.stats.candidate if cand is not None else ""
        self._remember(query_id, Impression(owner, extra["interleaved"], shown))
        return extra

    def _mixes(self, cand: Candidate, session: str) -> bool:
        return self.searcher.models.is_ready(cand.target.pair) and in_bucket(
            session, self.settings.interleave_fraction, cand.stats.candidate
        )

    def _interleave(
        self, text: str, k: int, live: SearchResponse, cand: Candidate
    ) -> tuple[dict[str, Any], Shown] | None:
        """The team-draft response, or None when the candidate failed (live alone, then)."""
        started = time.perf_counter()
        try:
            other = self.searcher.search_in(cand.target, text, k)
        except SEARCH_ERRORS as exc:
            log.warning("candidate %s failed an interleaved query: %s", cand.stats.candidate, exc)
            with self.shared.lock:
                cand.stats.interleave.errors += 1
            return None
        took = time.perf_counter() - started
        by_team = {Team.LIVE: live, Team.CANDIDATE: other}
        scores = {t: {h.id: h.score for h in r.hits} for t, r in by_team.items()}
        order = team_draft(
            [h.id for h in live.hits], [h.id for h in other.hits], k, lambda: random.random() < 0.5
        )
        hits: list[dict[str, Any]] = [
            {
                "id": hit_id,
                "score": scores[team][hit_id],
                "team": team.value,
                "collection": by_team[team].collection,
                "model_name": by_team[team].model_name,
                "model_version": by_team[team].model_version,
            }
            for hit_id, team in order
        ]
        with self.shared.lock:
            cand.stats.interleave.queries += 1
            cand.dirty = True
        self.shared.metrics.interleaved.labels(cand.stats.candidate).inc()
        pairs = {t.value: r.model_dump(exclude={"hits"}) for t, r in by_team.items()}
        shown: Shown = tuple(
            (hit_id, team.value, by_team[team].collection, by_team[team].model_version)
            for hit_id, team in order
        )
        extra: dict[str, Any] = {
            "interleaved": True,
            "hits": hits,
            "pairs": pairs,
            "candidate_ms": round(took * 1000, 2),
        }
        return extra, shown

    def _offer(self, job: MirrorJob) -> None:
        try:
            self.shared.queue.put_nowait(job)
        except queue.Full:
            cand = self.shared.current
            if cand is not None:
                with self.shared.lock:
                    cand.stats.shadow.dropped += 1
            self.shared.metrics.shadow.labels(job.candidate, "dropped").inc()

    def _remember(self, query_id: str, impression: Impression) -> None:
        shared = self.shared
        with shared.lock:
            shared.impressions[query_id] = impression
            while len(shared.impressions) > self.settings.canary_impressions:
                forgotten, _ = shared.impressions.popitem(last=False)
                shared.clicks.pop(forgotten, None)

    def feedback(self, query_id: str, hit_id: str) -> dict[str, Any]:
        """Record a click on ``hit_id`` in the response ``query_id`` (a repeat counts once).

        Raises:
            UnknownQuery: the query id is not one of the recent responses.
            HitNotShown: the hit was not in that response.
        """
        with self.shared.lock:
            imp = self.shared.impressions.get(query_id)
            if imp is None:
                raise UnknownQuery(
                    f"query id {query_id!r} is unknown: not one of the last "
                    f"{self.settings.canary_impressions} responses of this service"
                )
            found = imp.find(hit_id)
            if found is None:
                shown = ", ".join(h[0] for h in imp.shown) or "no hits"
                raise HitNotShown(
                    f"hit {hit_id!r} was not shown for query {query_id!r} (shown: {shown})"
                )
            team, collection, version = found
            clicked = self.shared.clicks.setdefault(query_id, set())
            first = hit_id not in clicked
            if first:
                self._credit(imp, clicked, hit_id, team)
        if first:
            self.shared.metrics.clicks.labels(collection, version).inc()
        return {"query_id": query_id, "hit": hit_id, "collection": collection, "recorded": first}

    def _credit(self, imp: Impression, clicked: set[str], hit_id: str, team: Team) -> None:
        """Count a first click (lock held); an interleaved query may change its winner."""
        cand = self.shared.current
        teams = imp.teams()
        before = outcome(clicks_per_team(teams, clicked))
        clicked.add(hit_id)
        if not imp.interleaved or cand is None or cand.stats.candidate != imp.candidate:
            return
        stats = cand.stats.interleave
        if team == Team.LIVE:
            stats.clicks_live += 1
        else:
            stats.clicks_candidate += 1
        stats.reclassify(before, outcome(clicks_per_team(teams, clicked)))
        cand.dirty = True
        self.shared.metrics.show(cand.stats, cand.live_version, cand.target.pair.model_version)

    def view(self) -> dict[str, Any]:
        """``GET /canary``: the candidate and its evidence, or why there is none."""
        settings = {
            "shadow_fraction": self.settings.shadow_fraction,
            "interleave_fraction": self.settings.interleave_fraction,
            "auto_deny": self.settings.canary_auto_deny,
        }
        alias = self.searcher.alias
        cand = self.shared.current
        if cand is None:
            detail = f"no candidate awaits approval behind alias {alias!r}"
            return {"alias": alias, "candidate": None, "detail": detail, "settings": settings}
        with self.shared.lock:
            summary = cand.stats.summary()
        return {"alias": alias, **summary, "settings": settings}
