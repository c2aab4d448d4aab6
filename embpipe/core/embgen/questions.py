"""EmbGen questions: one question (with its answer) per chunk selection, written under a specialised prompt.

For each ``ChunkSelection`` the teacher gets a system prompt built from the entities of the selected chunks
(the entity cluster's names and descriptions), the passages numbered in hop order, and is asked for one
question that needs all of them, the answer it gives from them, and the passages it cites. The cited chunks
are the positives (``hops`` = how many); multi-hop questions are unrolled by training into one example per
positive. A quality judge (P(yes) that the question is clear, relevant and answerable from the cited
passages) scores each question; low scores are dropped and the score weights the training loss. The answers
feed ``sft_records``, EmbGen's chat-format question–answer export. Each strategy's calls go to its own
ledger stage (``embgen_<strategy>``), so tokens per strategy come straight from the ledger.

Example:
    >>> parse_selection_question({"question": "Why does H-052 repeat after fan 3 is replaced?",
    ...     "answer": "The fan cable is loose.", "passages": [2, 1, 2]}, 2)
    ('Why does H-052 repeat after fan 3 is replaced?', 'The fan cable is loose.', [2, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import pandas as pd

from embpipe.core.embgen.sampling import ChunkSelection
from embpipe.core.lmar.cluster_questions import MAX_HOPS, as_queries, numbered_passages
from embpipe.core.synthesis.question_prompts import CONTEXT_REFERENCES
from embpipe.core.synthesis.questions import query_id_for
from embpipe.llm.budget import BudgetStop, TokenBudgetExhausted, estimate_tokens, within_budget
from embpipe.llm.teacher import Teacher, TeacherOutputError

PROMPT_VERSION = "embgen-question-v1"
QUALITY_PROMPT_VERSION = "embgen-quality-v1"
QUESTION_MAX_TOKENS = 160
PROMPT_OVERHEAD_TOKENS = 250  # system prompt, entity lines and instructions around the passages, for plans
MAX_ENTITIES_IN_PROMPT = 8
QUESTION_SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string"},
        "answer": {"type": "string"},
        "passages": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": MAX_HOPS},
    },
    "required": ["question", "answer", "passages"],
}
SFT_SYSTEM = "You answer questions about this document collection accurately and briefly."
QUALITY_SYSTEM = "You review search queries written for a document collection. Answer Yes or No only."


def specialised_system_prompt(entities: Sequence[tuple[str, str]]) -> str:
    """The system prompt for one selection: what its passages are about, from their entities."""
    about = "\n".join(f"- {name}: {description}" for name, description in entities[:MAX_ENTITIES_IN_PROMPT])
    return (
        "You write realistic search queries for training a document retrieval system. The passages you get "
        f"are about:\n{about or '- the topic of the passages'}\nWrite one question a user with a real problem "
        "would type into a search box that needs every passage you are given to be answered fully, answer it "
        'from the passages in one or two sentences, and cite the passages it needs. Never say "the passage" or '
        '"mentioned". Reply with JSON only: {"question": "...", "answer": "...", "passages": [1, 2]}.'
    )


def selection_messages(entities: Sequence[tuple[str, str]], texts: list[str]) -> list[dict]:
    """Chat messages asking for one cited question and its answer over the selected passages."""
    user = f"PASSAGES:\n{numbered_passages(texts)}\nWrite the question, its answer and the passages it needs."
    return [{"role": "system", "content": specialised_system_prompt(entities)}, {"role": "user", "content": user}]


def parse_selection_question(reply: dict, passages: int) -> tuple[str, str, list[int]]:
    """(question, answer, cited passage numbers); ``TeacherOutputError`` when the reply is unusable."""
    text = " ".join(str(reply.get("question", "")).split())
    answer = " ".join(str(reply.get("answer", "")).split())
    cited = reply.get("passages") if isinstance(reply.get("passages"), list) else []
    numbers = list(dict.fromkeys(n for n in cited if isinstance(n, int) and 1 <= n <= passages))[:MAX_HOPS]
    if not 12 <= len(text) <= 300 or not text.endswith("?") or CONTEXT_REFERENCES.search(text):
        raise TeacherOutputError(f"unusable question {text[:120]!r}")
    if len(answer) < 3 or not numbers:
        raise TeacherOutputError(f"no answer or no cited passage in {reply!r:.200}")
    return text, answer, numbers


def quality_messages(question: str, evidence: str) -> list[dict]:
    """Chat messages asking whether ``question`` is clear, relevant and answerable from ``evidence``."""
    user = (
        f"QUESTION: {question}\nPASSAGE: {evidence}\nIs the question clear on its own, relevant to the passage, "
        "and answerable from it? Yes or No."
    )
    return [{"role": "system", "content": QUALITY_SYSTEM}, {"role": "user", "content": user}]


@dataclass
class EmbGenStats:
    """Selections asked per strategy, failures, questions below the quality bar, why generation stopped."""

    asked: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    below_quality: int = 0
    budget_message: str = ""


def ask_selection(
    teacher: Teacher,
    selection: ChunkSelection,
    passages: dict[str, tuple[str, str]],
    messages: list[dict],
    judge: Callable[[str, str, str], float | None],
    min_quality: float,
) -> tuple[dict | None, str]:
    """One selection's query row and answer, or ``None`` and why not ("failed" or "below_quality")."""
    stage = f"embgen_{selection.strategy}"
    parsed = teacher.generate_json(
        stage,
        "+".join(selection.chunk_ids),
        messages,
        partial(parse_selection_question, passages=len(selection.chunk_ids)),
        schema=QUESTION_SCHEMA,
        prompt_version=PROMPT_VERSION,
        max_tokens=QUESTION_MAX_TOKENS,
    )
    if parsed is None:
        return None, "failed"
    question, answer, cited = parsed
    positives = [selection.chunk_ids[n - 1] for n in cited]
    score = judge(stage, question, "\n".join(passages[c][0] for c in positives))
    if score is None or score < min_quality:
        return None, "below_quality"
    row = {
        "query_id": query_id_for(f"{selection.strategy}-{positives[0]}", question),
        "text": question,
        "positive_chunk_ids": positives,
        "doc_ids": list(dict.fromkeys(passages[c][1] for c in positives)),
        "strategy": selection.strategy,
        "hops": len(positives),
        "validator_score": float(score),
        "source_chunk_id": positives[0],
    }
    return row, answer


