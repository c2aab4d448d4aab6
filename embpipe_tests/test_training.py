"""Contrastive training: the loss by hand, weights reaching it, batches without duplicates, learning."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from embpipe.core.embedding import encode
from embpipe.core.training.base_comparison import BaseValidation, comparison_with_base
from embpipe.core.training.examples import document_examples, labelled_examples
from embpipe.core.training.interpolation import mix_with_base
from embpipe.core.training.losses import present_documents, weighted_info_nce
from embpipe.core.training.rows import TrainingExample, padded_negatives, training_dataset
from embpipe.core.training.trainer import (
    BASE_SCORE_FILE,
    TrainingParams,
    batch_loss,
    distinct_query_and_positive_batches,
    saved_base_validation,
    train_contrastive,
)
from embpipe.core.training.validation import chunk_documents, validation_scorer, validation_target


def test_info_nce_matches_hand_computation():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    documents = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    loss = weighted_info_nce(queries, documents, torch.tensor([1.0, 1.0]), scale=1.0)
    q0 = -np.log(np.exp(1.0) / (np.exp(1.0) + np.exp(0.6) + np.exp(0.0)))
    q1 = -np.log(np.exp(0.8) / (np.exp(0.0) + np.exp(0.8) + np.exp(1.0)))
    assert float(loss) == pytest.approx((q0 + q1) / 2, rel=1e-5)
    only_first = weighted_info_nce(queries, documents, torch.tensor([1.0, 0.0]), scale=1.0)
    assert float(only_first) == pytest.approx(q0, rel=1e-5)


def test_the_padding_mask_is_built_on_the_device_of_the_batch():
    """A GPU batch's mask must be on the GPU (torch.cat refuses mixed devices); the meta device stands in."""
    counts = torch.tensor([2.0, 0.0], device="meta")
    mask = present_documents(counts, 2)
    assert mask.device.type == "meta"
    assert present_documents(torch.tensor([2.0, 0.0]), 2).tolist() == [True, True, True, False, True, False]


def test_validator_scores_reach_the_loss(base_model):
    chunks = pd.DataFrame(
        {
            "chunk_id": ["c1", "c2"],
            "title": ["", ""],
            "text": ["Fan 3 failed on the appliance.", "Email alerts fail after relay change."],
        }
    )
    queries = pd.DataFrame(
        {"query_id": ["q1", "q2"], "text": ["fan alert H-052", "smtp 535 error"], "validator_score": [0.0, np.nan]}
    )
    examples = labelled_examples(label_table([("q1", "c1", "positive"), ("q2", "c2", "positive")]), queries, chunks, 4)
    assert [e.weight for e in examples] == [0.0, 1.0]
    with torch.no_grad():
        weighted = batch_loss(base_model, examples, scale=50.0)
        unweighted = batch_loss(base_model, [TrainingExample(e.query, e.positive) for e in examples], scale=50.0)
        q = F.normalize(torch.tensor(encode(base_model, [e.query for e in examples])), dim=-1)
        d = F.normalize(torch.tensor(encode(base_model, [e.positive for e in examples])), dim=-1)
        second_only = F.cross_entropy(50.0 * q[1:] @ d.T, torch.tensor([1]))
    assert float(weighted) == pytest.approx(float(second_only), rel=1e-3)
    assert float(weighted) != pytest.approx(float(unweighted), rel=1e-3)


def label_table(rows: list[tuple], source: str = "synthetic") -> pd.DataFrame:
    """A training-label table from (query, chunk, role[, source]) rows."""
    rows = [(*r, source) if len(r) == 3 else r for r in rows]
    return pd.DataFrame(rows, columns=["query_id", "chunk_id", "role", "source"]).assign(score=np.nan, used=True)


def test_multi_hop_queries_unroll_to_one_example_per_positive():
    chunks = pd.DataFrame({"chunk_id": ["a", "b"], "title": ["T", "T"], "text": ["one", "two"]})
    queries = pd.DataFrame({"query_id": ["q"], "text": ["q"], "validator_score": [0.5]})
    labels = label_table([("q", "a", "positive"), ("q", "b", "positive")])
    assert [(e.positive, e.weight) for e in labelled_examples(labels, queries, chunks, 4)] == [
        ("T\none", 0.5),
        ("T\ntwo", 0.5),
    ]


