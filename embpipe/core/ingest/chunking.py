"""Splitting documents into retrieval passages.

Strategies (``ChunkStrategy``):
- ``paragraph`` (LMAR): blank-line paragraphs; short ones are merged into the next, long ones split at
  sentence ends so no chunk exceeds ``max_tokens``.
- ``sentences``: ``sentences_per_chunk`` sentences per chunk.
- ``tokens``: windows of ``max_tokens`` tokens with ``overlap_tokens`` overlap.
- ``semantic``: sentences grouped until the similarity of adjacent sentences drops below a threshold
  (needs an ``embed`` function).

Token counts are approximate: words and punctuation marks (``count_tokens``), close to WordPiece counts
for English prose.

Example:
    >>> [c.text for c in chunk_text("A b.\\n\\nC d e f.", ChunkingParams(min_tokens=1))]
    ['A b.', 'C d e f.']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from embpipe.text import split_sentences

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
CHARS_PER_TOKEN_CAP = 12  # a chunk never exceeds max_tokens × this many characters, whatever its words look like


class ChunkStrategy(StrEnum):
    """How documents are split into chunks."""

    PARAGRAPH = "paragraph"
    SENTENCES = "sentences"
    TOKENS = "tokens"
    SEMANTIC = "semantic"


@dataclass(frozen=True)
class ChunkingParams:
    """Parameters of every strategy; each strategy reads the ones it needs."""

    strategy: ChunkStrategy = ChunkStrategy.PARAGRAPH
    max_tokens: int = 200
    min_tokens: int = 24
    sentences_per_chunk: int = 4
    overlap_tokens: int = 32
    semantic_threshold: float = 0.45


@dataclass(frozen=True)
class Chunk:
    """One passage of a document."""

    position: int
    text: str
    n_tokens: int


def count_tokens(text: str) -> int:
    """Approximate token count: words and punctuation marks."""
    return len(TOKEN_PATTERN.findall(text))


def paragraphs_of(text: str) -> list[str]:
    """Blank-line separated paragraphs with inner whitespace collapsed."""
    return [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def pack(pieces: Sequence[str], max_tokens: int) -> list[str]:
    """Greedily join consecutive pieces into groups of at most ``max_tokens`` (a longer piece stays alone)."""
    groups: list[str] = []
    current: list[str] = []
    size = 0
    for piece in pieces:
        n = count_tokens(piece)
        if current and size + n > max_tokens:
            groups.append(" ".join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        groups.append(" ".join(current))
    return groups


def merge_short(pieces: list[str], min_tokens: int, max_tokens: int) -> list[str]:
    """Merge pieces under ``min_tokens`` (headings, one-liners) into the following piece."""
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        candidate = f"{carry} {piece}".strip() if carry else piece
        if count_tokens(candidate) < min_tokens:
            carry = candidate
            continue
        if carry and count_tokens(candidate) > max_tokens:
            merged.append(carry)
            candidate = piece
        merged.append(candidate)
        carry = ""
    if carry:
        if merged and count_tokens(merged[-1]) + count_tokens(carry) <= max_tokens:
            merged[-1] = f"{merged[-1]} {carry}"
        else:
            merged.append(carry)
    return merged


def paragraph_chunks(text: str, params: ChunkingParams) -> list[str]:
    """LMAR paragraph chunks, long paragraphs split at sentences, short ones merged forward."""
    pieces: list[str] = []
    for paragraph in paragraphs_of(text):
        if count_tokens(paragraph) > params.max_tokens:
            pieces.extend(pack(split_sentences(paragraph), params.max_tokens))
        else:
            pieces.append(paragraph)
    return merge_short(pieces, params.min_tokens, params.max_tokens)


def sentence_chunks(text: str, params: ChunkingParams) -> list[str]:
    """Consecutive groups of ``sentences_per_chunk`` sentences."""
    sentences = split_sentences(text)
    step = max(1, params.sentences_per_chunk)
    return [" ".join(sentences[i : i + step]) for i in range(0, len(sentences), step)]


def token_chunks(text: str, params: ChunkingParams) -> list[str]:
    """Whitespace-token windows of ``max_tokens`` with ``overlap_tokens`` overlap."""
    if params.overlap_tokens >= params.max_tokens:
        raise ValueError("overlap_tokens must be smaller than max_tokens")
    words = text.split()
    step = params.max_tokens - params.overlap_tokens
    return [
        " ".join(words[i : i + params.max_tokens]) for i in range(0, max(1, len(words) - params.overlap_tokens), step)
    ]


def semantic_chunks(text: str, params: ChunkingParams, embed: Callable[[list[str]], np.ndarray]) -> list[str]:
    """Sentences grouped until adjacent-sentence cosine similarity drops below the threshold."""
    sentences = split_sentences(text)
    if len(sentences) < 2:
        return sentences
    vectors = embed(sentences)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    similarities = (vectors[:-1] * vectors[1:]).sum(axis=1)
    groups, current = [], [sentences[0]]
    for sentence, similarity in zip(sentences[1:], similarities, strict=True):
        too_long = count_tokens(" ".join(current)) + count_tokens(sentence) > params.max_tokens
        if similarity < params.semantic_threshold or too_long:
            groups.append(" ".join(current))
            current = []
        current.append(sentence)
    groups.append(" ".join(current))
    return groups


def chunk_text(
    text: str, params: ChunkingParams, embed: Callable[[list[str]], np.ndarray] | None = None
) -> list[Chunk]:
    """Split one document's text with the configured strategy; empty chunks never come out, and none is over
    ``max_tokens`` tokens or ``max_tokens × CHARS_PER_TOKEN_CAP`` characters, whatever the document's shape."""
    if params.strategy == ChunkStrategy.SEMANTIC:
        if embed is None:
            raise ValueError("the semantic strategy needs an embed function")
        pieces = semantic_chunks(text, params, embed)
    else:
        split = {
            ChunkStrategy.PARAGRAPH: paragraph_chunks,
            ChunkStrategy.SENTENCES: sentence_chunks,
            ChunkStrategy.TOKENS: token_chunks,
        }[params.strategy]
        pieces = split(text, params)
    max_chars = params.max_tokens * CHARS_PER_TOKEN_CAP
    texts = [part for p in pieces if p.strip() for part in capped(p.strip(), params.max_tokens, max_chars)]
    return [Chunk(position=i, text=t, n_tokens=count_tokens(t)) for i, t in enumerate(texts)]


