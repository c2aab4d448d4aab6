"""Rebuild ``data/sample-eval/corpus.jsonl`` from ``data/sample`` after a sample document changes.

The hand-written questions and judgements (``queries.jsonl``, ``qrels/test.tsv``) name documents by their path in
``data/sample``; the corpus is those documents as ingest reads them (title and text). A test fails while the
committed corpus is out of date.

    python scripts/sample_eval_corpus.py
"""

from pathlib import Path

from embpipe.core.evaluation.beir import corpus_rows, write_corpus
from embpipe.core.ingest.documents import read_folder

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SAMPLE_EVAL = ROOT / "data" / "sample-eval"

if __name__ == "__main__":
    rows = corpus_rows(read_folder(SAMPLE).documents)
    write_corpus(rows, SAMPLE_EVAL / "corpus.jsonl")
    print(f"wrote {len(rows)} documents to {SAMPLE_EVAL / 'corpus.jsonl'}")
