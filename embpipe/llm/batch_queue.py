"""Requests from many threads answered in batches by one worker thread.

The local teacher server answers each HTTP request on a thread of its own; ``BatchQueue`` lets those threads
wait while one worker gathers whatever arrived together (up to ``max_size``, waiting at most ``gather_s``
for more once the first is in) and answers them with one call of ``answer``, so parallel sequences decode
side by side. An item submitted with a ``Seat`` (its wave's id and size, and its position: ``waves``)
waits instead for every member of its wave (at most ``wave_wait_s``), and the wave is answered in position
order, ``max_size`` at a time, so the batches do not depend on when the requests arrived. An error raised by
``answer`` is raised in every thread of that batch.

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
from dataclasses import dataclass
from typing import Generic, TypeVar

from embpipe.llm.waves import Seat

T = TypeVar("T")
R = TypeVar("R")
GATHER_S = 0.05  # a batch's wait for company: small beside a reply's seconds, long beside a client's turn-around
WAVE_WAIT_S = 30.0  # a wave's wait for its last member: its members are sent together, so only a failure is late


@dataclass
class Pending(Generic[T]):
    """A submitted item, the future its thread waits on, and its seat when it came in a wave."""

    item: T
    future: Future
    seat: Seat | None = None


class BatchQueue(Generic[T, R]):
    """``submit`` blocks until the worker has answered the item within a batch of up to ``max_size``."""

    def __init__(
        self,
        answer: Callable[[list[T]], list[R]],
        max_size: int,
        gather_s: float = GATHER_S,
        wave_wait_s: float = WAVE_WAIT_S,
    ):
        self.answer = answer
        self.max_size = max_size
        self.gather_s = gather_s
        self.wave_wait_s = wave_wait_s
        self.pending: queue.Queue[Pending | None] = queue.Queue()
        self.deferred: list[Pending] = []  # taken while gathering another batch: the next batches' first items
        self.ready: list[list[Pending]] = []  # the rest of a wave larger than ``max_size``
        self.answered = {"waves": 0, "loose_batches": 0}  # what the worker gathered, for the server's /health
        self.worker = threading.Thread(target=self.work, name="batch-queue", daemon=True)
        self.worker.start()

    def submit(self, item: T, seat: Seat | None = None) -> R:
        """The answer to ``item`` (raises what answering its batch raised)."""
        future: Future = Future()
        self.pending.put(Pending(item, future, seat))
        return future.result()

    def close(self) -> None:
        """Stop the worker once the items already queued are answered."""
        self.pending.put(None)
        self.worker.join()

    def work(self) -> None:
        while (batch := self.next_batch()) is not None:
            try:
                answers = self.answer([pending.item for pending in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting thread of the batch
                for pending in batch:
                    pending.future.set_exception(error)
                continue
            for pending, answer in zip(batch, answers, strict=True):
                pending.future.set_result(answer)

    def next_batch(self) -> list[Pending] | None:
        """The next items to answer together; ``None`` once ``close`` was called and nothing is left."""
        if self.ready:
            return self.ready.pop(0)
        first = self.deferred.pop(0) if self.deferred else self.pending.get()
        if first is None:
            return None
        kind = "loose_batches" if first.seat is None else "waves"
        self.answered[kind] += 1
        return self.gather_loose(first) if first.seat is None else self.gather_wave(first)

    def gather_loose(self, first: Pending) -> list[Pending]:
        """``first`` and the items without a seat that join it within ``gather_s``, up to ``max_size``."""
        batch = [first]
        deadline = time.monotonic() + self.gather_s
        while len(batch) < self.max_size and (pending := self.take(deadline)) is not None:
            if pending.seat is None:
                batch.append(pending)
            else:
                self.deferred.append(pending)
        return batch

    def gather_wave(self, first: Pending) -> list[Pending]:
        """Every member of ``first``'s wave (or those in within ``wave_wait_s``) in position order, answered
        ``max_size`` at a time: the first batch now, the rest next."""
        wave, members = first.seat.wave, [first]
        deadline = time.monotonic() + self.wave_wait_s
        while len(members) < first.seat.size and (pending := self.take(deadline)) is not None:
            if pending.seat is not None and pending.seat.wave == wave:
                members.append(pending)
            else:
                self.deferred.append(pending)
        members.sort(key=lambda pending: pending.seat.position)
        batches = [members[n : n + self.max_size] for n in range(0, len(members), self.max_size)]
        self.ready.extend(batches[1:])
        return batches[0]

    def take(self, deadline: float) -> Pending | None:
        """The next submitted item, or ``None`` at the deadline or once ``close`` was called (kept for later)."""
        try:
            pending = self.pending.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if pending is None:
            self.pending.put(None)  # answer what was gathered, then stop
        return pending
