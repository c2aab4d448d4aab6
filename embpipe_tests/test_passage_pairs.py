"""Teacher-free pairs: titles and inverse cloze from the sample corpus, never from held-out documents."""

import pandas as pd
import pytest

from embpipe.core.ingest.chunking import ChunkingParams
from embpipe.core.ingest.documents import read_folder
from embpipe.core.synthesis.passage_pairs import PairParams, cloze_pair, held_out_documents, teacher_free_pairs
from embpipe.core.training.examples import pair_examples
from embpipe.defs.ingest import chunk_documents
from embpipe_tests.conftest import SAMPLE_DIR


@pytest.fixture(scope="module")
def sample_chunks() -> pd.DataFrame:
    documents = pd.DataFrame([vars(d) for d in read_folder(SAMPLE_DIR).documents])
    return chunk_documents(documents, ChunkingParams())


def test_a_cloze_query_is_cut_out_of_its_positive_and_a_title_out_of_its_chunk(sample_chunks):
    pairs = teacher_free_pairs(sample_chunks, set(), PairParams(max_pairs=200))
    assert {"title", "inverse_cloze"} == set(pairs["strategy"])
    for row in pairs.itertuples(index=False):
        assert row.query not in row.positive, row.pair_id
        assert row.chunk_id in set(sample_chunks["chunk_id"]) and row.weight == 0.5
    chunk_text = dict(zip(sample_chunks["chunk_id"], sample_chunks["text"], strict=True))
    cloze = pairs[pairs["strategy"] == "inverse_cloze"].iloc[0]
    assert cloze["query"] in " ".join(chunk_text[cloze["chunk_id"]].split())


def test_too_short_a_chunk_gives_no_cloze_pair():
    assert cloze_pair("Only one sentence here with enough words.", "c", seed=1) is None
    assert cloze_pair("Short. Too short. Tiny.", "c", seed=1) is None


def test_held_out_documents_give_no_pair_and_the_cap_leaves_titles_at_most_half(sample_chunks):
    queries = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "doc_ids": [["d-train"], ["d-val"], ["d-test"]]})
    splits = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "split": ["train", "validation", "test"]})
    assert held_out_documents(queries, splits) == {"d-val", "d-test"}

    held_out = set(sample_chunks["doc_id"].unique()[:10])
    pairs = teacher_free_pairs(sample_chunks, held_out, PairParams(max_pairs=20))
    assert len(pairs) == 20 and not set(pairs["doc_id"]) & held_out
    assert (pairs["strategy"] == "title").sum() == 10


def test_adding_a_document_changes_the_pairs_only_by_its_own(sample_chunks):
    first_doc = sample_chunks["doc_id"].iloc[0]
    without = teacher_free_pairs(sample_chunks[sample_chunks["doc_id"] != first_doc], set(), PairParams(max_pairs=1000))
    with_it = teacher_free_pairs(sample_chunks, set(), PairParams(max_pairs=1000))
    added = with_it[~with_it["pair_id"].isin(without["pair_id"])]
    assert set(added["doc_id"]) == {first_doc}
    assert set(without["pair_id"]) <= set(with_it["pair_id"])


def test_pair_examples_carry_their_negatives_and_weight(sample_chunks):
    pairs = teacher_free_pairs(sample_chunks, set(), PairParams(max_pairs=4)).head(2)
    negatives = sample_chunks["chunk_id"].tolist()[-6:]
    pairs["negative_chunk_ids"] = [negatives, []]
    examples = pair_examples(pairs, sample_chunks, negatives_per_example=4)
    assert [len(e.negatives) for e in examples] == [4, 0]
    assert examples[0].query == pairs["query"].iloc[0] and examples[0].weight == 0.5


def test_every_pair_traces_to_its_document_in_the_lineage(sample_chunks):
    from embpipe.core.evaluation.lineage import lineage_rows, rows_for_document
    from embpipe.core.tables import LINEAGE, QUERY_SPLITS, SYNTHETIC_QUERIES, TRAINING_LABELS

    documents = pd.DataFrame([vars(d) for d in read_folder(SAMPLE_DIR).documents])
    pairs = teacher_free_pairs(sample_chunks, set(), PairParams(max_pairs=6))
    pairs["negative_chunk_ids"] = [sample_chunks["chunk_id"].tolist()[:1]] * len(pairs)
    empty = (SYNTHETIC_QUERIES.empty(), QUERY_SPLITS.empty(), TRAINING_LABELS.empty())
    lineage = lineage_rows(*empty, sample_chunks, documents, pairs)
    assert list(lineage.columns) == LINEAGE.names and len(lineage) == 12
    title = pairs[pairs["strategy"] == "title"].iloc[0]
    path = documents.set_index("doc_id").at[title["doc_id"], "path"]
    traced = rows_for_document(lineage, path)
    assert title["pair_id"] in set(traced["query_id"]) and set(lineage["split"]) == {"train"}
