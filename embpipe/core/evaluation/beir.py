"""The BEIR layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) that ranx and
sentence-transformers share: loaders into plain dicts.

Example:
    >>> data = load_beir("../shared/data/techqa", split="test")  # doctest: +SKIP
    >>> len(data.queries), len(data.qrels)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class BeirDataset:
    """Corpus (id → title + text), queries (id → text) and graded judgments (query id → doc id → grade)."""

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_qrels(path: Path) -> Qrels:
    """A BEIR qrels TSV (``query-id``, ``corpus-id``, ``score`` with a header row)."""
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            grade = int(float(row["score"]))
            if grade > 0:
                qrels.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = grade
    return qrels


def passage_text(title: str, text: str) -> str:
    """The text a passage is embedded as: title and body, as BEIR evaluations do."""
    return f"{title}\n{text}".strip() if title else text


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR folder; only queries with judgments in ``split`` are kept."""
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for required in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not required.is_file():
            raise ValueError(
                f"{required} is missing: a BEIR folder needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv"
            )
    qrels = read_qrels(qrels_path)
    corpus = {
        str(r["_id"]): passage_text(r.get("title") or "", r.get("text") or "")
        for r in read_jsonl(root / "corpus.jsonl")
    }
    queries = {str(r["_id"]): r["text"] for r in read_jsonl(root / "queries.jsonl") if str(r["_id"]) in qrels}
    return BeirDataset(root.name, corpus, queries, {q: d for q, d in qrels.items() if q in queries})


def corpus_rows(documents) -> list[dict]:
    """BEIR ``corpus.jsonl`` rows for ingested documents (anything with ``path``, ``title`` and ``text``), keyed by
    the document's path in its folder, so hand-written qrels can name the files they judge."""
    return [{"_id": d.path, "title": d.title, "text": d.text} for d in sorted(documents, key=lambda d: d.path)]


def write_corpus(rows: list[dict], path: Path) -> None:
    """Write corpus rows as JSON lines."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
