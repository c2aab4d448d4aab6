"""ONNX export parity, and the OpenAI-compatible server driven by the official ``openai`` client."""

from __future__ import annotations

import base64
import json
import random
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from embpipe.core.deploy.export_checks import verify_export
from embpipe.core.deploy.onnx_export import FP32_NODES, OnnxEncoder, export_onnx
from embpipe.serving.app import ServerLimits, create_app
from embpipe.serving.encoders import load_encoder

TEXTS = [
    "How do I replace chassis fan 3 after alert H-052?",
    "Email alerts fail with SMTP 535 after the relay password changed.",
    "The storage pool switches to read-only when it is 95 percent full.",
    "Single sign-on rejects the SAML assertion because the audience changed.",
]


@pytest.fixture(scope="module")
def onnx_folder(tmp_path_factory, base_model):
    folder = export_onnx(base_model, tmp_path_factory.mktemp("onnx") / "onnx_model")
    verify_export(base_model, folder, TEXTS, TEXTS * 4, min_cosine=0.99)
    return folder


def test_fp32_export_matches_pytorch_and_the_served_variant_passed_parity(onnx_folder, base_model):
    reference = base_model.encode(TEXTS, normalize_embeddings=True)
    fp32 = OnnxEncoder(onnx_folder, "fp32").encode(TEXTS)
    assert fp32.shape == reference.shape
    assert np.min(np.sum(fp32 * reference, axis=1)) >= 0.99
    served = json.loads((onnx_folder / "embpipe_onnx.json").read_text())["served_variant"]
    served_vectors = OnnxEncoder(onnx_folder, served).encode(TEXTS)
    assert np.min(np.sum(served_vectors * reference, axis=1)) >= 0.99


def test_int8_keeps_the_feed_forward_down_projections_in_fp32_and_quantizes_the_rest(onnx_folder):
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(onnx_folder / "model_int8.onnx")).graph.node}
    kept = [name for name in ops if FP32_NODES.search(name) and ops[name] == "MatMul"]
    assert len(kept) == 6  # one per layer of the 6-layer MiniLM
    assert sum(op == "MatMulInteger" for op in ops.values()) == 5 * len(kept)  # q, k, v, attention out, FFN up


def test_a_broken_export_is_refused(onnx_folder, base_model):
    with pytest.raises(ValueError, match="broken"):
        verify_export(base_model, onnx_folder, TEXTS, TEXTS, min_cosine=1.01)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(onnx_folder):
    import uvicorn

    encoder = load_encoder(onnx_folder.parent, str(onnx_folder), name="embpipe-test")
    port = free_port()
    config = uvicorn.Config(
        create_app(encoder, ServerLimits(max_body_bytes=50_000, max_batch=8, max_input_chars=2_000)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", encoder
    instance.should_exit = True
    thread.join(timeout=10)


def test_openai_client_gets_embeddings_for_a_list_and_a_string(server):
    from openai import OpenAI

    url, encoder = server
    client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    response = client.embeddings.create(model="embpipe-test", input=TEXTS[:2])  # the client asks for base64
    vectors = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert np.allclose(vectors, encoder.encode(TEXTS[:2]), atol=1e-6)
    assert [d.index for d in response.data] == [0, 1] and response.model == "embpipe-test"
    assert response.usage.prompt_tokens == encoder.count_tokens(TEXTS[:2]) > 10
    single = client.embeddings.create(model="embpipe-test", input=TEXTS[2], encoding_format="float")
    assert len(single.data) == 1 and np.allclose(single.data[0].embedding, encoder.encode(TEXTS[2:3])[0], atol=1e-6)
    typed = client.embeddings.create(model="embpipe-test", input=TEXTS[2], extra_body={"input_type": "passage"})
    assert typed.data[0].embedding == single.data[0].embedding  # a model without prompts ignores the role


def test_base64_is_little_endian_float32(server):
    url, encoder = server
    body = httpx.post(
        f"{url}/v1/embeddings", json={"model": "embpipe-test", "input": TEXTS[0], "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, encoder.encode(TEXTS[:1])[0], atol=1e-6)


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"model": "embpipe-test", "input": []}, 400, "input"),
        ({"model": "embpipe-test", "input": ""}, 400, "input"),
        ({"model": "embpipe-test", "input": [[101, 2023]]}, 400, "input"),
        ({"input": "hello"}, 400, "model"),
        ({"model": "embpipe-test", "input": ["x"] * 9}, 400, "input"),
        ({"model": "embpipe-test", "input": "x" * 2_001}, 400, "input"),
        ({"model": "embpipe-test", "input": "hi", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "embpipe-test", "input": "hi", "dimensions": 12}, 400, "dimensions"),
        ({"model": "embpipe-test", "input": "\ud800"}, 400, "input"),
        ({"model": "embpipe-test", "input": ["ok", "half \udfff pair"]}, 400, "input"),
        ({"model": "gpt-4o", "input": "hi"}, 404, "model"),
        ({"model": "embpipe-test", "input": "hi", "input_type": "search_document"}, 400, "input_type"),
    ],
)
def test_bad_requests_get_openai_style_errors(server, payload, status, param):
    url, _ = server
    response = httpx.post(f"{url}/v1/embeddings", content=json.dumps(payload))  # ASCII escapes, as "\ud800"
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert response.headers["content-type"] == "application/json"


