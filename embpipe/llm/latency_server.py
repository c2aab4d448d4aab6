"""A stand-in served teacher: an OpenAI-compatible endpoint on 127.0.0.1 with a fixed latency and a rate limit.

It answers ``POST /v1/chat/completions`` like the fake provider (``fake_provider.fake_reply``: questions from
the passage's words, minimal schema instances), after ``latency_s``, from as many threads as requests arrive, so
it behaves like a served GPU model or a hosted API seen over the network. Beyond ``requests_per_s`` in any
one-second window, and for every request in the first ``storm_s`` after the first request, it answers HTTP 429
with a ``Retry-After`` header. It records each request's arrival time and status, for the scaling benchmark and
the tests; nothing leaves the machine.

    with LatencyServer(latency_s=0.3, requests_per_s=20) as server:
        teacher = TeacherSettings(model="openai/stand-in", api_base=server.url, api_key="unused")
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from embpipe.llm.fake_provider import fake_reply


@dataclass
class Arrival:
    """One request as the server saw it: when it arrived (monotonic seconds) and the status it got."""

    at: float
    status: int


@dataclass
class ServerLog:
    """Every request's arrival, in arrival order (thread-safe)."""

    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, at: float, status: int) -> None:
        with self.lock:
            self.arrivals.append(Arrival(at, status))

    def count(self, status: int) -> int:
        with self.lock:
            return sum(a.status == status for a in self.arrivals)


class RateWindow:
    """At most ``per_s`` admitted requests in any one-second window (``None``: no limit); how long to wait if not."""

    def __init__(self, per_s: float | None):
        self.per_s = per_s
        self.admitted: list[float] = []
        self.lock = threading.Lock()

    def admit(self, now: float) -> float:
        """0 when the request is admitted, else the seconds until a slot frees."""
        if self.per_s is None:
            return 0.0
        with self.lock:
            self.admitted = [t for t in self.admitted if now - t < 1.0]
            if len(self.admitted) < self.per_s:
                self.admitted.append(now)
                return 0.0
            return 1.0 - (now - self.admitted[0])


def completion_body(request: dict) -> dict:
    """An OpenAI chat-completion body answering ``request`` as the fake provider would."""
    messages = request.get("messages", [])
    schema = (request.get("response_format") or {}).get("schema")
    text = fake_reply(messages, schema)
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
    completion_tokens = len(text) // 4 + 1
    return {
        "id": "chatcmpl-stand-in",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(request.get("model", "stand-in")),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class LatencyServer:
    """The stand-in teacher, served from a background thread while the ``with`` block runs."""

    def __init__(self, latency_s: float = 0.3, requests_per_s: float | None = None, storm_s: float = 0.0):
        self.latency_s, self.storm_s = latency_s, storm_s
        self.window = RateWindow(requests_per_s)
        self.log = ServerLog()
        self.first_request: float | None = None
        self._first_lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> LatencyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_before_answer(self, now: float) -> float:
        """0 to answer, else the ``Retry-After`` seconds of a 429."""
        with self._first_lock:
            self.first_request = now if self.first_request is None else self.first_request
        if now - self.first_request < self.storm_s:
            return self.storm_s - (now - self.first_request)
        return self.window.admit(now)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: the log is ``server.log``
                pass

            def send_json(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                now = time.monotonic()
                wait = server.wait_before_answer(now)
                if wait > 0:
                    server.log.add(now, 429)
                    error = {"error": {"message": "rate limit", "type": "rate_limit_exceeded", "code": "429"}}
                    self.send_json(429, error, {"Retry-After": f"{math.ceil(wait * 10) / 10:.1f}"})
                    return
                server.log.add(now, 200)
                time.sleep(server.latency_s)
                self.send_json(200, completion_body(request))

        return Handler
