"""Relevance judgements by the teacher: P(Yes) that a passage answers a question.

Where the provider returns token log-probabilities (the local provider, OpenAI, vLLM), the score is the
probability mass of "Yes" over "Yes" + "No" in the first token's distribution, a calibrated 0–1 score rather
than a position-biased generated word. Where it does not, the reply text decides (1.0 for yes, 0.0 for no).
Replies that are neither are asked again, then recorded as failures.

Example:
    >>> yes_probability("Yes", [{"token": "Yes", "logprob": -0.1, "top_logprobs": [
    ...     {"token": "Yes", "logprob": -0.1}, {"token": "No", "logprob": -2.4}]}])
    0.909
"""

from __future__ import annotations

import math

from embpipe.llm.budget import TokenBudgetExhausted
from embpipe.llm.failure_policy import failure_reason, is_owed, item_errors
from embpipe.llm.teacher import Teacher

PROMPT_VERSION = "relevance-judge-v1"
JUDGE_SYSTEM = (
    "You judge search results for a document retrieval system. Answer Yes or No only: does the PASSAGE "
    "contain the information that answers the QUESTION?"
)
TOP_LOGPROBS = 5


def relevance_messages(question: str, passage: str) -> list[dict]:
    """Chat messages asking whether ``passage`` answers ``question``."""
    user = f"QUESTION: {question}\nPASSAGE: {passage}\nDoes the passage answer the question? Yes or No."
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def yes_probability(text: str, logprobs: list | None) -> float | None:
    """P(Yes) from the first token's top log-probabilities, else from the text; ``None`` when neither says."""
    if logprobs:
        first = logprobs[0]
        candidates = first.get("top_logprobs") or [first]
        yes = sum(math.exp(c["logprob"]) for c in candidates if str(c["token"]).strip().lower() == "yes")
        no = sum(math.exp(c["logprob"]) for c in candidates if str(c["token"]).strip().lower() == "no")
        if yes + no > 0:
            return round(yes / (yes + no), 3)
    word = text.strip().split(maxsplit=1)[0].strip(".,!:").lower() if text.strip() else ""
    return {"yes": 1.0, "no": 0.0}.get(word)


def judge_relevance(teacher: Teacher, stage: str, item_id: str, question: str, passage: str) -> float | None:
    """The teacher's P(passage answers question), or ``None`` (recorded as a failure) when it gives no verdict.

    Raises ``TokenBudgetExhausted`` when the budget forbids the call, so callers can stop cleanly.
    """
    return ask_yes_probability(teacher, stage, item_id, relevance_messages(question, passage), PROMPT_VERSION)


def ask_yes_probability(
    teacher: Teacher, stage: str, item_id: str, messages: list[dict], prompt_version: str
) -> float | None:
    """P(Yes) for a one-token Yes/No question, asked again on a non-answer, else ``None`` (recorded).

    Raises ``TokenBudgetExhausted`` when the budget forbids the call, so callers can stop cleanly.
    """
    reason, owed = "no Yes/No verdict", False
    for attempt in range(teacher.settings.max_retries + 1):
        try:
            reply = teacher.chat(
                stage, messages, prompt_version=prompt_version, max_tokens=1, logprobs=TOP_LOGPROBS, attempt=attempt
            )
        except TokenBudgetExhausted:
            raise
        except item_errors() as error:
            reason, owed = failure_reason(error, teacher.settings.max_retries), is_owed(error)
            break
        score = yes_probability(reply.text, reply.logprobs)
        if score is not None:
            return score
        reason = f"no Yes/No verdict in {reply.text[:80]!r}"
    teacher.store.record_failure(teacher.run_id, stage, item_id, reason, owed)
    return None
