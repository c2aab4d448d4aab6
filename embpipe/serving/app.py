"""An OpenAI-compatible embeddings API: ``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``.

Requests follow OpenAI's schema: ``input`` is a string or a list of strings, ``model`` names the model,
``encoding_format`` is ``float`` (default) or ``base64`` (little-endian float32, what the official client
asks for), ``dimensions`` may only repeat the model's own. ``input_type`` (``query``, or ``passage`` /
``document``), an extension NVIDIA's embedding servers share, says what the texts are: a model with query and
document prompts (EmbeddingGemma and models adapted from it) encodes each through its prompt and requires it,
a model without prompts accepts and ignores it. Bad requests get 4xx answers with OpenAI-style
bodies ``{"error": {"message", "type", "param", "code"}}``; the limits on body size, batch size and input
length are settings of ``ServerLimits``.

Example:
    >>> app = create_app(load_encoder(Path("data/models")))  # doctest: +SKIP
    >>> # curl -s localhost:8000/v1/embeddings -d '{"model": "embpipe", "input": "reset the appliance"}'
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from embpipe.core.embedding import Role
from embpipe.serving.encoders import ServingEncoder


@dataclass(frozen=True)
class ServerLimits:
    """What one request may hold."""

    max_body_bytes: int = 2_000_000
    max_batch: int = 256
    max_input_chars: int = 32_000


class RequestError(Exception):
    """A client error, answered with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_response(error: RequestError) -> JSONResponse:
    """The OpenAI-style error body; text echoed from the request (a lone surrogate in a model name) is escaped."""
    message = error.message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = {"error": {"message": message, "type": "invalid_request_error", "param": error.param, "code": error.code}}
    return JSONResponse(body, status_code=error.status)


def parse_inputs(body: dict, limits: ServerLimits) -> list[str]:
    """The texts of a request, validated against OpenAI's rules and the server's limits."""
    if "input" not in body:
        raise RequestError(400, "'input' is required: a string or a list of strings", "input", "missing_input")
    raw = body["input"]
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise RequestError(400, "'input' must be a non-empty string or a non-empty list of strings", "input")
    if not all(isinstance(t, str) for t in texts):
        raise RequestError(400, "'input' items must be strings (token arrays are not supported)", "input")
    if len(texts) > limits.max_batch:
        raise RequestError(
            400, f"at most {limits.max_batch} inputs per request, got {len(texts)}", "input", "batch_too_large"
        )
    for index, text in enumerate(texts):
        if not text.strip():
            raise RequestError(400, f"input[{index}] is empty", "input", "empty_input")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate such as "\ud800" decodes from JSON but is no text
            raise RequestError(400, f"input[{index}] is not valid Unicode: {error.reason}", "input") from error
        if len(text) > limits.max_input_chars:
            raise RequestError(
                400,
                f"input[{index}] has {len(text)} characters; the limit is {limits.max_input_chars}",
                "input",
                "input_too_long",
            )
    return texts


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """One embedding as a float list or as base64 of little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(float).tolist()


INPUT_TYPES: dict[str, Role] = {"query": "query", "passage": "document", "document": "document"}


def parse_role(body: dict, encoder: ServingEncoder) -> Role | None:
    """The role ``input_type`` names; required when the model encodes queries and documents differently."""
    input_type = body.get("input_type")
    if input_type is None:
        if encoder.prompts:
            raise RequestError(
                400, f"'{encoder.name}' encodes queries and documents differently: give 'input_type' "
                "'query' for search queries or 'passage' for the texts searched", "input_type", "missing_input_type",
            )  # fmt: skip
        return None
    if not isinstance(input_type, str) or input_type not in INPUT_TYPES:
        raise RequestError(400, f"'input_type' must be one of {', '.join(map(repr, INPUT_TYPES))}", "input_type")
    return INPUT_TYPES[input_type]


def parse_request(
    raw: bytes, encoder: ServingEncoder, limits: ServerLimits
) -> tuple[dict, list[str], str, Role | None]:
    """The body, its input texts, its encoding format and the texts' role; a ``RequestError`` naming the fault
    otherwise."""
    if len(raw) > limits.max_body_bytes:
        raise RequestError(413, f"request body over {limits.max_body_bytes} bytes", None, "body_too_large")
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, f"body is not valid JSON: {error}", None, "invalid_json") from error
    except RecursionError as error:
        raise RequestError(400, "body is nested too deeply", None, "invalid_json") from error
    if not isinstance(body, dict):
        raise RequestError(400, "body must be a JSON object", None, "invalid_json")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestError(400, "'model' is required", "model", "missing_model")
    if body["model"] != encoder.name:
        raise RequestError(
            404, f"The model '{body['model']}' does not exist; this server serves '{encoder.name}'",
            "model", "model_not_found",
        )  # fmt: skip
    fmt = body.get("encoding_format") or "float"
    if not isinstance(fmt, str) or fmt not in {"float", "base64"}:
        raise RequestError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions != encoder.dimension):
        raise RequestError(400, f"this model has {encoder.dimension} dimensions only", "dimensions")
    return body, parse_inputs(body, limits), fmt, parse_role(body, encoder)


def create_app(encoder: ServingEncoder, limits: ServerLimits = ServerLimits()) -> Starlette:
    """The Starlette application serving ``encoder``."""

    async def embeddings(request: Request) -> JSONResponse:
        try:
            body, texts, fmt, role = parse_request(await request.body(), encoder, limits)
        except RequestError as error:
            return error_response(error)
        vectors = await run_in_threadpool(encoder.encode, texts, role)
        tokens = await run_in_threadpool(encoder.count_tokens, texts, role)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": encoded(v, fmt)} for i, v in enumerate(vectors)
                ],
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": encoder.name, "object": "model", "owned_by": "embpipe"}]}
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model": encoder.name,
                "backend": encoder.backend,
                "dimension": encoder.dimension,
                "input_type_required": bool(encoder.prompts),
            }
        )

    async def not_found(request: Request, exc) -> JSONResponse:
        return error_response(RequestError(404, f"no route {request.method} {request.url.path}", None, "not_found"))

    async def wrong_method(request: Request, exc) -> JSONResponse:
        return error_response(RequestError(405, f"{request.method} is not allowed on {request.url.path}"))

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: wrong_method},
    )