def test_invalid_json_oversized_bodies_and_unknown_routes_are_refused(server):
    url, _ = server
    assert httpx.post(f"{url}/v1/embeddings", content=b"{not json").status_code == 400
    huge = json.dumps({"model": "embpipe-test", "input": ["y" * 1_000] * 60})
    assert httpx.post(f"{url}/v1/embeddings", content=huge).status_code == 413
    nested = b"[" * 20_000 + b"]" * 20_000  # deeper than Python's recursion limit
    deep = httpx.post(f"{url}/v1/embeddings", content=nested)
    assert deep.status_code == 400 and deep.json()["error"]["message"] == "body is nested too deeply"
    assert httpx.get(f"{url}/v1/nothing").json()["error"]["code"] == "not_found"
    assert httpx.get(f"{url}/v1/embeddings").status_code == 405
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["backend"].startswith("onnx-") and health["dimension"] == 384
    assert health["input_type_required"] is False


def random_json(rng: random.Random, depth: int = 0):
    """A random JSON-like value: scalars of every type (lone surrogates and control characters included),
    lists and objects, nested a few levels."""
    scalars = [
        None,
        True,
        rng.randint(-(2**63), 2**63),
        rng.random() * 10 ** rng.randint(-5, 30),
        "".join(
            chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0xD800, 0xDFFF), rng.randint(0x80, 0x10FFFF)]))
            for _ in range(rng.randint(0, 12))
        ),  # fmt: skip
        "embpipe-test",
        "",
    ]
    if depth > 3 or rng.random() < 0.5:
        return rng.choice(scalars)
    if rng.random() < 0.5:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["model", "input", "encoding_format", "dimensions", "user", "x"]): random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}  # fmt: skip


def random_request(rng: random.Random) -> bytes:
    """A request body: a valid one with one field replaced, a random JSON value, or random bytes."""
    kind = rng.random()
    if kind < 0.6:
        body = {"model": "embpipe-test", "input": ["a valid text"], "encoding_format": "float"}
        body[rng.choice(["model", "input", "encoding_format", "dimensions", "input_type", "extra"])] = random_json(rng)
        return json.dumps(body).encode()
    if kind < 0.85:
        return json.dumps(random_json(rng)).encode()
    return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 64)))


def test_no_generated_request_gets_a_server_error(server):
    """A property over 400 seeded random requests: every answer is a 200 with embeddings or an OpenAI-style
    4xx JSON error; none is a 5xx."""
    url, _ = server
    rng = random.Random(20261130)
    statuses = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(400):
            body = random_request(rng)
            response = client.post("/v1/embeddings", content=body)
            statuses.append(response.status_code)
            assert response.status_code < 500, (body[:200], response.text[:200])
            payload = response.json()
            if response.status_code == 200:
                assert payload["data"] and all(len(d["embedding"]) for d in payload["data"])
            else:
                assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["message"]
    assert 200 in statuses and {400, 404} <= set(statuses)  # the generator reaches both sides
