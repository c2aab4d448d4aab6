"""Synthesis: base-model chunk embeddings, teacher-written questions, grouped train/validation/test splits."""

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, asset
from pydantic import Field

from embpipe.core.embedding import encode, role_encoder
from embpipe.core.synthesis.passage_pairs import PairParams, held_out_documents, teacher_free_pairs
from embpipe.core.synthesis.question_prompts import QuestionStyle
from embpipe.core.synthesis.questions import (
    ROUND_TRIP_K,
    Screening,
    combined_questions,
    generate_single_chunk_questions,
    question_summary,
    screen_questions,
    select_chunks,
)
from embpipe.core.synthesis.splits import assign_splits
from embpipe.core.tables import QUERY_SPLITS, SPLITS
from embpipe.core.training.examples import chunk_passages
from embpipe.core.training.negatives import NegativeParams, mine_for_chunks
from embpipe.defs.metadata import budget_metadata, progress_logger, table_output
from embpipe.defs.types import ChunkEmbeddingsFrame, PassagePairsFrame, QuerySplitsFrame, SyntheticQueriesFrame
from embpipe.resources.embedder import EmbedderResource
from embpipe.resources.methods import MethodsResource
from embpipe.resources.teacher import TeacherResource


@asset(dagster_type=ChunkEmbeddingsFrame, code_version="2", group_name="synthesis")
def chunk_embeddings(context: AssetExecutionContext, embedder: EmbedderResource, chunks: pd.DataFrame):
    """One L2-normalised base-model vector per chunk (title + text); the base model's retrieval index."""
    encoder = role_encoder(embedder.load(), embedder.batch_size, context.log.info)
    vectors = encoder(chunk_passages(chunks), "document")
    frame = pd.DataFrame({"chunk_id": chunks["chunk_id"].astype(str), "embedding": list(vectors)})
    context.log.info(f"embedded {len(frame)} chunks with {embedder.model_id()}")
    return table_output(
        frame,
        None,
        {
            "chunks": len(frame),
            "dimension": int(vectors.shape[1]) if len(vectors) else 0,
            "base_model": embedder.model_id(),
        },
    )


class QuestionConfig(Config):
    """How many questions the teacher writes, and from which chunks."""

    max_chunks: int = Field(
        default=100_000,
        description="Most chunks to write questions for, spread over documents; on most corpora the token budget "
        "stops the stage first, so the budget alone sets what a run spends.",
    )
    questions_per_chunk: int = Field(default=3, description="Questions asked per chunk.")
    question_style: QuestionStyle = Field(
        default="terms",
        description="'terms': questions in the passage's own terms; 'user': a symptom or goal in a user's words, a "
        "how-to and a short search on a code or name, as real support searches read; 'post': a support-forum post (a "
        "title, then the product and version, what the user did and the error seen), as forum questions read.",
    )
    min_chunk_tokens: int = Field(default=20, description="Chunks shorter than this get no questions.")
    dedup_threshold: float = Field(default=0.9, description="Drop a question whose cosine to a kept one exceeds this.")
    max_failure_rate: float = Field(
        default=0.3, description="The quality check fails above this share of failed chunks."
    )
    seed: int = Field(default=42, description="Seed of the chunk sample.")
    round_trip_k: int = Field(
        default=ROUND_TRIP_K, description="Round trip: does a question's positive rank in the base top k (recorded)."
    )
    round_trip_filter: bool = Field(default=False, description="Drop the questions that fail the round trip.")

    def screening(self) -> Screening:
        return Screening(self.dedup_threshold, self.round_trip_k, self.round_trip_filter)


