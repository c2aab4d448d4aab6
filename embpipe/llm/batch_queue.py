"""Requests from many threads answered in batches by one worker thread.

The local teacher server answers each HTTP request on a thread of its own; ``BatchQueue`` lets those threads
wait while one worker gathers whatever arrived together (up to ``max_size``, waiting at most ``gather_s``
for more once the first is in) and answers them with one call of ``answer``, so parallel sequences decode
side by side. An error raised by ``answer`` is raised in every thread of that batch.

Example:
    >>> queue = BatchQueue(lambda items: [n * n for n in items], max_size=4)
    >>> queue.submit(3)
    9
    >>> queue.close()
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
GATHER_S = 0.05  # a batch's wait for company: small beside a reply's seconds, long beside a client's turn-around


class BatchQueue(Generic[T, R]):
    """``submit`` blocks until the worker has answered the item within a batch of up to ``max_size``."""

    def __init__(self, answer: Callable[[list[T]], list[R]], max_size: int, gather_s: float = GATHER_S):
        self.answer = answer
        self.max_size = max_size
        self.gather_s = gather_s
        self.pending: queue.Queue[tuple[T, Future] | None] = queue.Queue()
        self.worker = threading.Thread(target=self.work, name="batch-queue", daemon=True)
        self.worker.start()

    def submit(self, item: T) -> R:
        """The answer to ``item`` (raises what answering its batch raised)."""
        future: Future = Future()
        self.pending.put((item, future))
        return future.result()

    def close(self) -> None:
        """Stop the worker once the items already queued are answered."""
        self.pending.put(None)
        self.worker.join()

    def work(self) -> None:
        while (batch := self.next_batch()) is not None:
            try:
                answers = self.answer([item for item, _ in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting thread of the batch
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                future.set_result(answer)

    def next_batch(self) -> list[tuple[T, Future]] | None:
        """The next items to answer together: the first to arrive and whatever joins it in ``gather_s``;
        ``None`` once ``close`` was called and nothing is left."""
        first = self.pending.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.gather_s
        while len(batch) < self.max_size:
            try:
                item = self.pending.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self.pending.put(None)  # answer this batch, then stop
                break
            batch.append(item)
        return batch
