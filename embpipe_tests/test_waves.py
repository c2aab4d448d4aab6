"""Waves: a stage's teacher calls leave the gate in the items' order whatever the threads' timing, the server's
queue decodes each wave as one batch in that order, and a parallel local teacher gives a fresh run the same
replies and judgements as another fresh run."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request

import pytest

from embpipe.llm.batch_queue import BatchQueue
from embpipe.llm.concurrency import ordered_map
from embpipe.llm.model_weights import model_path
from embpipe.llm.waves import Seat, WaveGate, item_calls, next_call


def gated_waves(seed: int, budget: int | None = None) -> tuple[list[list[tuple[int, int]]], list[int]]:
    """The waves (call orders by wave) 4 workers send for 10 items of 1–2 calls each, the threads sleeping at
    random (``seed``) before every call; with ``budget``, each call reserves 1 and the budget refuses the rest."""
    rng, lock, reserved = random.Random(seed), threading.Lock(), [0]
    waves: dict[str, list[tuple[int, int]]] = {}

    def admit() -> int:
        if budget is not None and reserved[0] >= budget:
            raise KeyError("budget spent")
        reserved[0] += 1
        return 1

    def send(_: int, seat: Seat, order: tuple[int, int]) -> None:
        with lock:
            waves.setdefault(seat.wave, [None] * seat.size)[seat.position] = order

    def step(item: int) -> int:
        for _ in range(1 + item % 2):  # odd items make a second call, as a retry does
            with lock:
                pause = rng.uniform(0, 0.02)
            time.sleep(pause)
            gate, order = next_call()
            gate.call(order, admit, lambda admitted, seat, order=order: send(admitted, seat, order))
        return item

    results, _ = ordered_map(range(10), step, workers=4, stop_on=KeyError)
    ordered = sorted(waves.values(), key=lambda members: members[0])
    return ordered, results


def test_the_waves_are_the_same_whatever_the_timing():
    first, results = gated_waves(seed=1)
    assert results == list(range(10))
    assert all(members == sorted(members) for members in first)  # positions follow the items' order
    assert all(len(members) <= 4 for members in first) and len(first[0]) == 4
    assert sorted(order for members in first for order in members) == sorted(
        (item, call) for item in range(10) for call in range(1 + item % 2)
    )
    for seed in (2, 3, 4):
        assert gated_waves(seed)[0] == first


def test_a_refused_call_stops_the_stage_at_the_same_item_whatever_the_timing():
    outcomes = {repr(gated_waves(seed, budget=7)) for seed in (1, 2, 3)}
    assert len(outcomes) == 1
    waves, results = gated_waves(5, budget=7)
    assert sum(len(members) for members in waves) == 7
    assert results == sorted(results) and len(results) < 10  # what finished is kept, in order


def test_calls_outside_a_stage_map_pass_no_gate():
    assert next_call() is None
    gate = WaveGate(workers=1)
    with item_calls(gate, 7):
        assert next_call() == (gate, (7, 0)) and next_call() == (gate, (7, 1))
    assert next_call() is None


def test_a_wave_is_answered_in_seat_order_in_batches_of_max_size_and_a_loose_item_waits_for_it():
    batches: list[list[str]] = []

    def answer(items: list[str]) -> list[str]:
        batches.append(items)
        return [item.upper() for item in items]

    queue = BatchQueue(answer, max_size=2, gather_s=0.01)
    results: dict[str, str] = {}
    arrivals = [("c", Seat("w", 3, 2)), ("x", None), ("a", Seat("w", 3, 0)), ("b", Seat("w", 3, 1))]
    threads = []
    for item, seat in arrivals:  # out of order, with a loose item among them, a little apart
        threads.append(threading.Thread(target=lambda i=item, s=seat: results.__setitem__(i, queue.submit(i, s))))
        threads[-1].start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    queue.close()
    assert results == {"a": "A", "b": "B", "c": "C", "x": "X"}
    assert batches == [["a", "b"], ["c"], ["x"]]
    assert queue.answered == {"waves": 1, "loose_batches": 1}


@pytest.mark.local_llm
@pytest.mark.skipif(not model_path("smollm2-135m").is_file(), reason="run scripts/install.sh to fetch SmolLM2")
def test_fresh_runs_of_a_parallel_local_teacher_write_the_same_replies_and_judgements_in_waves(tmp_path):
    from embpipe.core.synthesis.question_prompts import question_messages, question_schema
    from embpipe.llm.teacher import Teacher, TeacherSettings
    from embpipe.llm.teacher_store import TeacherStore

    passages = [
        "Alert H-052 means chassis fan 3 is slow.",
        "Error 0x51: the catalog volume is full.",
        "Rotate the admin console's TLS certificate every 90 days.",
        "KV-0113 restores tape at 40 MB/s.",
        "Licence key LK-9 expires after the 7.2 upgrade.",
        "Set RETRY_MAX=5 in agent.cfg to retry.",
    ]

    def fresh_run(name: str, seed: int) -> tuple[list[tuple[str, list]], dict]:
        settings = TeacherSettings(model="local/smollm2-135m", local_parallel=3)
        teacher = Teacher(settings, TeacherStore(tmp_path / f"{name}.sqlite"), name)
        teacher.local_endpoint().stop()  # a fresh server, as a fresh machine has
        rng = random.Random(seed)
        delays = [rng.uniform(0, 0.3) for _ in passages]

        def ask(index: int) -> tuple[str, list]:
            time.sleep(delays[index])  # without waves these calls would share batches by timing
            messages = question_messages(f"KV-{index}", passages[index], 2)
            reply = teacher.chat("questions", messages, json_schema=question_schema(2), max_tokens=64)
            judge = [{"role": "user", "content": f"Is this a question? Answer yes or no.\n{reply.text}"}]
            return reply.text, teacher.chat("judge", judge, max_tokens=1, logprobs=5).logprobs

        texts, _ = ordered_map(range(len(passages)), ask, workers=3, stop_on=KeyError)
        port = json.loads(teacher.local_endpoint().state_path.read_text())["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            health = json.loads(response.read())
        teacher.local_endpoint().stop()
        return texts, health

    first, health = fresh_run("a", seed=1)
    assert health["waves"] == 4 and health["loose_batches"] == 0  # 3 workers: 2 waves of replies, 2 of judgements
    second, _ = fresh_run("b", seed=2)
    assert second == first
