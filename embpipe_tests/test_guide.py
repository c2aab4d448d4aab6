"""A guide embedder's soft labels: its scores of each example's candidates, and the distillation loss on them."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embpipe.core.embedding import encode
from embpipe.core.training.guide import guide_agreement, guide_scores, with_guide_scores
from embpipe.core.training.losses import (
    WeightedMultipleNegativesRankingLoss,
    distillation_kl,
    guide_false_negatives,
    present_documents,
    weighted_info_nce,
)
from embpipe.core.training.rows import TrainingExample, training_dataset
from embpipe.core.training.trainer import TrainingParams, train_contrastive

NAN = float("nan")


def test_distillation_kl_matches_hand_computation():
    queries = torch.tensor([[1.0, 0.0]])
    documents = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # the row's positive, then its one negative
    guide = torch.tensor([[0.5, 0.7]])  # the guide ranks the "negative" first
    target = np.exp([0.5, 0.7]) / np.exp([0.5, 0.7]).sum()
    student = np.exp([1.0, 0.6]) / np.exp([1.0, 0.6]).sum()
    expected = float((target * np.log(target / student)).sum())
    assert float(distillation_kl(queries, documents, guide, 1.0, None)) == pytest.approx(expected, rel=1e-5)


def test_rows_without_guide_scores_and_padded_negatives_stay_out_of_the_distillation():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(2, 4), dim=-1)
    documents = F.normalize(torch.randn(6, 4), dim=-1)  # 2 positives, then 2 columns of negatives
    guide = torch.tensor([[0.9, 0.2, 0.1], [NAN, NAN, NAN]])
    both = distillation_kl(queries, documents, guide, 20.0, present_documents(torch.tensor([1.0, 2.0]), 2))
    first_only = distillation_kl(queries[:1], documents[[0, 2]], guide[:1, :2], 20.0, None)
    assert float(both) == pytest.approx(float(first_only), rel=1e-5)
    assert float(distillation_kl(queries, documents, torch.full((2, 3), NAN), 20.0, None)) == 0.0


def test_a_lower_guide_scale_gives_softer_targets():
    queries = torch.tensor([[1.0, 0.0]])
    documents = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    guide = torch.tensor([[0.9, 0.7]])

    def expected(guide_scale: float) -> float:
        target = np.exp(guide_scale * np.array([0.9, 0.7]))
        target /= target.sum()
        student = np.exp(20.0 * np.array([1.0, 0.6]))
        student /= student.sum()
        return float((target * np.log(target / student)).sum())

    soft = float(distillation_kl(queries, documents, guide, 20.0, None, guide_scale=5.0))
    assert soft == pytest.approx(expected(5.0), rel=1e-4)
    assert float(distillation_kl(queries, documents, guide, 20.0, None)) == pytest.approx(expected(20.0), rel=1e-4)
    assert soft > expected(20.0)  # the student (sharp) is further from the softer target


def test_the_guide_mask_leaves_out_only_the_negatives_the_guide_scores_above_their_positive():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(2, 4), dim=-1)
    documents = F.normalize(torch.randn(6, 4), dim=-1)  # 2 positives, then 2 columns of negatives
    guide = torch.tensor([[0.5, 0.8, 0.1], [NAN, NAN, NAN]])  # row 0's first negative is a likely false one
    masked = guide_false_negatives(guide, 6)
    assert masked.nonzero().tolist() == [[0, 2]]  # row 0, document 2 (its first negative); row 1 untouched
    weights, present = torch.ones(2), present_documents(torch.tensor([2.0, 2.0]), 2)
    loss = weighted_info_nce(queries, documents, weights, 20.0, present & ~masked)
    by_hand = [
        F.cross_entropy(20.0 * queries[:1] @ documents[[0, 1, 3, 4, 5]].T, torch.tensor([0])),
        F.cross_entropy(20.0 * queries[1:] @ documents.T, torch.tensor([1])),
    ]
    assert float(loss) == pytest.approx(float(sum(by_hand) / 2), rel=1e-5)


def batch_embeddings(model, examples: list[TrainingExample]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The trainer's columns of ``examples`` embedded by ``model`` (no gradients), and their labels."""
    from sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking import embed_columns

    dataset = training_dataset(examples)
    features = [model.tokenize(dataset[c]) for c in dataset.column_names if c != "label"]
    with torch.no_grad():
        return embed_columns(copy.deepcopy(model).eval(), features), torch.tensor(dataset["label"])


def test_the_loss_masks_false_negatives_only_when_asked(base_model):
    examples = [
        TrainingExample("fan alarm H-052", "Fan 3 failed on the appliance.", ("Fan 3 needs a swap.",), 1.0, (0.4, 0.9)),
        TrainingExample("smtp 535 error", "Email alerts fail after the relay change.", ("The pool is read-only.",)),
    ]
    embeddings, labels = batch_embeddings(base_model, examples)
    with torch.no_grad():
        losses = [
            WeightedMultipleNegativesRankingLoss(base_model, 20.0, distill_weight=0.0, guide_mask=mask)
            for mask in (False, True)
        ]
        plain, masked = (float(loss.compute_loss_from_embeddings(embeddings, labels)) for loss in losses)
    assert masked < plain  # a close negative left the first row's softmax


def test_guide_scores_are_the_guide_s_cosines_of_each_query_with_its_candidates(base_model):
    examples = [
        TrainingExample("fan alarm H-052", "Fan 3 failed on the appliance.", ("Disk 2 is degraded.",)),
        TrainingExample("smtp 535 error", "Email alerts fail after the relay change.", ("Fan 3 failed.",)),
    ]
    scores = guide_scores(base_model, examples)
    queries = encode(base_model, [e.query for e in examples])
    for example, query, row in zip(examples, queries, scores, strict=True):
        passages = encode(base_model, [example.positive, *example.negatives])
        assert row == pytest.approx(tuple(passages @ query), abs=1e-5)
    scored = with_guide_scores(examples, base_model)
    assert [e.guide_scores for e in scored] == scores and scored[0].query == examples[0].query
    assert guide_agreement(scored) == np.mean([row[0] > max(row[1:]) for row in scores])