def test_examples_carry_teacher_negatives_before_margin_negatives_up_to_the_limit():
    chunks = pd.DataFrame({"chunk_id": list("pabcd"), "title": [""] * 5, "text": ["P", "A", "B", "C", "D"]})
    queries = pd.DataFrame({"query_id": ["q"], "text": ["question"], "validator_score": [np.nan]})
    labels = label_table(
        [
            ("q", "p", "positive", "synthetic"),
            ("q", "a", "negative", "margin"),
            ("q", "b", "negative", "margin"),
            ("q", "c", "negative", "teacher"),
            ("q", "d", "negative", "margin"),
        ]
    )
    (example,) = labelled_examples(labels, queries, chunks, 3)
    assert example.positive == "P" and example.negatives == ("C", "A", "B")


def test_document_examples_lift_labels_to_whole_documents_each_once():
    """A positive chunk's document becomes the positive; negatives are the other documents of its negative
    chunks, teacher-confirmed first, never a positive document and never one document twice."""
    documents = pd.DataFrame(
        {"doc_id": ["d1", "d2", "d3"], "title": ["Fans", "Mail", "Disks"], "text": ["F one", "M one", "D one"]}
    )
    queries = pd.DataFrame({"query_id": ["q"], "text": ["fan alarm"], "validator_score": [0.5]})
    rows = [
        ("q", "c1", "d1", "positive", "synthetic"),
        ("q", "c2", "d1", "negative", "margin"),  # another chunk of the positive's own document
        ("q", "c3", "d2", "negative", "margin"),
        ("q", "c4", "d2", "negative", "margin"),  # the same negative document again
        ("q", "c5", "d3", "negative", "teacher"),
    ]
    labels = pd.DataFrame(rows, columns=["query_id", "chunk_id", "doc_id", "role", "source"]).assign(score=np.nan)
    (example,) = document_examples(labels, queries, documents, 4)
    assert example.positive == "Fans\nF one"
    assert example.negatives == ("Disks\nD one", "Mail\nM one")
    assert example.weight == 0.5
    assert document_examples(labels, queries, documents, 1)[0].negatives == ("Disks\nD one",)


def test_the_trainer_s_batches_never_repeat_a_query_or_positive():
    examples = [TrainingExample(f"q{i}", f"p{i % 3}", (f"n{i % 2}",)) for i in range(9)]
    dataset = training_dataset(examples)
    sampler = distinct_query_and_positive_batches(
        dataset, batch_size=4, drop_last=False, valid_label_columns=["label"], generator=None, seed=0
    )
    batches = [[dataset[i] for i in batch] for batch in sampler]
    assert sorted(row["anchor"] for batch in batches for row in batch) == sorted(e.query for e in examples)
    for batch in batches:
        texts = [row[c] for row in batch for c in ("anchor", "positive")]
        assert len(texts) == len(set(texts))
    assert any(len({row["negative_1"] for row in batch}) < len(batch) for batch in batches)  # shared negatives meet


def test_padded_negatives_leave_the_loss_as_if_each_example_had_only_its_own(base_model):
    """The trainer's loss on fixed-width rows equals the loss of the variable-length batch it stands for."""
    from sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking import embed_columns

    from embpipe.core.training.losses import WeightedMultipleNegativesRankingLoss

    examples = [
        TrainingExample("fan alarm H-052", "Fan 3 failed on the appliance.", ("Disk 2 is degraded.",), 0.5),
        TrainingExample(
            "smtp 535 error",
            "Email alerts fail after the relay change.",
            ("The pool is read-only.", "Garbage collection is slow.", "SSO rejects the assertion."),
        ),
        TrainingExample("backup throttled", "Rebuilds are throttled to protect backups."),
    ]
    dataset = training_dataset(examples)
    columns = [c for c in dataset.column_names if c != "label"]
    features = [base_model.tokenize(dataset[c]) for c in columns]
    loss = WeightedMultipleNegativesRankingLoss(base_model, scale=20.0)
    model = copy.deepcopy(base_model).eval()
    loss.model = model
    with torch.no_grad():
        padded = loss.compute_loss_from_embeddings(embed_columns(model, features), torch.tensor(dataset["label"]))
        exact = batch_loss(model, examples, 20.0)
        unmasked = loss.compute_loss_from_embeddings(
            embed_columns(model, features), torch.tensor([e.weight for e in examples])
        )
    assert float(padded) == pytest.approx(float(exact), rel=1e-4)
    assert float(unmasked) != pytest.approx(float(exact), rel=1e-3)  # the repeats would have counted


