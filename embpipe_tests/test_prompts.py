"""A base model with query and document prompts gets them wherever a text's role is known: in the stages' vectors,
in evaluation and validation, and in training."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from embpipe.core.embedding import column_prompts, encode
from embpipe.core.evaluation.report import dense_run
from embpipe.core.training.rows import TrainingExample
from embpipe.core.training.trainer import TrainingParams, train_contrastive

PROMPTS = {"query": "query: ", "document": "passage: "}


def prompted(base_model):
    model = copy.deepcopy(base_model)
    model.prompts = dict(PROMPTS)
    return model


def test_a_dense_run_encodes_the_corpus_as_documents_and_the_queries_as_queries():
    seen: dict[str, list[str]] = {}

    def recording_encoder(texts, role):
        seen.setdefault(role, []).extend(texts)
        return np.eye(2)[[0 if "fan" in t else 1 for t in texts]]

    run = dense_run(recording_encoder, {"d1": "fan alarm", "d2": "mail relay"}, {"q1": "fan noise"}, k=2)
    assert seen == {"document": ["fan alarm", "mail relay"], "query": ["fan noise"]}
    assert max(run["q1"], key=run["q1"].get) == "d1"


def test_training_columns_get_the_prompt_of_their_role_and_a_model_without_prompts_gets_none(base_model):
    model = prompted(base_model)
    columns = column_prompts(model, ["anchor"], ["positive", "negative_1"])
    assert columns == {"anchor": "query: ", "positive": "passage: ", "negative_1": "passage: "}
    assert column_prompts(base_model, ["anchor"], ["positive"]) is None


def test_training_a_prompted_base_puts_its_query_prompt_before_questions_and_document_prompt_before_passages(
    base_model,
):
    model = prompted(base_model)
    tokenized: list[str] = []  # each text the trainer's batches encode, with the prompt it is encoded with
    preprocess = model.preprocess

    def recording_preprocess(texts, *args, **kwargs):
        if "prompt" in kwargs:  # the trainer's data collator (the model card's widget encodes without one)
            tokenized.extend((kwargs["prompt"] or "") + t for t in texts if isinstance(t, str))
        return preprocess(texts, *args, **kwargs)

    model.preprocess = recording_preprocess
    examples = [
        TrainingExample("fan alarm after the update", "Fan alarm H-052 follows firmware 5.2.", ("Mail relay setup.",)),
        TrainingExample("relay login fails", "The mail relay rejects the login.", ("Disk rebuild speed.",)),
    ]
    train_contrastive(model, examples, lambda m: 0.0, TrainingParams(epochs=1, batch_size=2, patience=1))
    trained = [t for t in tokenized if "fan alarm after" in t or "H-052" in t or "Mail relay setup" in t]
    assert "query: fan alarm after the update" in trained
    assert "passage: Fan alarm H-052 follows firmware 5.2." in trained
    assert "passage: Mail relay setup." in trained
    assert not any(t.startswith(("fan alarm after", "Fan alarm H-052", "Mail relay setup")) for t in trained)


def test_the_stages_vectors_of_a_prompted_base_are_those_of_its_roles(base_model, data_dir, tmp_path):
    from dagster import materialize

    from embpipe.definitions import all_assets, default_resources
    from embpipe.resources.embedder import EmbedderResource
    from embpipe_tests.conftest import GRAPH_SAMPLE_DIR

    folder = tmp_path / "prompted-minilm"
    prompted(base_model).save(str(folder))
    resources = {**default_resources(), "embedder": EmbedderResource(base_model=str(folder), max_seq_length=128)}
    run_config = {"ops": {"read_documents": {"config": {"folder": str(GRAPH_SAMPLE_DIR)}}}}
    selection = ["documents", "rejected_documents", "chunks", "chunk_embeddings"]
    assert materialize(all_assets, selection=selection, resources=resources, run_config=run_config).success
    chunks = pd.read_parquet(data_dir / "assets" / "chunks.parquet")
    vectors = np.vstack(pd.read_parquet(data_dir / "assets" / "chunk_embeddings.parquet")["embedding"].to_numpy())
    from embpipe.core.training.examples import chunk_passages

    passages = chunk_passages(chunks)[:3]
    as_documents = encode(base_model, [f"passage: {p}" for p in passages])
    assert vectors[:3] == pytest.approx(as_documents, abs=1e-5)
    assert not np.allclose(vectors[:3], encode(base_model, passages), atol=1e-3)
