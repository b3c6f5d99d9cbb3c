"""The canary's background thread: finds the candidate, answers mirrored queries, stores
the evidence on the candidate and in its approval report, and may deny it."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from indexpair.pair import PairState, now_iso
from indexpair.serving.canary import store
from indexpair.serving.canary.interleave import deny_reason, overlap_at_k, rank_biased_overlap
from indexpair.serving.canary.state import Candidate, MirrorJob, Shared
from indexpair.serving.canary.stats import CanaryStats
from indexpair.serving.query import PairSearcher, PairTarget
from indexpair.settings import Settings

log = logging.getLogger(__name__)


class Background:
    """One daemon thread doing everything the request path must not wait for."""

    def __init__(self, settings: Settings, searcher: PairSearcher, shared: Shared) -> None:
        self.settings = settings
        self.searcher = searcher
        self.shared = shared
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)

    def start(self) -> None:
        """Start the thread (it looks for a candidate at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then store the evidence gathered since the last store."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        guard(lambda: self.publish(report=False), "final store")

    def _run(self) -> None:
        next_refresh = 0.0
        next_publish = time.monotonic() + self.settings.canary_publish_s
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                guard(self.refresh, "candidate look-up")
                next_refresh = now + self.settings.canary_refresh_s
            if now >= next_publish:
                guard(self.publish, "evidence store")
                next_publish = now + self.settings.canary_publish_s
            try:
                job = self.shared.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            guard(lambda job=job: self.mirror(job), "shadow query")  # type: ignore[misc]

    def mirror(self, job: MirrorJob) -> None:
        """Ask the candidate a mirrored query and record how its answer compares."""
        shared, cand = self.shared, self.shared.current
        if cand is None or cand.stats.candidate != job.candidate:
            return
        started = time.perf_counter()
        try:
            other = self.searcher.search_in(cand.target, job.text, job.k)
        except Exception as exc:  # counted and shown as a candidate error, never raised
            log.warning("candidate %s failed a shadow query: %s", job.candidate, exc)
            with shared.lock:
                cand.stats.shadow.errors += 1
            shared.metrics.shadow.labels(job.candidate, "error").inc()
            return
        took = time.perf_counter() - started
        ids = [h.id for h in other.hits]
        overlap = overlap_at_k(job.live_ids, ids, job.k)
        rbo = rank_biased_overlap(job.live_ids, ids)
        with shared.lock:
            cand.stats.shadow.add(overlap, rbo, job.live_ms, took * 1000)
            cand.dirty = True
        shared.metrics.shadow.labels(job.candidate, "mirrored").inc()
        shared.metrics.overlap.labels(cand.stats.live, job.candidate).observe(overlap)
        shared.metrics.rbo.labels(cand.stats.live, job.candidate).observe(rbo)
        shared.metrics.shadow_latency.labels(job.candidate).observe(took)

    def refresh(self) -> None:
        """Find the newest candidate awaiting approval behind the alias (or none)."""
        alias = self.searcher.alias
        waiting = [
            (name, pair)
            for name, pair in self.searcher.gateway.list_pairs()
            if pair.state == PairState.AWAITING_APPROVAL and pair.alias == alias
        ]
        current = self.shared.current
        if not waiting:
            if current is not None:
                log.info("%s no longer awaits approval", current.stats.candidate)
                guard(lambda: self.publish(report=False), "last store")
                self.shared.current = None
            return
        name, pair = waiting[-1]
        if current is not None and current.stats.candidate == name:
            return
        live = self.searcher.target()
        if pair.baseline and pair.baseline != live.collection:
            log.info(
                "candidate %s was validated against %s, not the live %s: not compared",
                name,
                pair.baseline,
                live.collection,
            )
            return
        stats = store.stored_stats(pair)
        if stats is None or stats.live != live.collection:
            stats = CanaryStats(
                candidate=name,
                candidate_model=f"{pair.model_name} v{pair.model_version}",
                live=live.collection,
                live_model=f"{live.pair.model_name} v{live.pair.model_version}",
            )
        self.searcher.models.load_in_background(pair)
        self.shared.current = Candidate(PairTarget(name, pair), stats, live.pair.model_version)
        log.info("comparing candidate %s with live %s online", name, live.collection)

    def publish(self, report: bool = True) -> None:
        """Store changed evidence on the candidate and in its approval report; maybe deny."""
        shared, cand = self.shared, self.shared.current
        if cand is None or not cand.dirty:
            return
        with shared.lock:
            cand.stats.updated_at = now_iso()
            cand.dirty = False
            stats = cand.stats.model_copy(deep=True)
        store.save_stats(self.searcher.gateway, stats)
        if report:
            store.publish_report(self.settings, stats, cand.target.pair.flow_run_id)
            self._maybe_deny(cand)

    def _maybe_deny(self, cand: Candidate) -> None:
        i = cand.stats.interleave
        reason = deny_reason(
            i.wins_candidate,
            i.wins_live,
            self.settings.canary_deny_alpha,
            self.settings.canary_min_decided,
        )
        if not (self.settings.canary_auto_deny and reason and not cand.stats.auto_denied):
            return
        run = cand.target.pair.flow_run_id
        if not run:
            log.warning(
                "%s should be denied (%s); it names no flow run", cand.stats.candidate, reason
            )
            return
        store.deny(self.settings, run, reason)
        log.warning("denied %s automatically: %s", cand.stats.candidate, reason)
        with self.shared.lock:
            cand.stats.auto_denied = reason
            cand.dirty = True


def guard(step: Callable[[], object], what: str) -> None:
    """Run one step of the thread; log a failure and carry on.

    The thread must outlive any one failure (Milvus or Prefect away for a while).
    """
    try:
        step()
    except Exception:
        log.exception("canary %s failed", what)
