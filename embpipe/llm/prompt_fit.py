"""Prompts fitted to the teacher's context window before they are sent.

A prompt is measured with the budget's estimate (a deliberately high one). When it and the reply's
``max_tokens`` would pass the context window, the longest message loses characters from its middle, keeping
its start and its end (where the instructions and the reply format are), until the prompt fits; the cut is
marked in the text and its size reported, so the caller can record it. A model whose window is unknown is
sent the prompt as it is (the endpoint's own 400 then fails that one item).

Example:
    >>> fitted = fit_to_context([{"role": "user", "content": "x" * 3000}], context_tokens=600, max_tokens=100)
    >>> fitted.cut_characters > 0 and fitted.messages[0]["content"].count(CUT_MARK) == 1
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from embpipe.llm.budget import estimate_tokens

CUT_MARK = "\n[…]\n"
CHARACTERS_PER_ESTIMATED_TOKEN = 3  # the inverse of budget.estimate_text_tokens
SAFETY_TOKENS = 32


@dataclass(frozen=True)
class FittedPrompt:
    """The messages to send and how many characters were cut from them to fit."""

    messages: list[dict]
    cut_characters: int = 0


@lru_cache(maxsize=32)  # asked before every call; litellm's lookup (or its miss) once per model
def context_window(model: str, configured: int | None = None) -> int | None:
    """A teacher's context window in tokens: ``configured``, else the local model's, else litellm's figure for
    ``model``, else ``None`` (unknown)."""
    if configured:
        return configured
    if model.startswith("local/"):
        from embpipe.llm.model_weights import spec_for

        return spec_for(model.removeprefix("local/")).context_length
    try:
        import litellm

        info = litellm.get_model_info(model)
    except Exception:  # litellm raises for a model it has no figures for
        return None
    return info.get("max_input_tokens") or info.get("max_tokens")


def cut_middle(text: str, remove: int) -> str:
    """``text`` without about ``remove`` characters from its middle, the cut marked."""
    keep = max(len(text) - remove - len(CUT_MARK), 0)
    head = (keep + 1) // 2
    return text[:head] + CUT_MARK + text[len(text) - (keep - head) :]


def fit_to_context(messages: list[dict], context_tokens: int | None, max_tokens: int) -> FittedPrompt:
    """``messages`` fitted so that the prompt's estimate plus ``max_tokens`` stays within ``context_tokens``."""
    if context_tokens is None:
        return FittedPrompt(messages)
    allowed = context_tokens - max_tokens - SAFETY_TOKENS
    if allowed <= 0:
        raise ValueError(f"max_tokens {max_tokens} leaves no room for a prompt in a {context_tokens}-token context")
    fitted, cut = [dict(m) for m in messages], 0
    while (excess := estimate_tokens(fitted) - allowed) > 0:
        longest = max(fitted, key=lambda m: len(str(m.get("content", ""))))
        text = str(longest.get("content", ""))
        if len(text) <= len(CUT_MARK):
            raise ValueError(f"the prompt's fixed parts alone pass the {context_tokens}-token context window")
        shorter = cut_middle(text, excess * CHARACTERS_PER_ESTIMATED_TOKEN)
        cut += len(text) - len(shorter)
        longest["content"] = shorter
    return FittedPrompt(fitted if cut else messages, cut)