def test_short_negative_lists_are_padded_to_fixed_columns_and_the_label_counts_the_real_ones():
    examples = [
        TrainingExample("q1", "p1", ("n1", "n2", "n3")),
        TrainingExample("q2", "p2", ("n4",)),
        TrainingExample("q3", "p3"),
    ]
    padded = padded_negatives(examples)
    assert padded[0] == ["n1", "n2", "n3"] and padded[1] == ["n4", "n4", "n4"]
    assert padded[2] == ["p3", "p3", "p3"]  # none of its own: its positive fills slots the loss leaves out
    dataset = training_dataset(examples)
    assert dataset.column_names == ["anchor", "positive", "negative_1", "negative_2", "negative_3", "label"]
    assert dataset["label"] == [[1.0, 3.0], [1.0, 1.0], [1.0, 0.0]]


PAIRS = [
    ("zq-101 alarm", "The chassis fan turns too slowly and must be replaced."),
    ("zq-102 alarm", "Email notifications fail because the relay rejects the login."),
    ("zq-103 alarm", "The pool switches to read-only when it is almost full."),
    ("zq-104 alarm", "Garbage collection spends days marking referenced chunks."),
    ("zq-105 alarm", "Single sign-on rejects the assertion because the audience changed."),
    ("zq-106 alarm", "Disk rebuilds are throttled to protect backup throughput."),
]


def recall_at_1(model) -> float:
    queries = encode(model, [q for q, _ in PAIRS])
    passages = encode(model, [p for _, p in PAIRS])
    return float(np.mean(np.argmax(queries @ passages.T, axis=1) == np.arange(len(PAIRS))))


def test_training_lowers_loss_and_raises_recall(base_model):
    model = copy.deepcopy(base_model)
    examples = [TrainingExample(q, p) for q, p in PAIRS]
    before = recall_at_1(model)
    with torch.no_grad():
        loss_before = float(batch_loss(model, examples, 20.0))
    outcome = train_contrastive(
        model, examples, recall_at_1, TrainingParams(epochs=8, batch_size=6, learning_rate=2e-4, scale=20.0, patience=8)
    )
    with torch.no_grad():
        loss_after = float(batch_loss(model, examples, 20.0))
    assert loss_after < loss_before
    assert outcome.base_score == before
    assert outcome.best_score > before and recall_at_1(model) == outcome.best_score


class Interrupted(Exception):
    pass


def stop_after_first_epoch(record) -> None:
    if record.epoch == 1:
        raise Interrupted


def test_an_interrupted_training_resumes_and_ends_like_an_uninterrupted_one(base_model, tmp_path):
    examples = [TrainingExample(q, p) for q, p in PAIRS]
    params = TrainingParams(epochs=3, batch_size=3, learning_rate=2e-4, scale=20.0, patience=3)
    always_better = lambda model: time.perf_counter()  # noqa: E731 - every epoch is the best so far
    whole = copy.deepcopy(base_model)
    train_contrastive(whole, examples, always_better, params)

    checkpoint = tmp_path / "checkpoints"
    with pytest.raises(Interrupted):
        train_contrastive(
            copy.deepcopy(base_model), examples, always_better, params, stop_after_first_epoch, checkpoint
        )
    resumed = copy.deepcopy(base_model)
    outcome = train_contrastive(resumed, examples, always_better, params, None, checkpoint)
    assert [r.epoch for r in outcome.history] == [1, 2, 3] and outcome.best_epoch == 3
    changed = [n for n, t in base_model.state_dict().items() if not torch.equal(t, resumed.state_dict()[n])]
    assert changed, "training changed no weight"
    for name, tensor in whole.state_dict().items():
        assert torch.allclose(tensor, resumed.state_dict()[name], atol=1e-5), name


