"""The three steps ``run_mining`` is written against, built from real parts: a student trained from the base
model on the current labels, its retrieval over the candidate pool, and the teacher's relevance judgement.

The pool is the whole corpus when it is small, else every training query's base top ``pool_depth`` chunks
(plus their positives), so the student re-ranks a bounded set on large corpora.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from embpipe.core.embedding import encode, role_encoder, stack_embeddings
from embpipe.core.evaluation.report import dense_run
from embpipe.core.evaluation.retrieval import top_k
from embpipe.core.synthesis.questions import flatten_ids
from embpipe.core.tables import Role
from embpipe.core.training.examples import chunk_corpus, labelled_examples
from embpipe.core.training.mining import Label, MiningOutcome, RoundRecord, StopMining, labels_frame
from embpipe.core.training.trainer import NEGATIVES_PER_EXAMPLE, TrainingParams, train_contrastive
from embpipe.llm.budget import MINING_STAGE, BudgetStop, TokenBudgetExhausted
from embpipe.llm.judge import judge_relevance
from embpipe.llm.teacher import Teacher


def candidate_pool(
    train: pd.DataFrame,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    base_model,
    pool_depth: int,
    full_search_max_chunks: int,
) -> dict[str, str]:
    """The passages the student searches: the whole corpus when small, else every query's base top pool."""
    corpus = chunk_corpus(chunks)
    if len(corpus) <= full_search_max_chunks:
        return corpus
    query_vectors = encode(base_model, train["text"].astype(str).tolist(), role="query")
    chunk_ids = chunk_embeddings["chunk_id"].astype(str).tolist()
    result = top_k(query_vectors, stack_embeddings(chunk_embeddings), pool_depth)
    pool = {chunk_ids[i] for row in result.indices for i in row}
    pool |= {c for p in train["positive_chunk_ids"] for c in flatten_ids(p)}
    return {c: corpus[c] for c in sorted(pool) if c in corpus}


def student_trainer(
    load_base: Callable[[], object],
    train: pd.DataFrame,
    chunks: pd.DataFrame,
    score: Callable[[object], float],
    params: TrainingParams,
    log: Callable[[str], None],
) -> Callable[[list[Label]], tuple[object, float]]:
    """labels → (a student trained from the base model on them, its validation score)."""

    def train_student(labels: list[Label]) -> tuple[object, float]:
        student = load_base()
        examples = labelled_examples(labels_frame(labels, [], chunks), train, chunks, NEGATIVES_PER_EXAMPLE)
        outcome = train_contrastive(student, examples, score, params)
        log(f"student on {len(examples)} examples: validation {outcome.best_score:.4f}")
        return student, outcome.best_score

    return train_student


def student_retriever(
    pool: dict[str, str], texts: dict[str, str], k: int, batch_size: int
) -> Callable[[object], dict[str, list[str]]]:
    """student → each training query's top-``k`` pool chunks, best first."""

    def retrieve(student) -> dict[str, list[str]]:
        run = dense_run(role_encoder(student, batch_size), pool, texts, k=k)
        return {q: sorted(found, key=found.get, reverse=True) for q, found in run.items()}

    return retrieve


def teacher_judge(
    teacher: Teacher, texts: dict[str, str], corpus: dict[str, str], stop: BudgetStop
) -> Callable[[str, str], float | None]:
    """(query id, chunk id) → the teacher's P(relevant); a spent budget ends mining (``stop`` says why)."""

    def judge(query_id: str, chunk_id: str) -> float | None:
        try:
            return judge_relevance(teacher, MINING_STAGE, f"{query_id}:{chunk_id}", texts[query_id], corpus[chunk_id])
        except TokenBudgetExhausted as error:
            stop.message = str(error)
            raise StopMining(str(error)) from error

    return judge


def round_metrics(record: RoundRecord) -> dict[str, float]:
    """What each round logs to MLflow."""
    return {
        "val_ndcg_at_10": record.validation_score,
        "judged": record.judged,
        "new_positives": record.new_positives,
        "new_negatives": record.new_negatives,
    }


def mining_summary(frame: pd.DataFrame, outcome: MiningOutcome, reused: int, settled: int, failures: int) -> dict:
    """The labels table's counts, the rounds and the failed judgements, for the asset's metadata."""
    rounds = pd.DataFrame([vars(r) for r in outcome.rounds])
    return {
        "failures": failures,
        "labels": len(frame),
        "positives": int(((frame.role == Role.POSITIVE) & frame.used).sum()),
        "negatives": int(((frame.role == Role.NEGATIVE) & frame.used).sum()),
        "teacher_judgements": len(outcome.judgements),
        "judgements_reused": reused,
        "queries_settled_earlier": settled,
        "rounds_run": len(outcome.rounds),
        "best_round": outcome.best_round,
        "rounds": rounds.to_markdown(index=False) if len(rounds) else "no rounds",
    }
