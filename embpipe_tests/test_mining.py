"""Hard negatives by the margin rule, the student–teacher round loop, and the teacher's relevance judge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embpipe.core.training.mining import (
    Label,
    MiningParams,
    StopMining,
    candidates_to_judge,
    earlier_judgements,
    run_mining,
)
from embpipe.core.training.negatives import NegativeParams, margin_negatives, margin_threshold, mine_hard_negatives
from embpipe.llm.judge import judge_relevance, yes_probability
from embpipe_tests.conftest import make_teacher


def test_margin_rule_keeps_only_candidates_below_95_percent_of_the_weakest_positive():
    ranked = ["p1", "near", "edge", "n1", "n2", "n3"]
    scores = [0.90, 0.78, 0.76, 0.75, 0.50, 0.10]
    # weakest positive 0.8 → threshold 0.76: "near" (0.78) and "edge" (0.76, not strictly below) are unsafe
    kept = margin_negatives(ranked, scores, [0.9, 0.8], {"p1"}, margin=0.95, count=2)
    assert kept == [("n1", 0.75), ("n2", 0.5)]
    assert margin_threshold(0.8, 0.95) == pytest.approx(0.76)
    assert margin_threshold(-0.2, 0.95) == pytest.approx(-0.21)  # below a negative score too


def unit(*rows: list[float]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_positives_and_copies_of_their_text_are_never_negatives():
    chunk_ids = ["pos", "copy", "close", "far1", "far2"]
    texts = ["Fan 3 failed.", "Fan 3  failed.", "Fan 2 failed.", "SMTP login", "Disk full"]
    chunks = unit([1, 0, 0], [1, 0, 0], [0.99, 0.14, 0], [0.6, 0.8, 0], [0.3, 0, 0.95])
    query = unit([0.95, 0.3, 0.1])
    (mined,) = mine_hard_negatives(query, chunks, chunk_ids, texts, [["pos"]], NegativeParams(count=4, depth=10))
    assert "pos" not in mined.chunk_ids and "copy" not in mined.chunk_ids
    assert all(score < 0.95 * mined.weakest_positive for score in mined.scores)
    assert mined.scores == sorted(mined.scores, reverse=True) and mined.chunk_ids
    assert mined.threshold == pytest.approx(0.95 * mined.weakest_positive)


def test_other_chunks_of_a_positive_document_are_never_negatives_unless_allowed():
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    chunks = np.array([[0.9, 0.436], [0.8, 0.6], [0.7, 0.714], [0.6, 0.8]], dtype=np.float32)
    ids, documents = ["pos", "sibling", "other", "far"], ["d1", "d1", "d2", "d3"]
    texts = ["a", "b", "c", "d"]
    (kept,) = mine_hard_negatives(
        query, chunks, ids, texts, [["pos"]], NegativeParams(count=4), chunk_documents=documents
    )
    assert kept.chunk_ids == ["other", "far"]
    allowed = NegativeParams(count=4, exclude_same_document=False)
    (kept,) = mine_hard_negatives(query, chunks, ids, texts, [["pos"]], allowed, chunk_documents=documents)
    assert kept.chunk_ids == ["sibling", "other", "far"]


def test_only_unlabelled_unjudged_top_k_candidates_are_judged():
    labels = [Label("q1", "a", "positive", "synthetic", 0), Label("q1", "b", "negative", "margin", 0)]
    judged = [Label("q1", "c", "uncertain", "teacher", 1, 0.5)]
    pairs = candidates_to_judge({"q1": ["a", "b", "c", "d", "e"], "q2": ["a"]}, labels, judged, top_k=4)
    assert pairs == [("q1", "d"), ("q2", "a")]


def scripted_mining(scores: list[float], verdicts: dict[str, float], params: MiningParams):
    """Run the loop with students whose validation scores follow ``scores``."""
    trained: list[int] = []

    def train_student(labels):
        trained.append(len(labels))
        return f"student-{len(trained)}", scores[len(trained) - 1]

    def retrieve(student):
        return {"q1": ["pos", "x", "y", "z"]}

    start = [Label("q1", "pos", "positive", "synthetic", 0)]
    outcome = run_mining(start, train_student, retrieve, lambda q, c: verdicts.get(c), params)
    return outcome, trained


def test_judged_candidates_become_positives_negatives_or_uncertain():
    outcome, _ = scripted_mining([0.5], {"x": 0.9, "y": 0.1, "z": 0.5}, MiningParams(rounds=1, top_k=4))
    roles = {label.chunk_id: label.role for label in outcome.labels}
    assert roles == {"pos": "positive", "x": "positive", "y": "negative"}  # z stays out of training
    assert {j.chunk_id: j.role for j in outcome.judgements}["z"] == "uncertain"
    assert outcome.rounds[0].new_positives == 1 and outcome.rounds[0].new_negatives == 1


def test_progress_counts_each_round_s_judgements_against_what_the_round_asks():
    calls = []
    run_mining(
        [Label("q1", "pos", "positive", "synthetic", 0)],
        lambda labels: ("s", 0.5),
        lambda s: {"q1": ["pos", "x", "y", "z"]},
        lambda q, c: 0.5,
        MiningParams(rounds=1, top_k=4, max_judgements_per_round=2),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 2), (2, 2)]


def test_round_loop_stops_on_a_validation_plateau_and_keeps_the_best_labels():
    outcome, trained = scripted_mining([0.50, 0.60, 0.60, 0.9], {"x": 0.9, "y": 0.1}, MiningParams(rounds=4, top_k=4))
    assert [r.round for r in outcome.rounds] == [1, 2, 3] and outcome.rounds[-1].stopped == "plateau"
    assert len(trained) == 3  # the fourth student is never trained
    assert outcome.best_round == 2
    assert len(outcome.labels) == 3  # the labels that trained round 2's student


def test_a_judge_that_stops_ends_mining_and_keeps_earlier_judgements():
    calls = []

    def judge(query_id, chunk_id):
        calls.append(chunk_id)
        if len(calls) > 1:
            raise StopMining("budget")
        return 0.95

    outcome = run_mining(
        [Label("q1", "pos", "positive", "synthetic", 0)],
        lambda labels: ("s", 0.5),
        lambda s: {"q1": ["pos", "x", "y"]},
        judge,
        MiningParams(rounds=3, top_k=3),
    )
    assert [label.chunk_id for label in outcome.judgements] == ["x"]
    assert len(outcome.rounds) == 1 and outcome.rounds[0].stopped.startswith("stopped")


def test_settled_queries_keep_earlier_verdicts_and_only_new_queries_are_judged():
    judged = []
    carried = [Label("q1", "x", "positive", "teacher", 1, 0.9), Label("q1", "y", "uncertain", "teacher", 1, 0.5)]
    outcome = run_mining(
        [Label("q1", "pos", "positive", "synthetic", 0), Label("q2", "pos2", "positive", "synthetic", 0)],
        lambda labels: ("s", 0.5),
        lambda s: {"q1": ["pos", "z", "w"], "q2": ["pos2", "v"]},
        lambda q, c: judged.append((q, c)) or 0.1,
        MiningParams(rounds=1, top_k=3),
        carried=carried,
        settled=frozenset({"q1"}),
    )
    assert judged == [("q2", "v")]  # q1's new candidates z and w are not paid for
    used = {(label.query_id, label.chunk_id): label.role for label in outcome.labels}
    assert used[("q1", "x")] == "positive" and ("q1", "y") not in used and used[("q2", "v")] == "negative"
    assert len(outcome.judgements) == 3


def test_earlier_judgements_keep_only_still_valid_training_labels():
    previous = pd.DataFrame(
        {
            "query_id": ["q1", "q1", "q1", "q2", "gone", "q1"],
            "chunk_id": ["pos", "x", "changed", "y", "z", "late"],
            "doc_id": ["d"] * 6,
            "role": ["positive", "negative", "positive", "uncertain", "positive", "positive"],
            "source": ["synthetic", "teacher", "teacher", "teacher", "teacher", "teacher"],
            "round": [0, 1, 1, 1, 1, 2],
            "score": [float("nan"), 0.1, 0.9, 0.5, 0.95, 0.9],
            "used": [True, True, True, False, True, False],
        }
    )
    carried, settled = earlier_judgements(previous, {"q1", "q2", "q3"}, {"pos", "x", "y", "z", "late"})
    assert settled == {"q1", "q2"}  # q3 is new, "gone" left the training split
    # the uncertain verdict and round 2's judgement (after the best round) were not trained on: never carried
    assert [(label.query_id, label.chunk_id, label.role) for label in carried] == [("q1", "x", "negative")]


def test_judge_reads_p_yes_from_log_probabilities(tmp_path):
    teacher = make_teacher(tmp_path)
    relevant = judge_relevance(teacher, "judge", "1", "What about fan H-052 chassis?", "Alert H-052: chassis fan slow.")
    unrelated = judge_relevance(teacher, "judge", "2", "What about SMTP relay login?", "Alert H-052: chassis fan slow.")
    assert 0.5 < relevant < 1.0 and 0.0 < unrelated < 0.5  # probabilities, not 0/1 words
    again = judge_relevance(teacher, "judge", "1", "What about fan H-052 chassis?", "Alert H-052: chassis fan slow.")
    assert again == relevant and teacher.store.usage("run-1")[0].cached_calls == 1


def test_judge_falls_back_to_the_words_and_records_replies_without_a_verdict(tmp_path):
    assert yes_probability("Yes.", None) == 1.0 and yes_probability("no", []) == 0.0
    assert yes_probability("Maybe", None) is None
    teacher = make_teacher(tmp_path, model="fake/empty", max_retries=1)
    assert judge_relevance(teacher, "judge", "item-7", "What about fans?", "Fan 3.") is None
    ((_, item, reason),) = teacher.store.failures("run-1", "judge")
    assert item == "item-7" and "verdict" in reason


def test_faiss_and_exact_search_mine_the_same_negatives():
    from embpipe.core.evaluation.retrieval import SearchBackend, faiss_available

    if not faiss_available():
        pytest.skip("faiss is not installed")
    rng = np.random.default_rng(0)
    chunks = unit(*rng.normal(size=(200, 16)).tolist())
    queries = unit(*rng.normal(size=(10, 16)).tolist())
    ids = [f"c{i}" for i in range(200)]
    positives = [[f"c{i}", f"c{i + 50}"] for i in range(10)]
    args = (queries, chunks, ids, ids, positives, NegativeParams(count=4, depth=30))
    exact = mine_hard_negatives(*args, backend=SearchBackend.EXACT)
    with_faiss = mine_hard_negatives(*args, backend=SearchBackend.FAISS)
    assert [m.chunk_ids for m in exact] == [m.chunk_ids for m in with_faiss]
    assert sum(len(m.chunk_ids) for m in exact) > 0


@pytest.mark.slow  # two mining runs with real students
def test_editing_one_document_changes_no_other_document_s_training_rows(tmp_path, data_dir):
    """Judgement reuse only saves payment: after one document is edited, the other documents' queries keep
    exactly their positives and teacher-judged labels (none of the edited document's chunks named). Margin
    negatives are recomputed from the current corpus every run, so a changed chunk may enter or leave them."""
    import shutil

    from dagster import AssetKey

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.orchestration.runner import run_stale
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    folder = tmp_path / "docs"
    shutil.copytree(GRAPH_SAMPLE_DIR, folder)
    resources = {
        **default_resources(),
        "teacher": TeacherResource(model="fake/teacher"),
        "methods": MethodsResource(lmar=False, mining=True),
    }
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(folder)}},
            "synthetic_queries": {"config": {"max_chunks": 24}},
            "passage_pairs": {"config": {"max_pairs": 8}},
            "mining_rounds": {"config": {"rounds": 1, "student_epochs": 1, "top_k": 3}},
        }
    }
    instance = dagster_instance()

    def training_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
        run_stale(all_assets, all_checks, resources, run_config, instance, targets={AssetKey("mining_rounds")})
        labels = pd.read_parquet(data_dir / "assets" / "mining_rounds.parquet")
        chunks = pd.read_parquet(data_dir / "assets" / "chunks.parquet")
        return labels[labels["used"]], chunks

    before, chunks_before = training_rows()
    edited = sorted(folder.iterdir())[3]
    edited.write_text(edited.read_text() + "\n\nAfter firmware 7.2 the alert also appears when fan 4 slows down.\n")
    after, chunks_after = training_rows()

    documents = pd.read_parquet(data_dir / "assets" / "documents.parquet")
    edited_doc = documents.loc[documents["path"].str.endswith(edited.name), "doc_id"].item()
    edited_chunks = set(chunks_before.loc[chunks_before.doc_id == edited_doc, "chunk_id"]) | set(
        chunks_after.loc[chunks_after.doc_id == edited_doc, "chunk_id"]
    )
    doc_of_query = dict(zip(before["query_id"], before["doc_id"], strict=False))  # a positive's document

    def others(rows: pd.DataFrame) -> set[tuple]:
        rows = rows[~rows["chunk_id"].isin(edited_chunks) & (rows["source"] != "margin")]
        rows = rows[rows["query_id"].map(lambda q: doc_of_query.get(q) != edited_doc)]
        return set(rows[["query_id", "chunk_id", "role", "source"]].itertuples(index=False, name=None))

    assert len(others(before)) > 20 and (before["source"] == "teacher").any()
    assert others(after) == others(before)


@pytest.mark.slow  # the pipeline up to mining_rounds with the fake teacher
def test_with_mining_switched_off_no_judgement_is_paid_and_switching_it_on_makes_the_stage_stale(data_dir):
    from dagster import AssetKey

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.orchestration.runner import run_stale, switches_changed
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    teacher = TeacherResource(model="fake/teacher", token_budget=20_000)
    resources = {**default_resources(), "teacher": teacher, "methods": MethodsResource(lmar=False, mining=False)}
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}},
            "synthetic_queries": {"config": {"max_chunks": 12}},
            "mining_rounds": {"config": {"rounds": 1, "student_epochs": 1, "top_k": 3}},
        }
    }
    instance = dagster_instance()
    outcome = run_stale(all_assets, all_checks, resources, run_config, instance, targets={AssetKey("mining_rounds")})
    assert not outcome.failed
    store = teacher.store()
    stages = {u.stage for run_id in outcome.run_ids for u in store.usage(run_id)}
    assert "synthetic_queries" in stages and not {s for s in stages if s.startswith("mining")}
    labels = pd.read_parquet(data_dir / "assets" / "mining_rounds.parquet")
    assert len(labels) and set(labels["source"]) <= {"synthetic", "margin"}
    event = instance.get_latest_materialization_event(AssetKey("mining_rounds"))
    assert event.asset_materialization.metadata["mining"].value is False
    mining_asset = next(a for a in all_assets if AssetKey("mining_rounds") in a.keys)
    questions_asset = next(a for a in all_assets if AssetKey("synthetic_queries") in a.keys)
    switched_on = {**resources, "methods": MethodsResource(lmar=False, mining=True)}
    assert not switches_changed(instance, mining_asset, resources)
    assert switches_changed(instance, mining_asset, switched_on)  # the runner rebuilds it with the rounds
    assert switches_changed(instance, questions_asset, switched_on)  # and the questions, whose share shrinks
