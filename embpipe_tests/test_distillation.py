"""Distilling a guide's embeddings into the student: the least-squares layer, the batches, the end-to-end tuning
and the work folder that makes a second call free."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from embpipe.core.embedding import encode
from embpipe.core.training.distillation import (
    DistillationParams,
    LengthGroupedBatchSampler,
    distillation_texts,
    distilled_student,
    least_squares_head,
    prompted,
)

TEXTS = distillation_texts(
    [
        "Error E217: replication stalls when the target vault's certificate has expired.",
        "The dedup ratio drops after a restore from the tape tier.",
        "Garbage collection spends days marking chunks on a pool above 90% full.",
        "The Linux agent misses changes when inotify watches run out.",
        "A full pool switches to read-only until space is freed.",
        "VSS snapshots time out on the Windows agent under heavy I/O.",
        "Clock skew above five minutes makes the vault reject the agent's token.",
        "Restores from the tape tier are slow while the robot is busy.",
    ],
    ["why does replication stall", "pool is read-only", "agent misses file changes", "restore is slow"],
)


def guide_like(base_model, width: int = 48, seed: int = 0):
    """A stand-in guide: the base followed by a random non-linear layer to another width, normalised (a real
    sentence-transformers model whose embeddings no linear map of the base's reproduces exactly)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    torch.manual_seed(seed)
    modules = [*copy.deepcopy(base_model), Dense(384, width, activation_function=torch.nn.Tanh()), Normalize()]
    guide = SentenceTransformer(modules=modules, device="cpu")
    guide.max_seq_length = base_model.max_seq_length
    return guide.eval()


def mean_cosine(student, guide, texts) -> float:
    targets = np.vstack([encode(guide, list(texts.documents), role="document"), encode(guide, list(texts.queries))])
    return float((encode(student, prompted(student, texts)) * targets).sum(1).mean())


def test_the_least_squares_layer_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    sources = rng.normal(size=(200, 6)).astype(np.float32)
    weights, bias = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    head = least_squares_head(sources, sources @ weights + bias, ridge=1e-6)
    with torch.no_grad():
        mapped = head({"sentence_embedding": torch.from_numpy(sources)})["sentence_embedding"].numpy()
    assert mapped == pytest.approx(sources @ weights + bias, abs=1e-3)


def test_length_grouped_batches_hold_every_row_once_and_change_order_with_the_epoch():
    from datasets import Dataset

    texts = [("x" * random.Random(i).randint(1, 400)) for i in range(70)]
    sampler = LengthGroupedBatchSampler(Dataset.from_dict({"text": texts}), batch_size=8, drop_last=False, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(i for batch in first for i in batch) == list(range(70)) == sorted(i for b in second for i in b)
    assert len(first) == len(sampler) == 9 and first != second
    assert first == list(LengthGroupedBatchSampler(Dataset.from_dict({"text": texts}), 8, False, seed=3))


def test_distillation_brings_the_student_to_the_guide_and_a_second_call_is_free(base_model, tmp_path):
    guide = guide_like(base_model)
    calls = []
    load_guide = lambda: calls.append(1) or guide  # noqa: E731
    # a strong ridge: on 12 texts a plain least-squares layer of 384 inputs would fit them exactly
    params = DistillationParams(epochs=4, batch_size=4, learning_rate=3e-4, ridge=10.0, seed=7)
    student, outcome = distilled_student(copy.deepcopy(base_model), load_guide, "stand-in", TEXTS, params, tmp_path)
    assert calls == [1] and outcome.texts == 12 and len(outcome.epoch_losses) == 4
    assert outcome.epoch_losses[-1] < outcome.epoch_losses[0]  # the end-to-end tuning learns
    only_layer = DistillationParams(epochs=0, ridge=10.0)
    linear, _ = distilled_student(copy.deepcopy(base_model), load_guide, "stand-in", TEXTS, only_layer, tmp_path / "l")
    assert mean_cosine(student, guide, TEXTS) > mean_cosine(linear, guide, TEXTS) + 0.03  # beyond the linear fit
    assert mean_cosine(linear, guide, TEXTS) > 0.5 and student.get_embedding_dimension() == 48

    again, same = distilled_student(copy.deepcopy(base_model), load_guide, "stand-in", TEXTS, params, tmp_path)
    assert calls == [1, 1] and same == outcome  # the second "linear" call paid for its own targets; this one none
    assert encode(again, ["pool is read-only"]) == pytest.approx(encode(student, ["pool is read-only"]), abs=1e-5)


def test_the_guide_s_embeddings_are_reused_while_guide_and_texts_stay_the_same(base_model, tmp_path):
    guide = guide_like(base_model)
    calls = []
    load_guide = lambda: calls.append(1) or guide  # noqa: E731
    params = DistillationParams(epochs=0)
    distilled_student(copy.deepcopy(base_model), load_guide, "stand-in", TEXTS, params, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "guide-targets.npz").write_bytes((tmp_path / "a" / "guide-targets.npz").read_bytes())
    distilled_student(copy.deepcopy(base_model), load_guide, "stand-in", TEXTS, params, tmp_path / "b")
    assert calls == [1]  # the cached embeddings were the same guide's of the same texts
    fewer = distillation_texts(TEXTS.documents[:4], TEXTS.queries)
    distilled_student(copy.deepcopy(base_model), load_guide, "stand-in", fewer, params, tmp_path / "b" / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "guide-targets.npz").write_bytes((tmp_path / "a" / "guide-targets.npz").read_bytes())
    distilled_student(copy.deepcopy(base_model), load_guide, "another guide", TEXTS, params, tmp_path / "d")
    assert calls == [1, 1, 1]  # other texts, another guide: embedded again


def test_distillation_texts_are_distinct_and_never_blank():
    texts = distillation_texts(["a", "", "b", "a"], ["q", "  ", "q", "r"])
    assert texts.documents == ("a", "b") and texts.queries == ("q", "r")


class Interrupted(Exception):
    pass


def test_an_interrupted_distillation_resumes_from_its_epoch_checkpoint_and_ends_as_an_uninterrupted_one(
    base_model, tmp_path, monkeypatch
):
    from embpipe.core.training.distillation import StepProgress

    guide = guide_like(base_model)
    params = DistillationParams(epochs=2, batch_size=4, learning_rate=3e-4, ridge=10.0, seed=7)
    whole, _ = distilled_student(copy.deepcopy(base_model), lambda: guide, "stand-in", TEXTS, params, tmp_path / "a")

    def stop_after_the_first_checkpoint(self, args, state, control, **kwargs):
        raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(StepProgress, "on_save", stop_after_the_first_checkpoint, raising=False)
        with pytest.raises(Interrupted):
            distilled_student(copy.deepcopy(base_model), lambda: guide, "stand-in", TEXTS, params, tmp_path / "b")
    assert (tmp_path / "b" / "trainer").is_dir() and not (tmp_path / "b" / "distilled").exists()
    steps = []
    step_end = StepProgress.on_step_end
    with monkeypatch.context() as patch:
        patch.setattr(StepProgress, "on_step_end", lambda self, *a, **k: steps.append(1) or step_end(self, *a, **k))
        resumed, outcome = distilled_student(
            copy.deepcopy(base_model), lambda: guide, "stand-in", TEXTS, params, tmp_path / "b"
        )
    assert len(steps) == 3  # only the second epoch's 3 batches of 4 ran again
    assert len(outcome.epoch_losses) == 2  # the first epoch's loss comes back with the checkpoint's log
    probe = ["pool is read-only", TEXTS.documents[0]]
    assert encode(resumed, probe) == pytest.approx(encode(whole, probe), abs=1e-5)


def test_a_share_below_one_mixes_the_distilled_student_back_towards_its_least_squares_start_even_when_resumed(
    base_model, tmp_path, monkeypatch
):
    from embpipe.core.training.distillation import HEAD_FILE, StepProgress, projection, with_head
    from embpipe.core.training.interpolation import mixed_weights

    guide = guide_like(base_model)
    params = DistillationParams(epochs=2, batch_size=4, learning_rate=3e-4, ridge=10.0, seed=7)
    whole, _ = distilled_student(copy.deepcopy(base_model), lambda: guide, "stand-in", TEXTS, params, tmp_path / "a")
    head = projection(384, 48)
    head.load_state_dict(torch.load(tmp_path / "a" / HEAD_FILE))  # the fitted start, kept in the work folder
    start = with_head(copy.deepcopy(base_model), head)
    expected = copy.deepcopy(whole)
    expected.load_state_dict(mixed_weights(start.state_dict(), whole.state_dict(), 0.5))

    def stop_after_the_first_checkpoint(self, args, state, control, **kwargs):
        raise Interrupted

    halfway = DistillationParams(**{**params.__dict__, "share": 0.5})
    with monkeypatch.context() as patch:
        patch.setattr(StepProgress, "on_save", stop_after_the_first_checkpoint, raising=False)
        with pytest.raises(Interrupted):
            distilled_student(copy.deepcopy(base_model), lambda: guide, "stand-in", TEXTS, halfway, tmp_path / "h")
    mixed, _ = distilled_student(copy.deepcopy(base_model), lambda: guide, "stand-in", TEXTS, halfway, tmp_path / "h")
    probe = ["pool is read-only", TEXTS.documents[0]]
    assert encode(mixed, probe) == pytest.approx(encode(expected, probe), abs=1e-5)
    assert encode(mixed, probe) != pytest.approx(encode(whole, probe), abs=1e-3)  # the mix moved it
