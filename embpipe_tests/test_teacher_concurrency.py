"""Concurrent teacher calls: the same tables as a sequential run, a budget no set of calls in flight can pass, and a
rate limit that pauses every worker."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from embpipe.core.embgen.entities import extract_entities
from embpipe.core.lmar.triplet_labels import label_triplets
from embpipe.core.synthesis.questions import generate_single_chunk_questions
from embpipe.core.training.mining import MiningParams, judge_candidates
from embpipe.core.training.mining_steps import teacher_judge
from embpipe.llm.budget import BudgetStop
from embpipe.llm.concurrency import Pacer, ordered_map
from embpipe.llm.latency_server import LatencyServer
from embpipe_tests.conftest import GRAPH_SAMPLE_DIR, make_teacher


def sample_chunks(count: int) -> pd.DataFrame:
    """Paragraphs of the sample technotes as a chunk table."""
    rows = []
    for path in sorted(GRAPH_SAMPLE_DIR.iterdir()):
        title, *paragraphs = [p.strip() for p in path.read_text().split("\n\n") if len(p.strip()) > 80] or [""]
        rows += [(f"{path.stem}-c{i}", path.stem, path.stem, p) for i, p in enumerate(paragraphs)]
    return pd.DataFrame(rows[:count], columns=["chunk_id", "doc_id", "title", "text"])


def test_results_keep_the_items_order_whatever_finishes_first():
    def step(n: int) -> int:
        time.sleep(0.02 * (8 - n))  # the first items finish last
        return n * n

    assert ordered_map(range(8), step, workers=8, stop_on=KeyError) == ([n * n for n in range(8)], None)


def test_a_stop_starts_no_new_item_and_keeps_what_finished():
    started: list[int] = []
    lock = threading.Lock()

    def step(n: int) -> int:
        with lock:
            started.append(n)
        if n == 5:
            raise KeyError("budget spent")
        time.sleep(0.01)
        return n

    results, stopped = ordered_map(range(100), step, workers=4, stop_on=KeyError)
    assert isinstance(stopped, KeyError) and 5 not in results
    assert results == sorted(results) and set(range(5)) <= set(results)
    assert max(started) < 5 + 4  # at most the items already running when the stop came


def test_concurrent_teacher_stages_write_the_same_tables_as_sequential_ones(tmp_path):
    chunks = sample_chunks(8)
    texts = chunks["text"].tolist()
    triples = [(i, (i + 1) % len(texts), (i + 5) % len(texts)) for i in range(len(texts))]
    queries = {f"q{i}": f"What about {' '.join(t.split()[:6])}?" for i, t in enumerate(texts)}
    corpus = dict(zip(chunks["chunk_id"], texts, strict=True))
    to_ask = [(q, c) for q in list(queries)[:3] for c in list(corpus)[:3]]

    def tables(concurrency: int) -> list:
        teacher = make_teacher(tmp_path / str(concurrency), "fake/slow", max_concurrency=concurrency)
        assert teacher.concurrency == concurrency
        questions, stats = generate_single_chunk_questions(teacher, chunks, 2)
        entities, failed = extract_entities(teacher, chunks, 3, BudgetStop())
        triplets, verdicts = label_triplets(teacher, triples, chunks["chunk_id"].tolist(), texts, 0.1, "pointwise",
                                            BudgetStop())  # fmt: skip
        judge = teacher_judge(teacher, queries, corpus, BudgetStop())
        judged, stop = judge_candidates(to_ask, judge, 1, MiningParams(), workers=teacher.concurrency)
        return [questions, (stats.attempted, stats.failed), entities, failed, triplets, verdicts, judged, stop]

    sequential, concurrent = tables(1), tables(8)
    for one, other in zip(sequential, concurrent, strict=True):
        if isinstance(one, pd.DataFrame):
            pd.testing.assert_frame_equal(one, other)
        else:
            assert one == other
    assert len(sequential[0]) > 8 and len(sequential[4]) > 0 and len(sequential[6]) == len(to_ask)


@pytest.mark.parametrize("budget", [20_000, 40_000])
def test_sixteen_calls_in_flight_never_pass_the_token_budget(tmp_path, budget):
    chunks = sample_chunks(100)

    def run(concurrency: int):
        with LatencyServer(latency_s=0.05) as server:
            teacher = make_teacher(tmp_path / str(concurrency), "openai/stand-in", api_base=server.url,
                                   api_key="unused", token_budget=budget, max_concurrency=concurrency)  # fmt: skip
            _, stats = generate_single_chunk_questions(teacher, chunks, 2)
        return stats, sum(u.prompt_tokens + u.completion_tokens for u in teacher.store.usage("run-1"))

    (sequential, _), (concurrent, spent) = run(1), run(16)
    assert concurrent.budget_exhausted and 16 < concurrent.attempted < len(chunks)
    assert spent <= budget * 0.4  # the question stage's share of the run's budget
    assert concurrent.attempted >= sequential.attempted - 1  # waiting for calls in flight loses (almost) nothing


def test_a_rate_limit_seen_by_one_worker_pauses_every_worker(tmp_path):
    chunks = sample_chunks(24)
    with LatencyServer(latency_s=0.05, storm_s=1.0) as server:
        teacher = make_teacher(tmp_path, "openai/stand-in", api_base=server.url, api_key="unused",
                               max_concurrency=8, backoff_s=0.05)  # fmt: skip
        questions, stats = generate_single_chunk_questions(teacher, chunks, 2)
    arrivals = server.log.arrivals
    storm_end = server.first_request + 1.0
    assert stats.failed == 0 and stats.attempted == len(chunks)  # own backoff alone (0.05 s, ×2) would give up
    assert server.log.count(429) <= 8  # each worker's first request at most; nobody retried into the storm
    assert all(a.at >= storm_end for a in arrivals if a.status == 200)


def test_a_pause_holds_every_waiter_until_it_ends():
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    pacer.pause(2.0)
    pacer.pause(0.5)  # a shorter pause never cuts a longer one short
    assert pacer.wait() == pytest.approx(2.0) and pacer.wait() == 0.0


def test_identical_requests_in_flight_together_are_sent_once(tmp_path):
    messages = [{"role": "user", "content": "Write 2 questions. PASSAGE: Fan 3 failed on node 7."}]
    with LatencyServer(latency_s=0.2) as server:
        teacher = make_teacher(tmp_path, "openai/stand-in", api_base=server.url, api_key="unused", max_concurrency=8)
        replies, _ = ordered_map(range(8), lambda _: teacher.chat("synthetic_queries", messages), 8, KeyError)
    assert server.log.count(200) == 1 and len({r.text for r in replies}) == 1
    assert sorted(r.cached for r in replies) == [False] + [True] * 7


def test_many_openers_of_a_new_ledger_file_all_succeed(tmp_path):
    from embpipe.llm.teacher_store import TeacherStore

    for attempt in range(20):  # the race on adding the newer columns showed on about half of new files
        path = tmp_path / f"teacher-{attempt}.sqlite"
        stores, _ = ordered_map(range(12), lambda _, path=path: TeacherStore(path), 12, KeyError)
        assert len(stores) == 12 and all(s.usage() == [] for s in stores)
