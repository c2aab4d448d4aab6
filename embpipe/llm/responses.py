"""litellm responses: built for the custom providers, read into what the teacher caches and what a call cost."""

from __future__ import annotations

import json
from typing import Any

from embpipe.llm.teacher_store import CachedReply


def model_response(model: str, text: str, prompt_tokens: int, completion_tokens: int, logprobs: Any = None):
    """A litellm ``ModelResponse`` with one assistant choice and its usage."""
    import litellm

    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
    if logprobs is not None:
        choice["logprobs"] = logprobs
    return litellm.ModelResponse(
        model=model,
        choices=[choice],
        usage=litellm.Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        ),
    )


def stored_reply(response) -> CachedReply:
    """The cacheable part of a litellm response: text, top log-probabilities and usage."""
    choice = response.choices[0]
    text = choice.message.content or ""
    usage = getattr(response, "usage", None)
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is not None and not isinstance(logprobs, list):
        content = logprobs.get("content") if isinstance(logprobs, dict) else getattr(logprobs, "content", None)
        logprobs = [dict(token) if not isinstance(token, dict) else token for token in (content or [])]
        logprobs = json.loads(json.dumps(logprobs, default=lambda o: getattr(o, "__dict__", str(o))))
    return CachedReply(
        text,
        logprobs or None,
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
    )


def cost_of(response) -> float:
    """The call's cost in USD where litellm knows the model's price, else 0."""
    import litellm

    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # litellm raises assorted errors for models without a price; cost is then unknown.
        return 0.0
