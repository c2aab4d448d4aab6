"""Supervision without the teacher: a document's title → its first chunk, and inverse cloze (one sentence of a
chunk → the rest of that chunk), for volume the teacher cannot afford.

The title is cut out of its positive and the sentence out of its chunk, so neither pair is answered by copying
words. Pairs come only from documents that no validation or test question cites, so the held-out synthetic
splits stay unseen. Chunks are spread over documents by the same seeded hash as the teacher's questions
(``select_chunks``): adding a document changes the pairs only by that document's own.

Example:
    >>> cloze_pair("Fan 3 failed. The alert is H-052. Replace the fan while running.", "c1", seed=1, min_words=3)
    ('Fan 3 failed.', 'The alert is H-052. Replace the fan while running.')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from embpipe.core.synthesis.questions import flatten_ids, select_chunks
from embpipe.core.synthesis.splits import stable_unit
from embpipe.core.tables import PASSAGE_PAIRS, Split, Strategy
from embpipe.text import split_sentences

MIN_CLOZE_SENTENCES = 3  # fewer, and the rest of the chunk is too little context to retrieve by


@dataclass(frozen=True)
class PairParams:
    """How many pairs, of which kinds, with what loss weight."""

    max_pairs: int = 0  # off: measured to cost techqa 0.02-0.16 nDCG@10 (the ledger's recipe sweep)
    titles: bool = True
    cloze: bool = True
    weight: float = 0.5
    min_sentence_words: int = 6
    min_chunk_tokens: int = 20
    seed: int = 42


def held_out_documents(synthetic_queries: pd.DataFrame, query_splits: pd.DataFrame) -> set[str]:
    """Documents cited by a validation or test question: no pair may come from them."""
    held = set(query_splits.loc[query_splits["split"] != Split.TRAIN, "query_id"].astype(str))
    cited = synthetic_queries[synthetic_queries["query_id"].astype(str).isin(held)]
    return {doc for docs in cited["doc_ids"] for doc in flatten_ids(docs)}


def without(text: str, part: str) -> str:
    """``text`` with every occurrence of ``part`` removed and the whitespace tidied."""
    return re.sub(r"\s+", " ", text.replace(part, " ")).strip() if part else text


def cloze_pair(text: str, key: str, seed: int, min_words: int = 6) -> tuple[str, str] | None:
    """One sentence of ``text`` (a seeded choice among those of at least ``min_words`` words) and the text
    without it; ``None`` when the text has too few sentences."""
    sentences = split_sentences(text)
    usable = [s for s in sentences if len(s.split()) >= min_words]
    if len(sentences) < MIN_CLOZE_SENTENCES or not usable:
        return None
    sentence = max(usable, key=lambda s: stable_unit(seed, f"{key}\0{s}"))
    return sentence, without(" ".join(sentences), sentence)


def title_pairs(chunks: pd.DataFrame, params: PairParams) -> list[dict]:
    """Each document's title (of three words or more) → its first chunk of ``min_chunk_tokens`` or more, with the
    title cut out (a heading-only first chunk is skipped)."""
    rows = []
    for _, group in chunks[chunks["n_tokens"] >= params.min_chunk_tokens].sort_values("position").groupby("doc_id"):
        title = str(group["title"].iloc[0] or "").strip()
        if len(title.split()) < 3:
            continue
        for _, chunk in group.iterrows():
            positive = without(str(chunk["text"]), title)
            if len(positive.split()) >= params.min_chunk_tokens:
                rows.append(pair_row(Strategy.TITLE, title, positive, chunk))
                break
    return rows


def pair_row(strategy: Strategy, query: str, positive: str, chunk: pd.Series) -> dict:
    return {
        "strategy": strategy,
        "query": query,
        "positive": positive,
        "chunk_id": str(chunk["chunk_id"]),
        "doc_id": str(chunk["doc_id"]),
    }


def cloze_pairs(chunks: pd.DataFrame, count: int, params: PairParams) -> list[dict]:
    """One sentence → the rest of its chunk, for the first ``count`` chunks with enough sentences in the
    order that spreads them over documents."""
    if count <= 0 or chunks.empty or not (chunks["n_tokens"] >= params.min_chunk_tokens).any():
        return []
    rows = []
    for _, chunk in select_chunks(chunks, len(chunks), params.min_chunk_tokens, params.seed).iterrows():
        pair = cloze_pair(str(chunk["text"]), str(chunk["chunk_id"]), params.seed, params.min_sentence_words)
        if pair is not None:
            rows.append(pair_row(Strategy.INVERSE_CLOZE, pair[0], pair[1], chunk))
        if len(rows) == count:
            break
    return rows


def teacher_free_pairs(chunks: pd.DataFrame, held_out: set[str], params: PairParams) -> pd.DataFrame:
    """Title and inverse-cloze pairs from the documents outside ``held_out``: at most ``max_pairs``, titles
    taking at most half (by a seeded hash of their document), each with the loss weight; negatives are filled
    in by the caller."""
    usable = chunks[~chunks["doc_id"].astype(str).isin(held_out)]
    titles = title_pairs(usable, params) if params.titles else []
    titles = sorted(titles, key=lambda r: stable_unit(params.seed, r["doc_id"]))[: params.max_pairs // 2]
    rows = titles + (cloze_pairs(usable, params.max_pairs - len(titles), params) if params.cloze else [])
    for row in rows:
        row.update(pair_id=f"{row['strategy']}:{row['chunk_id']}", negative_chunk_ids=[], weight=params.weight)
    return PASSAGE_PAIRS.frame(rows)