def test_guide_scores_travel_in_the_label_padded_like_the_negatives():
    examples = [
        TrainingExample("q1", "p1", ("n1", "n2"), 0.5, (0.9, 0.3, 0.2)),
        TrainingExample("q2", "p2", ("n3",), 1.0, (0.8, 0.4)),
        TrainingExample("q3", "p3"),
    ]
    labels = training_dataset(examples)["label"]
    assert labels[0] == [0.5, 2.0, 0.9, 0.3, 0.2]
    assert labels[1][:4] == [1.0, 1.0, 0.8, 0.4] and math.isnan(labels[1][4])
    assert labels[2][:2] == [1.0, 0.0] and all(math.isnan(v) for v in labels[2][2:])
    assert training_dataset(examples[2:])["label"] == [[1.0, 0.0]]  # no guide: the label is as before


def test_the_loss_adds_the_distillation_only_for_guided_rows(base_model):
    examples = [
        TrainingExample("fan alarm H-052", "Fan 3 failed on the appliance.", ("Disk 2 is degraded.",), 1.0, (0.2, 0.9)),
        TrainingExample("smtp 535 error", "Email alerts fail after the relay change.", ("The pool is read-only.",)),
    ]
    embeddings, labels = batch_embeddings(base_model, examples)
    with torch.no_grad():
        guided = WeightedMultipleNegativesRankingLoss(base_model, scale=20.0, distill_weight=1.0)
        plain = WeightedMultipleNegativesRankingLoss(base_model, scale=20.0, distill_weight=0.0)
        with_kl, without = (loss.compute_loss_from_embeddings(embeddings, labels) for loss in (guided, plain))
        queries = F.normalize(embeddings[0], dim=-1)
        documents = F.normalize(torch.cat(embeddings[1:]), dim=-1)
        kl = distillation_kl(queries[:1], documents[[0, 2]], labels[:1, 2:], 20.0, None)
    assert float(with_kl) == pytest.approx(float(without) + float(kl), rel=1e-4)
    assert float(kl) > 0.01


def test_soft_labels_alone_teach_the_student_the_guide_s_order(base_model):
    """Rows of weight 0 carry no hard label: the guide's scores, which rank the 'negative' first, are all they
    teach, and the student learns to rank that passage above the listed positive."""
    triples = [
        ("fan alarm", "Email alerts fail after the relay change.", "Fan 3 failed on the appliance."),
        ("pool full", "Single sign-on rejects the assertion.", "The pool switches to read-only when it is full."),
        ("slow gc", "Disk rebuilds are throttled.", "Garbage collection spends days marking chunks."),
    ]
    examples = [TrainingExample(q, p, (n,), 0.0, (0.1, 0.9)) for q, p, n in triples]

    def margin(model) -> float:  # how far the guide's favourite leads the listed positive, on average
        queries = encode(model, [q for q, _, _ in triples])
        listed, favourite = encode(model, [p for _, p, _ in triples]), encode(model, [n for _, _, n in triples])
        return float(np.mean((queries * favourite).sum(1) - (queries * listed).sum(1)))

    model = copy.deepcopy(base_model)
    before = margin(model)
    params = TrainingParams(epochs=3, batch_size=3, learning_rate=1e-4, scale=20.0, patience=3)
    train_contrastive(model, examples, margin, params)
    assert margin(model) > before + 0.05


def test_the_guide_is_a_training_setting_the_optimiser_never_sees():
    from embpipe.defs.training import TrainingConfig

    config = TrainingConfig(guide_model="embeddinggemma-300m", distill_weight=0.5)
    assert config.params().distill_weight == 0.5
    assert not hasattr(config.params(), "guide_model")
    assert TrainingConfig().guide_model == ""  # off unless asked for: the guide is never a silent default
    guide_only = TrainingConfig(guide_model="embeddinggemma-300m")  # a guide distils by default, no soft labels
    assert (guide_only.guide_distill_epochs, guide_only.params().distill_weight) == (2, 0.0)
    guided = TrainingConfig(guide_model="embeddinggemma-300m", guide_scale=10.0, guide_mask=True).params()
    assert (guided.guide_scale, guided.guide_mask) == (10.0, True)
    with pytest.raises(ValueError, match="set embedding_model.guide_model"):
        TrainingConfig(guide_mask=True).params()
    with pytest.raises(ValueError, match="set embedding_model.guide_model"):
        TrainingConfig(guide_distill_share=0.5).params()


def test_a_guide_that_is_not_fetched_names_the_command_that_fetches_it(tmp_path, monkeypatch):
    from embpipe.core.training.guide import load_guide

    monkeypatch.setenv("EMBPIPE_MODEL_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="embpipe fetch-models embeddinggemma-300m"):
        load_guide("embeddinggemma-300m", 128, "cpu")


def test_encoding_as_a_query_or_document_adds_the_model_s_prompt_for_that_role(base_model):
    model = copy.deepcopy(base_model)
    model.prompts = {"query": "query: ", "document": "passage: "}
    text = ["fan alarm H-052"]
    assert encode(model, text, role="query") == pytest.approx(encode(model, ["query: fan alarm H-052"]), abs=1e-6)
    assert encode(model, text, role="document") == pytest.approx(encode(model, ["passage: fan alarm H-052"]), abs=1e-6)
    assert encode(base_model, text, role="query") == pytest.approx(encode(base_model, text), abs=1e-6)  # no prompt
