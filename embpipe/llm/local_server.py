"""The local teacher server: one process that holds a GGUF model and answers OpenAI chat requests.

The offline teacher runs here rather than inside the Dagster run, so a native crash of llama.cpp (a
segfault, an illegal instruction) ends this process only: the run sees a refused connection and records a
teacher failure. Every run process, the web UI's included, reaches one loaded model through litellm like
any served model (``local_endpoint.LocalEndpoint`` starts and finds it). Requests are answered by
``LocalRuntime`` (grammar-constrained JSON, next-token log-probabilities for the judges): one at a time, or
with ``--parallel N`` up to N generation requests that arrive together decoded side by side.

Start by hand (normally ``local_endpoint`` does it)::

    python -m embpipe.llm.local_server --model smollm2-135m --state /tmp/smol.json

Once the model is loaded and the socket is bound it writes ``--state`` (pid, port, model), serves
``GET /health`` (with the waves and loose batches decoded together so far), ``GET /v1/models`` and
``POST /v1/chat/completions`` (a request's ``embpipe_wave`` field places it in its wave: ``waves``), and exits
after ``--idle-timeout-s`` without a request, removing the state file. Errors follow OpenAI's shape, so
litellm maps them (a prompt longer than the context becomes a 400 ``context_length_exceeded``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from embpipe.llm.llama_builds import activate_best_build, cpu_flags, missing_baseline_flags
from embpipe.llm.local_runtime import LocalRuntime
from embpipe.llm.waves import WAVE_FIELD, Seat

ACCEPTED_PARAMS = ("temperature", "max_tokens", "seed", "response_format", "logprobs", "top_logprobs", "stop")
EXIT_UNSUPPORTED_CPU = 3


def check_cpu() -> None:
    """Exit with a clear message (not an illegal-instruction crash) on an x86-64 CPU without AVX2."""
    missing = missing_baseline_flags(cpu_flags())
    if missing:
        print(
            f"This CPU lacks {', '.join(missing)}, which the portable llama-cpp-python build needs. Use a served "
            "teacher (--teacher openai/… or ollama/… with its api_base), or build the local engine for this CPU: "
            'EMBPIPE_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=ON" bash scripts/install.sh',
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_UNSUPPORTED_CPU)


def error_body(message: str, kind: str, code: str | None = None) -> dict:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def completion_body(model: str, raw: dict) -> dict:
    """``raw`` (llama-cpp-python's or our next-token reply) as a complete OpenAI chat completion."""
    choice = raw["choices"][0]
    usage = raw.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": choice["message"].get("content") or ""},
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason") or "stop",
            }
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def wave_seat(body: dict) -> Seat | None:
    """The request's place in its wave (``waves``), when the teacher sent it in one."""
    wave = body.get(WAVE_FIELD)
    if wave is None:
        return None
    seat = Seat(str(wave["id"]), int(wave["size"]), int(wave["position"]))
    if not 0 <= seat.position < seat.size:
        raise ValueError(f"position {seat.position} outside a wave of {seat.size}")
    return seat


class LocalServerApp:
    """The Starlette app around one loaded model, with the time of its last request for the idle exit."""

    def __init__(self, runtime: LocalRuntime, model: str, on_shutdown=lambda: None):
        self.runtime = runtime
        self.model = model
        self.on_shutdown = on_shutdown
        self.last_request = time.monotonic()

    def routes(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            self.on_shutdown()  # before uvicorn re-raises a SIGTERM it caught, which skips any ``finally``

        return Starlette(
            lifespan=lifespan,
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ],
        )

    async def health(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok", "model": self.model, "pid": os.getpid(), **self.runtime.answered()})

    async def models(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "embpipe"}]})

    async def chat(self, request):
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        self.last_request = time.monotonic()
        try:
            body = await request.json()
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as error:
            return JSONResponse(error_body(f"bad request: {error}", "invalid_request_error"), status_code=400)
        params = {k: body[k] for k in ACCEPTED_PARAMS if body.get(k) is not None}
        try:
            seat = wave_seat(body)
        except (ValueError, KeyError, TypeError) as error:
            return JSONResponse(error_body(f"bad {WAVE_FIELD}: {error}", "invalid_request_error"), status_code=400)
        try:
            raw = await run_in_threadpool(self.runtime.chat, self.model, messages, params, seat)
        except ValueError as error:  # llama-cpp-python's "Requested tokens (N) exceed context window of M"
            code = "context_length_exceeded" if "context window" in str(error) else None
            return JSONResponse(error_body(str(error), "invalid_request_error", code), status_code=400)
        finally:
            self.last_request = time.monotonic()
        return JSONResponse(completion_body(self.model, raw))


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state file atomically (readers never see half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(state))
    partial.replace(path)


def remove_state(path: Path) -> None:
    """Remove the state file if it is still this process's."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


async def serve(app: LocalServerApp, sock: socket.socket, idle_timeout_s: float) -> None:
    """Serve on ``sock`` until ``idle_timeout_s`` pass without a request."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app.routes(), log_level="warning", access_log=False))

    async def exit_when_idle() -> None:
        while not server.should_exit:
            await asyncio.sleep(min(5.0, idle_timeout_s))
            if time.monotonic() - app.last_request > idle_timeout_s:
                server.should_exit = True

    watcher = asyncio.create_task(exit_when_idle())
    await server.serve(sockets=[sock])
    watcher.cancel()


def main(argv: list[str] | None = None) -> int:
    """Load the model, bind a loopback port, publish the state file and serve until idle."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="local model name, e.g. qwen2.5-coder-1.5b")
    parser.add_argument("--state", required=True, type=Path, help="JSON file to publish pid and port in")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reset-each-call", action="store_true")
    parser.add_argument("--parallel", type=int, default=1, help="replies decoded together (parallel sequences)")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0)
    args = parser.parse_args(argv)
    faulthandler.enable()  # a native crash leaves a Python traceback in the server log
    check_cpu()
    build = activate_best_build()
    runtime = LocalRuntime(n_threads=args.threads, reset_each_call=args.reset_each_call, parallel=args.parallel)
    runtime.model(args.model)  # load before publishing, so a published server is ready
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from now on, so a client that reads the state file is never refused
    state = {"pid": os.getpid(), "port": sock.getsockname()[1], "model": args.model, "threads": args.threads,
             "build": build}  # fmt: skip
    write_state(args.state, state)
    print(
        f"local teacher {args.model} ({build} llama.cpp build) serving on 127.0.0.1:{state['port']} "
        f"(pid {state['pid']})",
        flush=True,
    )
    try:
        app = LocalServerApp(runtime, args.model, on_shutdown=lambda: remove_state(args.state))
        asyncio.run(serve(app, sock, args.idle_timeout_s))
    finally:
        remove_state(args.state)
        runtime.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