@asset(dagster_type=SyntheticQueriesFrame, code_version="6", group_name="synthesis")
def synthetic_queries(
    context: AssetExecutionContext,
    config: QuestionConfig,
    methods: MethodsResource,
    teacher: TeacherResource,
    embedder: EmbedderResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    cluster_queries: pd.DataFrame,
    embgen_queries: pd.DataFrame,
):
    """Teacher-written questions (single-chunk, LMAR's cluster and EmbGen's strategy questions), deduplicated.

    Each keeps its positive chunk(s), source documents, ``strategy``, ``hops`` and validator score.
    """
    sample = select_chunks(chunks, config.max_chunks, config.min_chunk_tokens, config.seed)
    progress = progress_logger(context, "questions: chunks done")
    client = teacher.client(idle_stages=methods.idle_teacher_stages())  # their budget shares come here
    own, stats = generate_single_chunk_questions(
        client, sample, config.questions_per_chunk, progress, config.question_style
    )
    frame = combined_questions(own, cluster_queries, embgen_queries)
    vectors = encode(embedder.load(), frame["text"].tolist(), role="query")
    frame, round_trip = screen_questions(frame, vectors, chunk_embeddings, config.screening())
    failures = client.store.failures(client.run_id, "synthetic_queries")
    usage = [u for u in client.store.usage(client.run_id) if u.stage == "synthetic_queries"]
    summary = question_summary(frame, stats, usage, failures, client.store.cuts(client.run_id, "synthetic_queries"))
    metadata = {
        **summary,
        **round_trip,
        "queries_by_strategy": MetadataValue.json(summary["queries_by_strategy"]),
        "failures": MetadataValue.md(summary["failures"]),
        "max_failure_rate": config.max_failure_rate,
        **budget_metadata(context, stats.budget_message),
        "teacher": teacher.model,
        "mining": methods.mining,  # off, mining's budget share is spent here (the runner reruns on a change)
    }
    return table_output(frame, config, metadata, ["query_id", "text", "strategy"])


class SplitConfig(Config):
    """Fractions of queries per split; whole document groups are assigned."""

    train: float = Field(default=0.6, description="Share of queries for training.")
    validation: float = Field(default=0.2, description="Share for early stopping.")
    test: float = Field(default=0.2, description="Share held out for the report.")
    seed: int = Field(default=42, description="Seed of the group shuffle.")


@asset(dagster_type=QuerySplitsFrame, code_version="2", group_name="synthesis")
def query_splits(config: SplitConfig, synthetic_queries: pd.DataFrame):
    """train / validation / test per query, grouped by source document so test documents are unseen."""
    query_docs = {q: list(d) for q, d in zip(synthetic_queries["query_id"], synthetic_queries["doc_ids"], strict=True)}
    assignment = assign_splits(query_docs, (config.train, config.validation, config.test), config.seed)
    frame = QUERY_SPLITS.frame({"query_id": list(assignment), "split": list(assignment.values())})
    counts = frame["split"].value_counts()
    return table_output(
        frame,
        config,
        {
            **{split.value: int(counts.get(split, 0)) for split in SPLITS},
        },
    )


class PassagePairConfig(Config):
    """Teacher-free supervision: title → first chunk and inverse-cloze pairs, weighted below teacher pairs."""

    max_pairs: int = Field(default=PairParams.max_pairs, description="Most pairs (titles at most half); 0 = none.")
    titles: bool = Field(default=PairParams.titles, description="Title → the document's first chunk.")
    cloze: bool = Field(default=PairParams.cloze, description="One sentence → the rest of its chunk.")
    weight: float = Field(default=PairParams.weight, description="Loss weight (a teacher question's is its score).")
    min_sentence_words: int = Field(default=PairParams.min_sentence_words, description="Shortest cloze sentence.")
    seed: int = Field(default=PairParams.seed, description="Seed of the chunk and sentence choice.")

    def params(self) -> PairParams:
        return PairParams(self.max_pairs, self.titles, self.cloze, self.weight, self.min_sentence_words, seed=self.seed)


@asset(dagster_type=PassagePairsFrame, code_version="2", group_name="synthesis")
def passage_pairs(
    context: AssetExecutionContext,
    config: PassagePairConfig,
    embedder: EmbedderResource,
    chunks: pd.DataFrame,
    chunk_embeddings: pd.DataFrame,
    synthetic_queries: pd.DataFrame,
    query_splits: pd.DataFrame,
):
    """Teacher-free training pairs from the documents no held-out question cites, with base-model negatives."""
    held_out = held_out_documents(synthetic_queries, query_splits)
    frame = teacher_free_pairs(chunks, held_out, config.params())
    if len(frame):
        vectors = encode(embedder.load(), frame["query"].tolist(), embedder.batch_size, role="query")
        mined = mine_for_chunks(vectors, chunks, chunk_embeddings, [[c] for c in frame["chunk_id"]], NegativeParams())
        frame["negative_chunk_ids"] = [m.chunk_ids for m in mined]
    counts = frame["strategy"].value_counts()
    context.log.info(f"{len(frame)} teacher-free pairs from documents outside {len(held_out)} held-out ones")
    metadata = {"pairs": len(frame), **{str(k): int(v) for k, v in counts.items()}, "held_out_documents": len(held_out)}
    return table_output(frame, config, metadata, ["strategy", "query", "chunk_id"])
