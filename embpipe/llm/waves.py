"""Waves: the teacher calls a stage's workers make, sent together in an order that does not depend on timing.

A local teacher decoding several replies together (llama.cpp parallel sequences) computes each reply with
arithmetic that depends a little on which requests share its batch. When the batch is whatever arrived within
a few milliseconds, a fresh run's replies can differ from another fresh run's. ``WaveGate`` makes the batches
a function of the items alone: a worker's call waits at the gate until every live worker of the stage is
either waiting there too or finished, then all the waiting calls leave as one *wave*, in the items' order
(item index, then the call's number within its item). Calls are admitted in that order too (``admit``
reserves the call's tokens), so which calls a token budget refuses does not depend on timing either; after a
refusal no later call is admitted, as a sequential stage stops at its first refused call. Each admitted call
carries its ``Seat`` (the wave's id and size, and its position) to the server, which waits for the whole wave
and decodes it in seat order.

Example:
    >>> gate = WaveGate(workers=1)
    >>> gate.call((0, 0), admit=lambda: "tokens", send=lambda admitted, seat: (admitted, seat.size))
    ('tokens', 1)
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

A = TypeVar("A")
R = TypeVar("R")
WAVE_FIELD = "embpipe_wave"  # the request body's field that carries a call's seat to the local teacher server


@dataclass(frozen=True)
class Seat:
    """A call's place in its wave: the wave's id and size, and the call's position in it."""

    wave: str
    size: int
    position: int

    def body(self) -> dict[str, Any]:
        """The seat as the request body's ``WAVE_FIELD``."""
        return {"id": self.wave, "size": self.size, "position": self.position}


@dataclass
class Waiting:
    """A call waiting at the gate: its order, how to admit it, and (once its wave left) its seat or error."""

    order: tuple[int, ...]
    admit: Callable[[], Any]
    admitted: Any = None
    seat: Seat | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class WaveGate:
    """Holds each call of ``workers`` workers until every live worker waits or has finished (see the module)."""

    def __init__(self, workers: int):
        self._lock = threading.Lock()
        self._live = workers
        self._waiting: list[Waiting] = []
        self.refused: BaseException | None = None  # what refused a call: no later call is admitted

    def leave(self) -> None:
        """A worker finished: the calls waiting no longer wait for it."""
        with self._lock:
            self._live -= 1
            self._release_when_full()

    def call(self, order: tuple[int, ...], admit: Callable[[], A], send: Callable[[A, Seat], R]) -> R:
        """``send(admit(), seat)`` once this call's wave leaves; raises what ``admit`` raised, here or (as a
        new error of its type and message) for every call ordered after a refused one, in any later wave too."""
        waiting = Waiting(order, admit)
        with self._lock:
            self._waiting.append(waiting)
            self._release_when_full()
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        return send(waiting.admitted, waiting.seat)

    def _release_when_full(self) -> None:
        """Send the waiting calls as one wave once every live worker waits (holding ``_lock``)."""
        if not self._waiting or len(self._waiting) < self._live:
            return
        members, self._waiting = sorted(self._waiting, key=lambda w: w.order), []
        admitted: list[Waiting] = []
        for waiting in members:
            if self.refused is not None:
                waiting.error = type(self.refused)(*self.refused.args)
                continue
            try:
                waiting.admitted = waiting.admit()
                admitted.append(waiting)
            except BaseException as error:  # noqa: BLE001 - raised in the waiting call's own thread
                waiting.error, self.refused = error, error
        wave = uuid.uuid4().hex[:12]
        for position, waiting in enumerate(admitted):
            waiting.seat = Seat(wave, len(admitted), position)
        for waiting in members:
            waiting.done.set()


_current = threading.local()


@contextmanager
def item_calls(gate: WaveGate | None, index: int) -> Iterator[None]:
    """Within this block the calling thread's teacher calls belong to item ``index`` and pass ``gate``."""
    _current.gate, _current.order = gate, [index, 0]
    try:
        yield
    finally:
        _current.gate = None


def next_call() -> tuple[WaveGate, tuple[int, int]] | None:
    """The gate this thread's next call passes and the call's order (item, call number), or ``None``."""
    gate = getattr(_current, "gate", None)
    if gate is None:
        return None
    index, calls = _current.order
    _current.order = [index, calls + 1]
    return gate, (index, calls)
