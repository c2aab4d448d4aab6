"""The LLM teacher: every call through litellm, cached, counted, budgeted and retried.

``Teacher.chat`` sends a chat request to any litellm model string (``local/…`` is a GGUF served by the local
teacher server, a process of its own reached like any OpenAI-compatible endpoint; ``fake/…`` is the
deterministic test provider, ``openai/…``, ``ollama/…``, ``hosted_vllm/…`` reach services).
``Teacher.generate_json`` adds validation: a reply that does not parse or validate is asked again (a new
sampling seed per attempt, so the retry can differ), then recorded as a failure.

Example:
    >>> teacher = Teacher(TeacherSettings(model="fake/echo"), TeacherStore("/tmp/t.sqlite"), run_id="r1")
    >>> teacher.chat("demo", [{"role": "user", "content": "hi"}]).text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from embpipe.llm.budget import QUESTION_STAGE, RunBudget, TokenBudgetExhausted, budget_stage, estimate_tokens, overrun
from embpipe.llm.completion import send_completion
from embpipe.llm.concurrency import KeyedLocks, Pacer, Reservations
from embpipe.llm.failure_policy import failure_reason, is_owed, item_errors
from embpipe.llm.local_endpoint import LOCAL_PARALLEL, LocalEndpoint, endpoint_for
from embpipe.llm.prompt_fit import context_window, fit_to_context
from embpipe.llm.providers import register_providers
from embpipe.llm.responses import cost_of, stored_reply
from embpipe.llm.teacher_store import TeacherStore
from embpipe.llm.waves import Seat, WaveGate, next_call

T = TypeVar("T")
logger = logging.getLogger(__name__)
SERVED_CONCURRENCY = 4  # calls in flight by default to a served model (vLLM, Ollama, a hosted API)


class TeacherOutputError(ValueError):
    """A reply that does not parse or does not satisfy its schema."""


@dataclass(frozen=True)
class TeacherSettings:
    """How the teacher is reached and limited. ``api_key`` is used for calls and never stored or logged."""

    model: str = "local/qwen2.5-coder-1.5b"
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 300.0
    token_budget: int | None = None
    budget_scope: str = ""
    idle_stages: frozenset[str] = frozenset()
    local_threads: int = 2
    local_reset_each_call: bool = False
    local_parallel: int = LOCAL_PARALLEL
    local_idle_timeout_s: float = 600.0
    context_tokens: int | None = None  # None: the local model's window, else litellm's figure for the model
    max_concurrency: int | None = None  # None: 1 for a local/ or fake/ model, SERVED_CONCURRENCY otherwise


@dataclass(frozen=True)
class Reply:
    """One teacher reply with its token usage; ``cached`` replies cost nothing."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    logprobs: list | None = None


def cache_key(model: str, prompt_version: str, messages: list[dict], params: dict[str, Any]) -> str:
    """Content address of a request: model, prompt template version, messages and parameters."""
    payload = json.dumps([model, prompt_version, messages, params], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Teacher:
    """A litellm-backed teacher with a response cache, a token ledger and a token budget."""

    def __init__(self, settings: TeacherSettings, store: TeacherStore, run_id: str):
        self.settings = settings
        self.store = store
        self.run_id = run_id
        self.pacer = Pacer()
        self._reservations = Reservations()
        self._in_flight = KeyedLocks()
        register_providers()

    @property
    def concurrency(self) -> int:
        """Calls this teacher's stages keep in flight: the setting, else the local model's parallel sequences
        (replies it decodes together), 1 for the test provider, ``SERVED_CONCURRENCY`` for a served one."""
        s = self.settings
        if s.max_concurrency is not None or s.model.startswith("local/"):
            return max(1, s.max_concurrency if s.max_concurrency is not None else s.local_parallel)
        return 1 if s.model.startswith("fake/") else SERVED_CONCURRENCY

    @property
    def decodes_together(self) -> bool:
        """Whether this teacher's calls go in waves (``waves``): a local model decoding replies together."""
        s = self.settings
        return s.model.startswith("local/") and s.local_parallel > 1 and self.concurrency > 1

    @property
    def scope(self) -> str:
        """The ledger scope this teacher's budget counts: the shared one of an ``embpipe run``, else the run id."""
        return self.settings.budget_scope or self.run_id

    @property
    def budget(self) -> RunBudget:
        """The run's token budget: the cap, the ledger scope it counts (this run's id unless one is shared),
        the stages switched off and what the stages before the question stage left."""
        s = self.settings
        budget = RunBudget(s.token_budget, self.scope, s.idle_stages)
        if budget.total is None:
            return budget
        carried = sum(min(self.store.unspent(e), budget.allowance(e) or 0) for e in budget.earlier_stages())
        return RunBudget(budget.total, budget.scope, budget.idle_stages, carried)

    def settle(self, stage: str) -> None:
        """Record that ``stage`` finished, and what it left of its share for the question stage."""
        budget = RunBudget(self.settings.token_budget, self.scope)
        allowance = budget.allowance(stage)
        if allowance is not None and stage != QUESTION_STAGE:
            self.store.settle(budget.scope, stage, allowance, self.store.scope_tokens(budget.scope, stage))

    def remaining(self, stage: str) -> int | None:
        """Tokens ``stage`` may still use in this run (``None``: no cap)."""
        budget = self.budget
        allowance = budget.allowance(budget_stage(stage))
        if budget.total is None or allowance is None:
            return None
        spent_total, spent_stage = self._committed(budget.scope, stage)
        return max(0, min(budget.total - spent_total, allowance - spent_stage))

    def _committed(self, scope: str, stage: str) -> tuple[int, int]:
        """Tokens of the run and of ``stage``'s share spent in the ledger or reserved by calls in flight."""
        total, in_stage = self._reservations.held(budget_stage(stage))
        spent_stage = self.store.scope_tokens(scope, budget_stage(stage))
        return self.store.scope_tokens(scope) + total, spent_stage + in_stage

    def _reserve(self, stage: str, messages: list[dict], max_tokens: int, wait: bool = True) -> int:
        """Reserve the call's estimated tokens (prompt + ``max_tokens``) before it is sent, so calls in flight
        together can never pass the budget. A call that does not fit waits while others are in flight (they settle
        below their estimates); ``TokenBudgetExhausted`` once it does not fit with none in flight, or at once
        without ``wait``."""
        budget, needed = self.budget, estimate_tokens(messages) + max_tokens
        if budget.total is None:
            return 0
        with self._reservations.lock:
            while (reason := overrun(budget, stage, needed, *self._committed(budget.scope, stage))) is not None:
                if not wait or not self._reservations.wait():  # a call in flight may settle below its estimate
                    raise TokenBudgetExhausted(reason)
            self._reservations.add(budget_stage(stage), needed)
        return needed

    def context_tokens(self) -> int | None:
        """The teacher's context window (see ``prompt_fit.context_window``)."""
        return context_window(self.settings.model, self.settings.context_tokens)

    def fitted(self, stage: str, messages: list[dict], max_tokens: int) -> list[dict]:
        """``messages`` fitted to the context window; a cut is logged and recorded in the store."""
        window = self.context_tokens()
        fitted = fit_to_context(messages, window, max_tokens)
        if fitted.cut_characters:
            logger.warning("%s: prompt cut by %d characters to fit the %d-token context window", stage,
                           fitted.cut_characters, window)  # fmt: skip
            self.store.record_cut(self.run_id, stage, fitted.cut_characters, int(window or 0))
        return fitted.messages

    def local_endpoint(self) -> LocalEndpoint | None:
        """The local teacher server behind a ``local/…`` model, else ``None``."""
        if not self.settings.model.startswith("local/"):
            return None
        s, name = self.settings, self.settings.model.split("/", 1)[1]
        return endpoint_for(name, s.local_threads, s.local_reset_each_call, s.local_idle_timeout_s, s.local_parallel)

    def chat(
        self,
        stage: str,
        messages: list[dict],
        *,
        prompt_version: str = "1",
        max_tokens: int = 256,
        json_schema: dict | None = None,
        logprobs: int | None = None,
        attempt: int = 0,
    ) -> Reply:
        """One chat completion, from the cache when this exact request was answered before."""
        params: dict[str, Any] = {"temperature": self.settings.temperature, "max_tokens": max_tokens}
        if attempt:
            params.update(temperature=max(self.settings.temperature, 0.7), seed=attempt)
        if json_schema is not None:
            params["response_format"] = {"type": "json_object", "schema": json_schema}
        if logprobs:
            params.update(logprobs=True, top_logprobs=logprobs)
        messages = self.fitted(stage, messages, max_tokens)
        key = cache_key(self.settings.model, prompt_version, messages, params)
        wave = next_call() if self.decodes_together else None
        if wave is not None:
            return self._answer_in_wave(stage, key, messages, params, *wave)
        reserved = self._reserve(stage, messages, max_tokens)
        try:
            with self._in_flight.hold(key):  # an identical request in flight: wait for its cached reply
                return self._cached(stage, key) or self._fresh(stage, key, messages, params)
        finally:
            self._reservations.add(budget_stage(stage), -reserved)  # the ledger row, if any, now counts it

    def _answer_in_wave(
        self, stage: str, key: str, messages: list[dict], params: dict[str, Any], gate: WaveGate, order: tuple
    ) -> Reply:
        """The cached reply for ``key``, else a completion sent in the stage's next wave (``waves``): its tokens
        are reserved when the wave leaves, in the items' order, and the server decodes the wave together."""
        cached = self._cached(stage, key)
        if cached is not None:
            return cached

        def send(reserved: int, seat: Seat) -> Reply:
            try:
                return self._fresh(stage, key, messages, params, seat)
            finally:
                self._reservations.add(budget_stage(stage), -reserved)

        return gate.call(order, lambda: self._reserve(stage, messages, params["max_tokens"], wait=False), send)

    def _cached(self, stage: str, key: str) -> Reply | None:
        """The cached reply for ``key`` (one ledger row, at no cost), else ``None``."""
        hit = self.store.get(key)
        if hit is None:
            return None
        self.store.record_call(self.run_id, stage, self.settings.model, hit, cached=True, cost=0.0, scope=self.scope)
        return Reply(hit.text, hit.prompt_tokens, hit.completion_tokens, True, hit.logprobs)

    def _fresh(
        self, stage: str, key: str, messages: list[dict], params: dict[str, Any], seat: Seat | None = None
    ) -> Reply:
        """A new completion, stored under ``key`` with its ledger row."""
        model = self.settings.model
        response = send_completion(self.settings, self.local_endpoint(), self.pacer, messages, params, seat)
        reply = stored_reply(response)
        self.store.put(key, model, stage, reply)
        self.store.record_call(self.run_id, stage, model, reply, cached=False, cost=cost_of(response), scope=self.scope)
        return Reply(reply.text, reply.prompt_tokens, reply.completion_tokens, False, reply.logprobs)

    def generate_json(
        self,
        stage: str,
        item_id: str,
        messages: list[dict],
        parse: Callable[[dict], T],
        *,
        schema: dict,
        prompt_version: str = "1",
        max_tokens: int = 256,
    ) -> T | None:
        """A validated object from the teacher, or ``None`` after the retries (the failure is recorded).

        Unusable replies are asked again with a new sampling seed; transient errors (timeouts, rate limits,
        connection errors) are retried with exponential backoff inside ``chat``. Either way the item is
        recorded as failed once the retries are spent, and the stage goes on. ``parse`` turns the decoded
        JSON object into the result and raises ``TeacherOutputError`` (or ``ValueError``/``KeyError``/
        ``TypeError``) when it is unusable.
        """
        reason, owed = "", False
        for attempt in range(self.settings.max_retries + 1):
            try:
                reply = self.chat(
                    stage,
                    messages,
                    prompt_version=prompt_version,
                    max_tokens=max_tokens,
                    json_schema=schema,
                    attempt=attempt,
                )
            except item_errors() as error:  # transient ones were already retried with backoff inside chat
                reason, owed = failure_reason(error, self.settings.max_retries), is_owed(error)
                break
            try:
                decoded = json.loads(reply.text)
                if not isinstance(decoded, dict):
                    raise TeacherOutputError(f"expected a JSON object, got {type(decoded).__name__}")
                return parse(decoded)
            except (json.JSONDecodeError, TeacherOutputError, ValueError, KeyError, TypeError) as error:
                reason = f"{type(error).__name__}: {error}; reply: {reply.text[:300]!r}"
        self.store.record_failure(self.run_id, stage, item_id, reason, owed)
        logger.warning("%s: item %s failed: %s", stage, item_id, reason[:200])
        return None
