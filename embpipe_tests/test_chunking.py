"""Chunking strategies on hand-made text."""

from __future__ import annotations

import numpy as np
import pytest

from embpipe.core.ingest.chunking import ChunkingParams, ChunkStrategy, chunk_id_for, chunk_text, count_tokens
from embpipe.text import split_sentences

TEXT = "# Heading\n\nFirst paragraph has some words in it. It goes on.\n\nSecond one is here. Also short."


def texts(text: str, **params) -> list[str]:
    return [c.text for c in chunk_text(text, ChunkingParams(**params))]


def test_paragraphs_merge_short_heading_forward():
    assert texts(TEXT, min_tokens=4) == [
        "# Heading First paragraph has some words in it. It goes on.",
        "Second one is here. Also short.",
    ]


def test_long_paragraph_splits_at_sentences_under_max_tokens():
    paragraph = " ".join(f"Sentence number {i} is here." for i in range(20))
    chunks = chunk_text(paragraph, ChunkingParams(max_tokens=30, min_tokens=1))
    assert len(chunks) > 1
    assert all(c.n_tokens <= 30 for c in chunks)
    assert " ".join(c.text for c in chunks) == paragraph


def test_sentence_strategy_groups_n_sentences():
    assert texts("A one. B two. C three.", strategy=ChunkStrategy.SENTENCES, sentences_per_chunk=2) == [
        "A one. B two.",
        "C three.",
    ]


def test_token_windows_overlap():
    words = " ".join(str(i) for i in range(10))
    assert texts(words, strategy=ChunkStrategy.TOKENS, max_tokens=4, overlap_tokens=2) == [
        "0 1 2 3",
        "2 3 4 5",
        "4 5 6 7",
        "6 7 8 9",
    ]


def test_semantic_splits_where_similarity_drops():
    vectors = {"Cats purr.": [1, 0], "Cats nap.": [0.9, 0.1], "Taxes rise.": [0, 1]}

    def embed(sentences):
        return np.array([vectors[s] for s in sentences], dtype=np.float32)

    chunks = chunk_text("Cats purr. Cats nap. Taxes rise.", ChunkingParams(strategy=ChunkStrategy.SEMANTIC), embed)
    assert [c.text for c in chunks] == ["Cats purr. Cats nap.", "Taxes rise."]


def test_semantic_without_embedder_is_an_error():
    with pytest.raises(ValueError, match="embed"):
        chunk_text("A. B.", ChunkingParams(strategy=ChunkStrategy.SEMANTIC))


def test_helpers():
    assert count_tokens("Error E217, again!") == 5
    assert split_sentences("One. Two? three. Four!") == ["One.", "Two? three.", "Four!"]
    assert chunk_id_for("d", 0, "x") == chunk_id_for("d", 0, "x") != chunk_id_for("d", 1, "x")
    assert texts("  \n\n  ") == []


@pytest.mark.parametrize("strategy", ["paragraph", "sentences", "tokens"])
def test_a_one_line_megabyte_document_becomes_capped_chunks(strategy):
    from embpipe.core.ingest.chunking import CHARS_PER_TOKEN_CAP, ChunkingParams, chunk_text, count_tokens

    text = "error code E1234 at 0x7ffe " * 20_000 + "B" * 300_000  # no line break, then a 300 kB blob
    params = ChunkingParams(strategy=strategy, max_tokens=200)
    chunks = chunk_text(text, params)
    assert all(c.n_tokens <= 200 and len(c.text) <= 200 * CHARS_PER_TOKEN_CAP for c in chunks)
    assert sum(count_tokens(c.text) for c in chunks) >= count_tokens(text)  # nothing dropped
    assert "".join(c.text for c in chunks).count("B") >= 300_000


def test_capped_parts_keep_every_character_and_respect_both_caps():
    import random

    from embpipe.core.ingest.chunking import capped, count_tokens

    rng = random.Random(7)
    for _ in range(300):
        words = [rng.choice(["a", "bb", "x" * rng.randint(1, 40), ".", ","]) for _ in range(rng.randint(1, 200))]
        text = (" " if rng.random() < 0.5 else "").join(words)
        max_tokens, max_chars = rng.randint(1, 20), rng.randint(1, 60)
        parts = capped(text, max_tokens, max_chars)
        assert all(count_tokens(p) <= max_tokens and len(p) <= max_chars for p in parts)
        assert "".join("".join(parts).split()) == "".join(text.split())
