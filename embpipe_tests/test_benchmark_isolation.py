"""A BEIR benchmark folder can be both the document source and the scoring target, and its queries
and judgments reach nothing but the final scoring."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from embpipe.definitions import all_assets, all_checks, default_resources
from embpipe.orchestration.instance import dagster_instance
from embpipe.orchestration.runner import run_stale
from embpipe.resources.teacher import TeacherResource

TOPICS = ["fan", "power supply", "disk rebuild", "mail relay", "certificate", "clock", "garbage collection", "quota"]


def write_beir_folder(folder) -> list[str]:
    folder.mkdir()
    (folder / "qrels").mkdir()
    with (folder / "corpus.jsonl").open("w") as corpus:
        for i, topic in enumerate(TOPICS):
            text = (
                f"The {topic} subsystem reports alert Z{i}01 when it degrades. Operators replace the {topic} "
                f"module within an hour.\n\nThe {topic} log lists code Z{i}02 after a restart. Support asks "
                f"for the {topic} diagnostics bundle."
            )
            corpus.write(json.dumps({"_id": f"p{i}", "title": f"{topic} note", "text": text}) + "\n")
    queries = [f"UNIQUE-BENCHMARK-QUESTION-{i}: what does {topic} alert mean?" for i, topic in enumerate(TOPICS)]
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(queries))
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tp{i}\t1\n" for i in range(len(TOPICS)))
    )
    return queries


@pytest.mark.slow  # the whole graph with real training
def test_benchmark_queries_reach_only_the_scoring(data_dir, tmp_path):
    beir = tmp_path / "bench"
    queries = write_beir_folder(beir)
    run_config = {
        "ops": {
            "read_documents": {"config": {"folder": str(beir)}},
            "chunks": {"config": {"min_tokens": 5}},
            "synthetic_queries": {"config": {"max_chunks": 16, "min_chunk_tokens": 5}},
            "passage_pairs": {"config": {"max_pairs": 8}},
            "labeled_triplets": {"config": {"anchors": 16}},
            "cluster_profiles": {"config": {"max_clusters": 4}},
            "embedding_model": {"config": {"epochs": 1}},
            "retrieval_report": {"config": {"beir_folder": str(beir)}},
        }
    }
    resources = {**default_resources(), "teacher": TeacherResource(model="fake/teacher")}
    run_stale(all_assets, all_checks, resources, run_config, dagster_instance())

    report = pd.read_parquet(data_dir / "assets" / "retrieval_report.parquet")
    assert set(report["target"]) == {"synthetic-test", "bench"}
    assert report[report.target == "bench"]["n_queries"].iloc[0] == len(queries)

    tables = {p.stem: pd.read_parquet(p) for p in (data_dir / "assets").glob("*.parquet")}
    assert {"documents", "chunks", "synthetic_queries", "query_splits"} <= set(tables)
    documents = tables["documents"]
    assert sorted(documents["doc_id"]) == [f"p{i}" for i in range(len(TOPICS))]
    dumped = {name: table.astype(str).to_csv() for name, table in tables.items()}
    with sqlite3.connect(data_dir / "teacher" / "teacher.sqlite") as db:
        dumped["teacher_responses"] = "\n".join(row[0] for row in db.execute("SELECT text FROM responses"))
    for query in queries:
        marker = query.split(":")[0]
        assert not [name for name, text in dumped.items() if marker in text], marker
