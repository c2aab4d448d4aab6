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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

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

    The first ``stop_on`` error stops new items from starting; running ones finish and every finished result
    is kept (in order). Returns the results and that error (``None`` when every item ran). Any other error is
    raised once the running items have finished. ``workers`` ≤ 1 runs in the calling thread.
    """
    if workers <= 1:
        return sequential_map(items, step, stop_on)
    source = enumerate(items)
    finished: dict[int, R] = {}
    stopped: BaseException | None = None
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher") as pool:
        running: dict[Future, int] = {}
        while True:
            while stopped is None and failure is None and len(running) < workers:
                nxt = next(source, None)
                if nxt is None:
                    break
                running[pool.submit(step, nxt[1])] = nxt[0]
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                try:
                    finished[index] = future.result()
                except stop_on as error:
                    stopped = stopped or error
                except BaseException as error:  # noqa: BLE001 - re-raised below, after the running items end
                    failure = failure or error
    if failure is not None:
        raise failure
    return [finished[i] for i in sorted(finished)], stopped


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
    second waits, then finds the first one's reply in the cache), as in a sequential run."""

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
