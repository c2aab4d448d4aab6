"""Triplet labels by the teacher: which of two passages is closer to an anchor passage, or "ambiguous".

Two ways to ask, both free of position bias, both giving P(first is closer) that is labelled when it is at
least ``0.5 + margin`` (or at most ``0.5 - margin``) and ambiguous otherwise; ambiguous pairs are dropped,
never guessed.

- ``pairwise``: the teacher sees the anchor with both candidates and answers A or B, in both orders. With
  token log-probabilities, P(first) is P("A") in the first order averaged with P("B") in the swapped order;
  without them the two written answers must agree, else the pair is ambiguous.
- ``pointwise``: the teacher answers Yes/No "same specific topic?" for (anchor, first) and (anchor, second)
  separately, so no candidate has a position; P(first) = sigmoid(logit P(yes | first) - logit P(yes | second)),
  the Bradley-Terry preference between the two scores.
  Small local teachers need this one: the bundled 1.5B model puts ~0.7 on "A" whatever the passages say,
  so its pairwise averages sit at 0.50-0.53 even for a same-document versus other-document pair, while its
  pointwise P(yes) ranks the same-document candidate higher.

Example:
    >>> agreeing_choice("A", "B")  # the first order says A, the swapped order says B: both mean "first"
    'first'
    >>> agreeing_choice("A", "A") is None  # contradictory: the answer followed the position
    True
    >>> verdict_from_topic_scores(0.8, 0.2, margin=0.1)
    CloserVerdict(closer='first', confidence=0.941)
    >>> verdict_from_topic_scores(0.6, 0.6, margin=0.1).closer
    'ambiguous'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from embpipe.llm.budget import TokenBudgetExhausted
from embpipe.llm.failure_policy import failure_reason, is_owed, item_errors
from embpipe.llm.judge import ask_yes_probability
from embpipe.llm.teacher import Teacher

COMPARISONS = ("pointwise", "pairwise")
PROMPT_VERSION = "closer-passage-v1"
TOPIC_PROMPT_VERSION = "same-topic-v1"
TOPIC_SYSTEM = "You compare passages from one document collection. Answer Yes or No only."
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


def same_topic_messages(anchor: str, candidate: str) -> list[dict]:
    """Chat messages asking whether ``candidate`` is about the same specific topic as ``anchor``."""
    user = (
        f"PASSAGE 1:\n{anchor}\n\nPASSAGE 2:\n{candidate}\n\n"
        "Are these two passages about the same specific topic? Yes or No."
    )
    return [{"role": "system", "content": TOPIC_SYSTEM}, {"role": "user", "content": user}]


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


def decide(p_first: float, margin: float) -> CloserVerdict:
    """The verdict for P(first is closer) under the ambiguity ``margin``."""
    if p_first >= 0.5 + margin:
        return CloserVerdict("first", p_first)
    if p_first <= 0.5 - margin:
        return CloserVerdict("second", p_first)
    return CloserVerdict("ambiguous", p_first)


def verdict_from_probabilities(p_a_first: float, p_a_swapped: float, margin: float) -> CloserVerdict:
    """Average P(first is closer) over both orders, then decide with the ambiguity ``margin``."""
    return decide((p_a_first + (1.0 - p_a_swapped)) / 2, margin)


def log_odds(probability: float) -> float:
    """logit(p), with p kept inside [0.001, 0.999] so certain answers stay finite."""
    p = min(max(probability, 0.001), 0.999)
    return math.log(p / (1 - p))


def verdict_from_topic_scores(p_yes_first: float, p_yes_second: float, margin: float) -> CloserVerdict:
    """P(first is closer) = sigmoid(logit p_first - logit p_second) of the same-topic probabilities, then decide."""
    difference = log_odds(p_yes_first) - log_odds(p_yes_second)
    return decide(round(1 / (1 + math.exp(-difference)), 3), margin)


def judge_closer(
    teacher: Teacher,
    stage: str,
    item_id: str,
    anchor: str,
    first: str,
    second: str,
    margin: float,
    comparison: str = "pointwise",
) -> CloserVerdict | None:
    """The teacher's verdict on (anchor, first, second), or ``None`` (recorded) when it gave no usable answer.

    ``comparison`` is one of ``COMPARISONS``. Raises ``TokenBudgetExhausted`` when the budget forbids a call.
    """
    if comparison == "pointwise":
        return judge_pointwise(teacher, stage, item_id, anchor, first, second, margin)
    if comparison == "pairwise":
        return judge_pairwise(teacher, stage, item_id, anchor, first, second, margin)
    raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}")


def judge_pointwise(
    teacher: Teacher, stage: str, item_id: str, anchor: str, first: str, second: str, margin: float
) -> CloserVerdict | None:
    """Same-topic P(yes) for each candidate on its own; ``None`` when either has no answer (recorded)."""
    scores = []
    for candidate in (first, second):
        messages = same_topic_messages(anchor, candidate)
        score = ask_yes_probability(teacher, stage, item_id, messages, TOPIC_PROMPT_VERSION)
        if score is None:
            return None
        scores.append(score)
    return verdict_from_topic_scores(scores[0], scores[1], margin)


def judge_pairwise(
    teacher: Teacher, stage: str, item_id: str, anchor: str, first: str, second: str, margin: float
) -> CloserVerdict | None:
    """A/B in both orders: averaged probabilities, or agreeing written answers where there are none."""
    answers = []
    for option_a, option_b in ((first, second), (second, first)):
        messages = closer_messages(anchor, option_a, option_b)
        try:
            reply = teacher.chat(stage, messages, prompt_version=PROMPT_VERSION, max_tokens=1, logprobs=TOP_LOGPROBS)
        except TokenBudgetExhausted:
            raise
        except item_errors() as error:
            reason = failure_reason(error, teacher.settings.max_retries)
            teacher.store.record_failure(teacher.run_id, stage, item_id, reason, is_owed(error))
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
