"""Triplet labels by the teacher: which of two passages is closer to an anchor passage, or "ambiguous".

LLM pairwise choices are position-biased, so each pair is asked in both orders. Where the provider returns
token log-probabilities, P(first is closer) is P("A") in the first order averaged with P("B") in the swapped
order; the pair is labelled when that average is at least ``0.5 + margin`` (or at most ``0.5 - margin``)
and ambiguous otherwise. Where it does not, the two written answers must agree, else the pair is ambiguous.
Ambiguous pairs are dropped, never guessed.

Example:
    >>> agreeing_choice("A", "B")  # the first order says A, the swapped order says B: both mean "first"
    'first'
    >>> agreeing_choice("A", "A") is None  # contradictory: the answer followed the position
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from embpipe.llm.teacher import Teacher, TokenBudgetExhausted, transient_errors

PROMPT_VERSION = "closer-passage-v1"
CLOSER_SYSTEM = (
    "You compare passages from one document collection. Answer A or B only: which passage is about the "
    "same specific topic as the ANCHOR passage?"
)
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class CloserVerdict:
    """``closer`` is "first", "second" or "ambiguous"; ``confidence`` is P(first is closer) or the agreement."""

    closer: str
    confidence: float


def closer_messages(anchor: str, option_a: str, option_b: str) -> list[dict]:
    """Chat messages asking whether passage A or B is closer to ``anchor``."""
    user = f"ANCHOR: {anchor}\n\nPASSAGE A: {option_a}\n\nPASSAGE B: {option_b}\n\nWhich passage is closer, A or B?"
    return [{"role": "system", "content": CLOSER_SYSTEM}, {"role": "user", "content": user}]


def choice_probability(text: str, logprobs: list | None) -> float | None:
    """P("A") against "B" from the first token's top log-probabilities (``None`` when neither is there)."""
    if not logprobs:
        return None
    first = logprobs[0]
    candidates = first.get("top_logprobs") or [first]
    a = sum(math.exp(c["logprob"]) for c in candidates if str(c["token"]).strip().upper() == "A")
    b = sum(math.exp(c["logprob"]) for c in candidates if str(c["token"]).strip().upper() == "B")
    return a / (a + b) if a + b > 0 else None


def written_choice(text: str) -> str | None:
    """ "A" or "B" when the reply starts with one of them."""
    word = text.strip().split(maxsplit=1)[0].strip(".,!:()\"'").upper() if text.strip() else ""
    return word if word in {"A", "B"} else None


def agreeing_choice(first_order: str | None, swapped_order: str | None) -> str | None:
    """ "first" / "second" when the answers in both orders name the same passage, else ``None``."""
    if first_order is None or swapped_order is None or first_order == swapped_order:
        return None
    return "first" if first_order == "A" else "second"


def verdict_from_probabilities(p_a_first: float, p_a_swapped: float, margin: float) -> CloserVerdict:
    """Average P(first is closer) over both orders, then decide with the ambiguity ``margin``."""
    p_first = (p_a_first + (1.0 - p_a_swapped)) / 2
    if p_first >= 0.5 + margin:
        return CloserVerdict("first", p_first)
    if p_first <= 0.5 - margin:
        return CloserVerdict("second", p_first)
    return CloserVerdict("ambiguous", p_first)


def judge_closer(
    teacher: Teacher, stage: str, item_id: str, anchor: str, first: str, second: str, margin: float
) -> CloserVerdict | None:
    """The teacher's verdict on (anchor, first, second), or ``None`` (recorded) when it gave no usable answer.

    Raises ``TokenBudgetExhausted`` when the budget forbids a call, so callers can stop cleanly.
    """
    answers = []
    for option_a, option_b in ((first, second), (second, first)):
        messages = closer_messages(anchor, option_a, option_b)
        try:
            reply = teacher.chat(stage, messages, prompt_version=PROMPT_VERSION, max_tokens=1, logprobs=TOP_LOGPROBS)
        except TokenBudgetExhausted:
            raise
        except transient_errors() as error:
            teacher.store.record_failure(teacher.run_id, stage, item_id, f"teacher unavailable: {error}")
            return None
        answers.append((choice_probability(reply.text, reply.logprobs), written_choice(reply.text)))
    (p_first_order, word_first), (p_swapped, word_swapped) = answers
    if p_first_order is not None and p_swapped is not None:
        return verdict_from_probabilities(p_first_order, p_swapped, margin)
    if word_first is None or word_swapped is None:
        teacher.store.record_failure(teacher.run_id, stage, item_id, "no A/B answer in one of the two orders")
        return None
    agreed = agreeing_choice(word_first, word_swapped)
    return CloserVerdict(agreed, 1.0) if agreed else CloserVerdict("ambiguous", 0.5)
