"""Bounded concurrency for the teacher stages, and one shared pause for every worker after a rate limit.

``ordered_map`` runs a stage's step (one teacher item) on up to ``workers`` threads and returns the results in
the items' order, so a stage's table does not depend on which call finished first: at any concurrency it holds
the same rows as a sequential run. A *stop* error (a spent token budget) ends the stage cleanly: no new item
starts, the items already running finish, and what finished is kept. ``Pacer`` is the one clock every worker
of a teacher waits on before it sends: a 429 (or a ``Retry-After``) seen by one worker pauses them all.

Example:
    >>> ordered_map(range(5), lambda n: n * n, workers=3, stop_on=KeyError)
    ([0, 1, 4, 9, 16], None)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from embpipe.llm.waves import WaveGate, item_calls

T = TypeVar("T")
R = TypeVar("R")


def sequential_map(
    items: Iterable[T], step: Callable[[T], R], stop_on: type[BaseException]
) -> tuple[list[R], BaseException | None]:
    """``step`` of each item in order until one raises ``stop_on``: the results so far and that error."""
    results: list[R] = []
    for item in items:
        try:
            results.append(step(item))
        except stop_on as error:
            return results, error
    return results, None


def ordered_map(
    items: Iterable[T], step: Callable[[T], R], workers: int, stop_on: type[BaseException]
) -> tuple[list[R], BaseException | None]:
    """``step`` of each item on up to ``workers`` threads, the results in the items' order.

    Each worker takes the next item when it is free. The first ``stop_on`` error (or a call refused at the
    ``WaveGate``) stops new items from starting; running ones finish and every finished result is kept (in
    order). Returns the results and that error (``None`` when every item ran). Any other error is raised once
    the running items have finished. ``workers`` ≤ 1 runs in the calling thread. The workers' teacher calls
    pass one ``WaveGate`` (a local teacher that decodes replies together sends them in waves).
    """
    if workers <= 1:
        return sequential_map(items, step, stop_on)
    source, lock, gate = enumerate(items), threading.Lock(), WaveGate(workers)
    finished: dict[int, R] = {}
    ended: dict[str, BaseException] = {}  # "stop" and "failure", the first of each

    def work() -> None:
        try:
            while True:
                with lock:
                    nxt = None if ended or gate.refused is not None else next(source, None)
                if nxt is None:
                    return
                try:
                    with item_calls(gate, nxt[0]):
                        result = step(nxt[1])
                except BaseException as error:  # noqa: BLE001 - a stop is returned, a failure re-raised below
                    with lock:
                        ended.setdefault("stop" if isinstance(error, stop_on) else "failure", error)
                    continue
                with lock:
                    finished[nxt[0]] = result
        finally:
            gate.leave()

    threads = [threading.Thread(target=work, name=f"teacher-{n}", daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if "failure" in ended:
        raise ended["failure"]
    return [finished[i] for i in sorted(finished)], ended.get("stop")


class Pacer:
    """The moment before which no worker of a teacher may send: a rate limit seen by one pauses all."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._clock, self._sleep = clock, sleep
        self.pauses = 0

    def pause(self, seconds: float) -> None:
        """No worker sends for ``seconds`` from now (a longer pause already set is kept)."""
        with self._lock:
            self._resume_at = max(self._resume_at, self._clock() + max(seconds, 0.0))
            self.pauses += 1

    def wait(self) -> float:
        """Sleep until the pause ends; returns the seconds slept."""
        slept = 0.0
        while True:
            with self._lock:
                left = self._resume_at - self._clock()
            if left <= 0:
                return slept
            self._sleep(left)
            slept += left


class Reservations:
    """Tokens reserved by calls in flight, per budget stage; a call checks the budget and reserves under ``lock``
    and, when it does not fit while other calls are in flight, waits for one of them to settle (``wait``)."""

    def __init__(self):
        self.lock = threading.Condition(threading.RLock())
        self._by_stage: dict[str, int] = {}

    def add(self, stage: str, tokens: int) -> None:
        with self.lock:
            self._by_stage[stage] = self._by_stage.get(stage, 0) + tokens
            if tokens < 0:
                self.lock.notify_all()

    def held(self, stage: str) -> tuple[int, int]:
        """Tokens reserved in all stages and in ``stage``."""
        with self.lock:
            return sum(self._by_stage.values()), self._by_stage.get(stage, 0)

    def wait(self) -> bool:
        """Wait (holding ``lock``) for a call in flight to settle; ``False`` at once when none is in flight."""
        if not any(self._by_stage.values()):
            return False
        self.lock.wait(timeout=1.0)
        return True


class KeyedLocks:
    """One lock per key while some thread holds it: identical requests in flight together are sent once (the
    second waits, then finds the first one's reply in the cache), as in a sequential run. Calls sent in waves
    (``waves``) do not take it: a call waiting here would hold its wave back, so both are sent."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._held.get(key, (threading.Lock(), 0))
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)


def retry_after(error: BaseException) -> float | None:
    """The seconds a provider's ``Retry-After`` header asks for, when the error carries one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or getattr(error, "litellm_response_headers", None) or {}
    try:
        value = headers.get("retry-after") or headers.get("Retry-After")
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None
