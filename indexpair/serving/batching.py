"""Micro-batching: concurrent queries answered with one forward pass and one Milvus call.

Requests wait at most ``wait_ms`` (or until ``max_batch`` are queued); then one thread
resolves the alias once, encodes every queued text in one call of that pair's model and
searches that pair's collection with all the vectors in one call. A batch therefore
never mixes pairs: every response in it names the one target that produced it.
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


# Given the queued requests, returns one answer per request, in order.
BatchRunner = Callable[[list[Request]], list[Any]]


class MicroBatcher:
    """Collects concurrent requests into batches handed to ``run`` on one thread.

    Args:
        run: answers a whole batch (in order); an exception fails every request in it.
        max_batch: largest batch.
        wait_ms: longest a request waits for others to join it.
        workers: threads taking batches (each batch is still answered by one thread).
    """

    def __init__(self, run: BatchRunner, max_batch: int, wait_ms: float, workers: int = 1) -> None:
        self.run = run
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
        for thread in self._threads:
            thread.start()

    def submit(self, text: str, k: int) -> Any:
        """Queue one query and wait for its answer.

        Raises:
            whatever ``run`` raised for the batch, or RuntimeError once closed.
        """
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        request = Request(text, k)
        self._queue.put(request)
        return request.future.result()

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
            batch = self._collect(first)
            try:
                answers = self.run(batch)
            except BaseException as exc:  # every waiter gets the batch's error
                for request in batch:
                    request.future.set_exception(exc)
                continue
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
