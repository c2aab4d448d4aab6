"""Building litellm ``ModelResponse`` objects for the custom providers."""

from __future__ import annotations

from typing import Any


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
