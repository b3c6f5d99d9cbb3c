"""Micro-batching: concurrent queries answered with one forward pass and one Milvus call.

Requests wait at most ``wait_ms`` (or until ``max_batch`` are queued); then one thread
resolves the alias once, encodes every queued text in one call of that pair's model and
searches that pair's collection with all the vectors in one call. A batch therefore
never mixes pairs: every response in it names the one target that produced it.

With a second stage (``finish``), the two halves run as a pipeline: while one thread
searches Milvus with batch N's vectors, the other already encodes batch N+1. The model
(CPU-bound) then never waits on Milvus (a round trip to another process).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Request:
    """One query waiting for its batch."""

    text: str
    k: int
    future: Future = field(default_factory=Future)


# Given the queued requests, returns one answer per request, in order (or, with a
# second stage, what that stage needs to make them).
BatchRunner = Callable[[list[Request]], Any]
# The second stage: from the first stage's result, one answer per request, in order.
BatchFinisher = Callable[[Any], list[Any]]


class MicroBatcher:
    """Collects concurrent requests into batches handed to ``run`` on one thread.

    Args:
        run: answers a whole batch (in order); an exception fails every request in it.
        max_batch: largest batch.
        wait_ms: longest a request waits for others to join it.
        workers: threads taking batches (each batch is still answered by one thread).
        finish: a second stage run on its own thread: ``run``'s result goes to it and it
            returns the answers; ``run`` takes the next batch meanwhile. One batch waits
            between the stages at most.
    """

    def __init__(
        self,
        run: BatchRunner,
        max_batch: int,
        wait_ms: float,
        workers: int = 1,
        finish: BatchFinisher | None = None,
    ) -> None:
        self.run = run
        self.finish = finish
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self.batches = 0
        self.answered = 0
        self._queue: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        # More than one worker lets one batch encode while another waits on Milvus.
        self._threads = [
            threading.Thread(target=self._loop, name=f"query-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        self._closed = False
        self._counts = threading.Lock()
        self._handoff: queue.Queue[tuple[list[Request], Any] | None] = queue.Queue(maxsize=1)
        self._finisher = (
            threading.Thread(target=self._finish_loop, name="query-finisher", daemon=True)
            if finish is not None
            else None
        )
        for thread in [*self._threads, *([self._finisher] if self._finisher else [])]:
            thread.start()

    def submit(self, text: str, k: int) -> Any:
        """Queue one query and wait for its answer.

        Raises:
            whatever ``run`` raised for the batch, or RuntimeError once closed.
        """
        return self.submit_future(text, k).result()

    def submit_future(self, text: str, k: int) -> Future:
        """Queue one query; its answer (or error) arrives on the returned future.

        Raises:
            RuntimeError: the batcher is closed.
        """
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        request = Request(text, k)
        self._queue.put(request)
        return request.future

    def _collect(self, first: Request) -> list[Request]:
        batch = [first]
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            try:  # take what is queued already without waiting
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                self._queue.put(None)  # close after this batch
                break
            batch.append(item)
        return batch

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.put(None)  # for the next worker
                return
            # A caller that gave up (an awaiting task cancelled its future) is left out;
            # the others' futures are marked running, so they can no longer be cancelled.
            batch = [r for r in self._collect(first) if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                result = self.run(batch)
            except BaseException as exc:  # every waiter gets the batch's error
                _fail(batch, exc)
                continue
            if self.finish is None:
                self._answer(batch, result)
            else:
                self._handoff.put((batch, result))

    def _finish_loop(self) -> None:
        assert self.finish is not None
        while (item := self._handoff.get()) is not None:
            batch, result = item
            try:
                answers = self.finish(result)
            except BaseException as exc:
                _fail(batch, exc)
                continue
            self._answer(batch, answers)

    def _answer(self, batch: list[Request], answers: list[Any]) -> None:
        with self._counts:
            self.batches += 1
            self.answered += len(batch)
        for request, answer in zip(batch, answers, strict=True):
            request.future.set_result(answer)

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)  # each worker passes it on before it stops
            for thread in self._threads:
                thread.join(timeout=30)
            if self._finisher is not None:
                self._handoff.put(None)  # after every batch the workers handed over
                self._finisher.join(timeout=30)


def _fail(batch: list[Request], exc: BaseException) -> None:
    for request in batch:
        request.future.set_exception(exc)
