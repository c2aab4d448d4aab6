"""A base with query/document prompts and Dense layers after pooling (EmbeddingGemma's shape) through the ONNX
export and the server: same vectors as sentence-transformers, each role through its prompt."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from embpipe.core.deploy.export_checks import verify_export
from embpipe.core.deploy.onnx_export import OnnxEncoder, export_onnx
from embpipe.serving.app import create_app
from embpipe.serving.encoders import load_encoder

TEXTS = ["chassis fan 3 alert H-052", "SMTP 535 after the relay password changed", "pool read-only at 95%"]
PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}


def tiny_prompted_model(folder, activation):
    """A one-layer BERT (random weights, MiniLM's tokenizer), mean pooling, two Dense layers, Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from embpipe.core.embedding import packaged_base_model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged_base_model())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    modules = [
        models.Transformer(str(folder), max_seq_length=64),
        models.Pooling(32, "mean"),
        models.Dense(32, 48, bias=False, activation_function=torch.nn.Identity()),
        models.Dense(48, 16, activation_function=activation),
        models.Normalize(),
    ]
    return SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu")


@pytest.fixture(scope="module")
def prompted(tmp_path_factory):
    import torch

    model = tiny_prompted_model(tmp_path_factory.mktemp("tiny"), torch.nn.Tanh())
    folder = export_onnx(model, tmp_path_factory.mktemp("onnx") / "onnx_model")
    verify_export(model, folder, TEXTS, TEXTS, min_cosine=0.99)
    return model, folder


def test_the_export_applies_the_dense_layers_and_each_role_s_prompt_as_sentence_transformers_does(prompted):
    model, folder = prompted
    encoder = OnnxEncoder(folder, "fp32")
    assert encoder.dimension() == 16
    for role, reference in [(None, model.encode), ("query", model.encode_query), ("document", model.encode_document)]:
        vectors = encoder.encode(TEXTS, role=role)
        assert np.min(np.sum(vectors * reference(TEXTS, normalize_embeddings=True), axis=1)) > 0.999
    assert np.max(np.sum(encoder.encode(TEXTS, role="query") * encoder.encode(TEXTS), axis=1)) < 0.999


def test_a_bidirectional_sliding_window_encoder_exports_with_the_masks_transformers_would_build(tmp_path):
    """EmbeddingGemma's shape in miniature: full and sliding-window layers attending both ways, a window of 3
    tokens that the texts (padded to the longest) outgrow; transformers builds these masks with vmap."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, Gemma3TextConfig, Gemma3TextModel

    from embpipe.core.embedding import packaged_base_model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged_base_model())
    config = Gemma3TextConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=3, max_position_embeddings=128,
        layer_types=["sliding_attention", "full_attention"], use_bidirectional_attention=True,
    )  # fmt: skip
    Gemma3TextModel(config).save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    modules = [models.Transformer(str(tmp_path / "tiny"), max_seq_length=64), models.Pooling(32, "mean")]
    model = SentenceTransformer(modules=modules, device="cpu")
    folder = export_onnx(model, tmp_path / "onnx_model")
    report = verify_export(model, folder, TEXTS, TEXTS, min_cosine=0.999)
    assert report.variants["fp32"]["min_cosine"] > 0.999


def test_a_module_after_pooling_the_encoder_cannot_run_is_refused(tmp_path):
    import torch

    model = tiny_prompted_model(tmp_path / "tiny", torch.nn.ReLU())
    with pytest.raises(ValueError, match="Dense layers"):
        export_onnx(model, tmp_path / "onnx_model")


def test_the_server_requires_input_type_for_a_prompted_model_and_encodes_each_role_through_its_prompt(prompted):
    _, folder = prompted
    encoder = load_encoder(folder.parent, str(folder), name="tiny")
    client = TestClient(create_app(encoder))
    missing = client.post("/v1/embeddings", json={"model": "tiny", "input": TEXTS})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input_type"
    for input_type, role in [("query", "query"), ("passage", "document"), ("document", "document")]:
        body = client.post("/v1/embeddings", json={"model": "tiny", "input": TEXTS, "input_type": input_type}).json()
        vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert np.allclose(vectors, encoder.encode(TEXTS, role), atol=1e-6)
        assert body["usage"]["prompt_tokens"] == encoder.count_tokens(TEXTS, role) > encoder.count_tokens(TEXTS)
    wrong = client.post("/v1/embeddings", json={"model": "tiny", "input": TEXTS, "input_type": "search_query"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "input_type"
    assert client.get("/health").json()["input_type_required"] is True


def test_a_normalisation_between_pooling_and_a_dense_layer_is_exported_in_its_place(tmp_path):
    """A student distilled from a guide is its base (which normalises) with a layer to the guide's width on top."""
    import torch
    from sentence_transformers import SentenceTransformer, models

    tiny = tiny_prompted_model(tmp_path / "tiny", torch.nn.Identity())
    projection = models.Dense(32, 48, activation_function=torch.nn.Identity())
    with torch.no_grad():  # a bias large against the unit vectors: the layer's output depends on their scale
        projection.linear.bias.fill_(0.5)
    modules = [tiny[0], tiny[1], models.Normalize(), projection, models.Normalize()]
    student = SentenceTransformer(modules=modules, device="cpu")
    folder = export_onnx(student, tmp_path / "onnx_model")
    encoder = OnnxEncoder(folder, "fp32")
    assert [activation for _, _, activation in encoder.head] == ["Normalize", "Identity"] and encoder.dimension() == 48
    reference = student.encode(TEXTS, normalize_embeddings=True)
    assert np.min(np.sum(encoder.encode(TEXTS) * reference, axis=1)) > 0.999
    assert verify_export(student, folder, TEXTS, TEXTS, min_cosine=0.99).variants["fp32"]["min_cosine"] > 0.999