def capped(piece: str, max_tokens: int, max_chars: int) -> list[str]:
    """``piece`` cut at token boundaries into parts of at most ``max_tokens`` tokens and ``max_chars`` characters;
    a single token longer than ``max_chars`` (a blob with no spaces) is cut by characters.

    Example:
        >>> capped("a b c d e", 2, 100)
        ['a b', 'c d', 'e']
        >>> capped("x" * 7, 5, 3)
        ['xxx', 'xxx', 'x']
    """
    if count_tokens(piece) <= max_tokens and len(piece) <= max_chars:
        return [piece]
    parts: list[str] = []
    start = end = tokens = 0
    for match in TOKEN_PATTERN.finditer(piece):
        if tokens and (tokens == max_tokens or match.end() - start > max_chars):
            parts.append(piece[start:end])
            start, tokens = match.start(), 0
        if match.end() - match.start() > max_chars:  # one overlong token: whole slices of it, the rest carries on
            for offset in range(match.start(), match.end() - max_chars, max_chars):
                parts.append(piece[offset : offset + max_chars])
            start = match.start() + (match.end() - match.start() - 1) // max_chars * max_chars
        end = match.end()
        tokens += 1
    parts.append(piece[start:end])
    return [p.strip() for p in parts if p.strip()]


def chunk_id_for(doc_id: str, position: int, text: str) -> str:
    """Stable chunk id from its document, position and text."""
    return hashlib.sha256(f"{doc_id}\0{position}\0{text}".encode()).hexdigest()[:16]