def test_an_epoch_that_ties_the_base_on_validation_is_kept_and_one_below_it_is_not(base_model):
    examples = [TrainingExample(q, p) for q, p in PAIRS]
    params = TrainingParams(epochs=2, batch_size=3, learning_rate=2e-4, scale=20.0, patience=2)
    saturated = copy.deepcopy(base_model)
    tied = train_contrastive(saturated, examples, lambda model: 1.0, params)
    assert tied.best_epoch == 1 and tied.best_score == tied.base_score == 1.0
    assert any(not torch.equal(t, saturated.state_dict()[n]) for n, t in base_model.state_dict().items())

    scores = iter([1.0, 0.9, 0.8])  # the base, then two worse epochs
    worse = copy.deepcopy(base_model)
    kept = train_contrastive(worse, examples, lambda model: next(scores), params)
    assert kept.best_epoch == 0 and kept.best_score == 1.0
    assert all(torch.equal(t, worse.state_dict()[n]) for n, t in base_model.state_dict().items())


class PerQueryFigures:
    """A stand-in validation scorer with per-query figures: the base, each epoch, then the kept weights, in turn."""

    def __init__(self, *calls: list[float]) -> None:
        self.calls = iter(calls)

    def per_query(self, model) -> np.ndarray:
        return np.array(next(self.calls))

    def __call__(self, model) -> float:
        return float(self.per_query(model).mean())


def test_trained_weights_are_kept_unless_a_paired_test_finds_them_clearly_worse_than_the_base(base_model):
    examples = [TrainingExample(q, p) for q, p in PAIRS]
    params = TrainingParams(epochs=2, batch_size=3, learning_rate=2e-4, scale=20.0, patience=2)
    base, first, second = [1.0] * 20, [1.0] * 17 + [0.9] * 3, [1.0] * 18 + [0.9] * 2  # a little lower: chance
    noisy = copy.deepcopy(base_model)
    kept = train_contrastive(noisy, examples, PerQueryFigures(base, first, second, second), params)
    assert kept.best_epoch == 2 and kept.best_score == pytest.approx(0.99) and kept.base_score == 1.0  # the best
    assert any(not torch.equal(t, noisy.state_dict()[n]) for n, t in base_model.state_dict().items())

    lower = [0.8] * 20  # every query lower
    worse = copy.deepcopy(base_model)
    held_back = train_contrastive(worse, examples, PerQueryFigures(base, lower, lower, lower), params)
    assert held_back.best_epoch == 0 and held_back.best_score == 1.0
    assert all(torch.equal(t, worse.state_dict()[n]) for n, t in base_model.state_dict().items())


def test_the_check_s_comparison_reports_the_paired_difference_and_blocks_only_a_clear_drop():
    worse, figures = comparison_with_base(np.ones(20), np.r_[np.ones(19), [0.5]])
    assert not worse and figures["base_val_ndcg@10"] == 1.0 and figures["tuned_val_ndcg@10"] == 0.975
    assert figures["delta_95_interval"].startswith("-0.0250") and figures["p_value"] > 0.5
    worse, figures = comparison_with_base(np.ones(20), np.full(20, 0.5))
    assert worse and figures["p_value"] < 0.001


def test_a_resumed_training_reads_the_base_s_figures_in_either_saved_form(tmp_path):
    assert saved_base_validation(tmp_path) is None
    (tmp_path / BASE_SCORE_FILE).write_text("0.75")  # as trainings before per-query figures saved it
    assert saved_base_validation(tmp_path) == BaseValidation(0.75)
    (tmp_path / BASE_SCORE_FILE).write_text('{"score": 0.5, "per_query": [1.0, 0.0]}')
    assert saved_base_validation(tmp_path) == BaseValidation(0.5, [1.0, 0.0])


