"""An OpenAI-compatible chat endpoint on 127.0.0.1 that answers with faults, counting every HTTP request.

The request's model name picks the answer: ``ok`` (a valid completion of ``ok_content``, ``{"score": 0.5}``
unless a test sets it), ``status-429``,
``status-500``, ``status-502``, ``status-503``, ``status-400``, ``context-length``, ``content-filter``,
``status-401``, ``html`` (a 200 HTML page), ``empty-choices``, ``truncated`` (a 200 with half a JSON body),
``hang`` (answers after 3 s). A ``-once`` suffix faults on the first request of that model only; with
``outage_after = N`` every request after the N-th is a 503 until a test sets it back to ``None``.

Example:
    >>> with FaultServer() as server:  # doctest: +SKIP
    ...     litellm.completion(model="openai/status-429", api_base=server.url, api_key="x", messages=[...])
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter

OK_BODY = {
    "id": "chatcmpl-fault",
    "object": "chat.completion",
    "created": 0,
    "model": "ok",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": '{"score": 0.5}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}
ERRORS = {
    "status-429": (429, "rate limit reached", "rate_limit_error", None),
    "status-500": (500, "internal error", "server_error", None),
    "status-502": (502, "bad gateway", "server_error", None),
    "status-503": (503, "overloaded", "server_error", None),
    "status-400": (400, "invalid request", "invalid_request_error", None),
    "status-401": (401, "invalid api key", "invalid_request_error", "invalid_api_key"),
    "context-length": (
        400,
        "This model's maximum context length is 4096 tokens. However, your messages resulted in 9000 tokens.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
    "content-filter": (400, "The response was filtered by the content policy.", "invalid_request_error",
                       "content_filter"),
}  # fmt: skip


class FaultServer:
    """A uvicorn server in a thread; ``requests[model]`` counts what reached it."""

    def __init__(self):
        self.requests: Counter[str] = Counter()
        self.ok_content = OK_BODY["choices"][0]["message"]["content"]
        self.outage_after: int | None = None  # every request after this many (all models) gets a 503
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.sock = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        self.server = None
        self.thread = None

    def answer(self, model: str):
        from starlette.responses import JSONResponse, Response

        self.requests[model] += 1
        if self.outage_after is not None and sum(self.requests.values()) > self.outage_after:
            return JSONResponse({"error": {"message": "outage", "type": "server_error"}}, status_code=503)
        fault, once = (model[: -len("-once")], True) if model.endswith("-once") else (model, False)
        if fault == "ok" or (once and self.requests[model] > 1):
            message = {"role": "assistant", "content": self.ok_content}
            return JSONResponse({**OK_BODY, "model": model, "choices": [{**OK_BODY["choices"][0], "message": message}]})
        if fault in ERRORS:
            status, message, kind, code = ERRORS[fault]
            body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
            return JSONResponse(body, status_code=status)
        if fault == "html":
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        if fault == "empty-choices":
            return JSONResponse({**OK_BODY, "choices": []})
        if fault == "truncated":
            return Response(json.dumps(OK_BODY)[:40], media_type="application/json")
        if fault == "hang":
            time.sleep(3)
            return JSONResponse(OK_BODY)
        return JSONResponse({"error": {"message": f"unknown model {model}", "type": "not_found"}}, status_code=404)

    def app(self):
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            return await run_in_threadpool(self.answer, body["model"])

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    def __enter__(self) -> FaultServer:
        import asyncio

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(self.app(), log_level="error", access_log=False))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
