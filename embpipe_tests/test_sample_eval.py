"""The hand-written evaluation set of the sample corpus stays consistent with the documents it judges."""

import json
import re

from embpipe.core.evaluation.beir import corpus_rows, load_beir
from embpipe.core.ingest.documents import read_folder
from embpipe_tests.conftest import REPO, SAMPLE_DIR

SAMPLE_EVAL = REPO / "data" / "sample-eval"


def test_the_committed_corpus_is_the_sample_documents_as_ingest_reads_them():
    committed = [json.loads(line) for line in (SAMPLE_EVAL / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert committed == corpus_rows(read_folder(SAMPLE_DIR).documents), "run python scripts/sample_eval_corpus.py"


def test_every_question_is_judged_against_existing_documents_and_every_document_is_asked_about():
    data = load_beir(SAMPLE_EVAL)
    assert 40 <= len(data.queries) <= 60
    judged = {doc for relevant in data.qrels.values() for doc in relevant}
    assert judged <= set(data.corpus)
    assert judged == set(data.corpus)
    assert all(2 in relevant.values() for relevant in data.qrels.values())


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def test_questions_do_not_copy_their_document():
    data = load_beir(SAMPLE_EVAL)
    for query_id, query in data.queries.items():
        query_words = words(query)
        trigrams = {tuple(query_words[i : i + 4]) for i in range(len(query_words) - 3)}
        for doc_id in data.qrels[query_id]:
            document_words = words(data.corpus[doc_id])
            document_trigrams = {tuple(document_words[i : i + 4]) for i in range(len(document_words) - 3)}
            assert not trigrams & document_trigrams, f"{query_id} copies four words of {doc_id}"