def test_validation_credits_a_question_whose_positive_s_own_document_ranks_first_through_another_chunk(base_model):
    chunks = pd.DataFrame(
        {
            "chunk_id": ["e217-cause", "e217-fix", "fan"],
            "doc_id": ["kv-0101", "kv-0101", "kv-0113"],
            "title": ["Error E217: replication stalls"] * 2 + ["Fan failure on the KV-400"],
            "text": [
                "Replication to the target vault stops at the same percentage every night.",
                "Restart the replication service with `repl restart` and raise the WAN timeout to 120 seconds.",
                "The chassis fan reports zero RPM and the unit raises a thermal alarm.",
            ],
        }
    )
    question = pd.DataFrame({"query_id": ["q"], "text": [chunks["text"][1]], "positive_chunk_ids": [["e217-cause"]]})
    validation = validation_target(question, pd.DataFrame({"query_id": ["q"], "split": ["validation"]}), chunks)
    by_chunk = validation_scorer(validation, {c: c for c in chunks["chunk_id"]})(base_model)
    by_document = validation_scorer(validation, chunk_documents(chunks))(base_model)
    assert by_chunk < 0.99 and by_document == pytest.approx(1.0)


def test_the_mix_with_the_base_that_scores_best_on_validation_is_kept():
    model = torch.nn.Linear(2, 1, bias=False)
    base = {"weight": torch.tensor([[0.0, 0.0]])}
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[4.0, -2.0]]))
    closest_to_one_one = lambda m: -float((m.weight.detach() - torch.tensor([[1.0, -0.5]])).abs().sum())  # noqa: E731
    share, score = mix_with_base(model, base, closest_to_one_one, (0.25, 0.5, 1.0), closest_to_one_one(model))
    assert share == 0.25 and score == pytest.approx(0.0)
    assert torch.allclose(model.weight, torch.tensor([[1.0, -0.5]]))


def test_a_tie_between_mixes_keeps_the_first_share_and_one_share_is_a_fixed_mix():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 2.0]]))
    base = {"weight": torch.tensor([[0.0, 0.0]])}
    share, _ = mix_with_base(model, base, lambda m: 1.0, (0.5, 1.0), 1.0)
    assert share == 0.5 and torch.allclose(model.weight, torch.tensor([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="at least one share"):
        mix_with_base(model, base, lambda m: 1.0, (), 1.0)


def test_training_ends_on_the_chosen_mix_and_reports_its_share(base_model):
    examples = [TrainingExample(q, p) for q, p in PAIRS]
    params = TrainingParams(epochs=1, batch_size=3, learning_rate=2e-4, scale=20.0, tuned_shares=(0.5,))
    halfway, trained = copy.deepcopy(base_model), copy.deepcopy(base_model)
    outcome = train_contrastive(halfway, examples, lambda model: 1.0, params)
    train_contrastive(trained, examples, lambda model: 1.0, TrainingParams(**{**vars(params), "tuned_shares": (1.0,)}))
    assert outcome.tuned_share == 0.5 and outcome.best_epoch == 1
    for name, base in base_model.state_dict().items():
        if base.is_floating_point():
            assert torch.allclose(halfway.state_dict()[name], (base + trained.state_dict()[name]) / 2, atol=1e-5)


def test_a_mix_above_the_base_is_kept_even_when_every_epoch_alone_scored_below_it(base_model):
    examples = [TrainingExample(q, p) for q, p in PAIRS]
    params = TrainingParams(epochs=2, batch_size=3, learning_rate=2e-4, scale=20.0, patience=2, tuned_shares=(0.5,))
    scores = iter([1.0, 0.9, 0.8, 1.1])  # the base, two worse epochs, then the better of them mixed halfway back
    mixed = copy.deepcopy(base_model)
    outcome = train_contrastive(mixed, examples, lambda model: next(scores), params)
    assert (outcome.best_epoch, outcome.tuned_share, outcome.best_score) == (1, 0.5, 1.1)
    assert any(not torch.equal(t, mixed.state_dict()[n]) for n, t in base_model.state_dict().items())

    scores = iter([1.0, 0.9, 0.8, 0.95])  # the mix is below the base too: the base weights are kept
    kept = copy.deepcopy(base_model)
    outcome = train_contrastive(kept, examples, lambda model: next(scores), params)
    assert outcome.best_epoch == 0 and outcome.best_score == 1.0
    assert all(torch.equal(t, kept.state_dict()[n]) for n, t in base_model.state_dict().items())