def generate_selection_questions(
    teacher: Teacher,
    selections: Sequence[ChunkSelection],
    passages: dict[str, tuple[str, str]],
    entities_of: Callable[[ChunkSelection], list[tuple[str, str]]],
    judge: Callable[[str, str, str], float | None],
    min_quality: float,
    stats: EmbGenStats,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Query rows (``synthetic_queries`` columns) and their answers, one question per usable selection.

    ``passages`` maps chunk id to (text, doc id); ``judge(stage, question, evidence)`` gives the quality
    score. A selection is not asked when its estimated question and quality calls would pass what the run's
    token budget leaves the stage; stops cleanly, keeping what it has, when that or the budget forbids a call.
    """

    def ask(numbered: tuple[int, ChunkSelection]) -> tuple[str, dict | None, str]:
        number, selection = numbered
        messages = selection_messages(entities_of(selection), [passages[c][0] for c in selection.chunk_ids])
        needed = 2 * estimate_tokens(messages) + QUESTION_MAX_TOKENS + 1  # question, then a judge of similar size
        remaining = teacher.remaining(f"embgen_{selection.strategy}")
        if remaining is not None and needed > remaining:
            raise TokenBudgetExhausted(f"the EmbGen questions' token share is spent ({remaining} left, next {needed})")
        row, outcome = ask_selection(teacher, selection, passages, messages, judge, min_quality)
        if progress:
            progress(number, len(selections))
        return selection.strategy, row, outcome

    rows, answers, stop = [], {}, BudgetStop()
    for strategy, row, outcome in within_budget(enumerate(selections, start=1), ask, stop, teacher.concurrency):
        stats.asked[strategy] = stats.asked.get(strategy, 0) + 1
        if row is None:
            stats.failed += outcome == "failed"
            stats.below_quality += outcome == "below_quality"
            continue
        rows.append(row)
        answers[row["query_id"]] = outcome
    stats.budget_message = stop.message
    teacher.settle("embgen_queries")
    frame = as_queries(rows)
    return frame, [answers[q] for q in frame["query_id"]]


def sft_record(question: str, answer: str, system: str) -> dict:
    """One chat-format supervised fine-tuning example (OpenAI / TRL ``messages`` layout)."""
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }
