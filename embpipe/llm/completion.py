"""One chat completion through litellm, with the retries a transient error earns.

``send_completion`` is the teacher's only way out: a ``local/…`` model goes to the local teacher server (started
or found by its ``LocalEndpoint``), anything else to litellm's provider for the model string. Timeouts, rate
limits and dropped connections are retried with exponential backoff (or the provider's ``Retry-After``); a
rate limit pauses every worker of the teacher through its ``Pacer``; a local server that died is reported as
``TeacherCrashed`` instead of being retried.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from embpipe.llm.concurrency import Pacer, retry_after
from embpipe.llm.failure_policy import MalformedReply, rate_limit_error, transient_errors
from embpipe.llm.local_endpoint import LocalEndpoint
from embpipe.llm.waves import WAVE_FIELD, Seat

logger = logging.getLogger(__name__)


class CompletionSettings(Protocol):
    """What sending needs of the teacher's settings (``teacher.TeacherSettings`` has it)."""

    model: str
    api_base: str | None
    api_key: str | None
    max_retries: int
    backoff_s: float
    timeout_s: float


def send_completion(
    settings: CompletionSettings,
    local: LocalEndpoint | None,
    pacer: Pacer,
    messages: list[dict],
    params: dict[str, Any],
    seat: Seat | None = None,
):
    """litellm's response to ``messages`` with ``params``; ``seat`` places the call in its wave (``waves``)."""
    import litellm

    kwargs: dict[str, Any] = dict(params, model=settings.model, messages=messages, timeout=settings.timeout_s)
    if settings.api_base:
        kwargs["api_base"] = settings.api_base
    if settings.api_key:
        kwargs["api_key"] = settings.api_key
    kwargs["max_retries"] = 0  # the OpenAI SDK's hidden retries off: ours below are the only ones
    if local is not None:  # an OpenAI-compatible server of our own
        kwargs.update(model=f"openai/{local.model}", api_key="local-teacher")
    if seat is not None:
        kwargs["extra_body"] = {WAVE_FIELD: seat.body()}
    for attempt in range(settings.max_retries + 1):
        if local is not None:
            kwargs["api_base"] = local.ensure()
        pacer.wait()
        try:
            response = litellm.completion(**kwargs)
            if not getattr(response, "choices", None):
                raise MalformedReply(f"the reply has no choices: {str(response)[:200]}")
            return response
        except Exception as error:
            if local is not None and isinstance(error, transient_errors()) and local.gone():
                raise local.crashed() from error
            if not isinstance(error, transient_errors()) or attempt == settings.max_retries:
                raise
            delay = retry_after(error) or settings.backoff_s * 2**attempt
            logger.warning("teacher call failed (%s); retry %d in %.1fs", type(error).__name__, attempt + 1, delay)
            if isinstance(error, rate_limit_error()):
                pacer.pause(delay)  # every worker waits, not only this one
            else:
                time.sleep(delay)
    raise AssertionError("unreachable")
