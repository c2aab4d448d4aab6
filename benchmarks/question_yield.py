"""Teacher questions per hour, and their quality, against the questions asked per call and the replies the
local teacher decodes together (parallel sequences).

A question call's reply is mostly generated tokens, but its passage and instructions are read again for every
call; asking for more questions per call spreads that reading over more questions. This script runs the question
stage (``generate_single_chunk_questions`` then ``screen_questions``: the code every run uses, through litellm)
with the local teacher on the same techqa chunks for each ``--counts`` value and each ``--parallel`` value (the
teacher's ``local_parallel``: the stage keeps that many calls in flight and the server decodes them side by
side), with an empty response cache each time, and records wall seconds, calls, tokens, questions kept after
the near-duplicate screen, questions per hour and the round-trip pass rate (a kept question's chunk in the base
model's top 10 over all techqa chunks) with its Wilson 95% interval, so a faster setting that writes worse
questions shows as such.

    python benchmarks/question_yield.py --chunks 16 --counts 3 6 10
    python benchmarks/question_yield.py --chunks 32 --counts 3 --parallel 1 2 4 8 --tag parallel

Writes ``benchmarks/results/question-yield-<dataset>[-<tag>].json``; ``benchmarks/ledger.py`` lists it.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def wilson(passed: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a pass rate."""
    if total == 0:
        return 0.0, 0.0
    rate = passed / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return round(centre - half, 4), round(centre + half, 4)


def measure(
    chunks: pd.DataFrame,
    embeddings: pd.DataFrame,
    count: int,
    teacher_model: str,
    base,
    parallel: int = 1,
    style: str = "terms",
) -> dict:
    """One pass of the question stage asking ``count`` questions per call in ``style``, ``parallel`` calls decoded
    together, with an empty cache."""
    from embpipe.core.embedding import encode
    from embpipe.core.synthesis.questions import Screening, generate_single_chunk_questions, screen_questions
    from embpipe.llm.teacher import Teacher, TeacherSettings
    from embpipe.llm.teacher_store import TeacherStore

    with tempfile.TemporaryDirectory() as folder:
        settings = TeacherSettings(model=teacher_model, token_budget=None, local_parallel=parallel)
        teacher = Teacher(settings, TeacherStore(Path(folder) / "teacher.sqlite"), run_id=f"count-{count}")
        if (endpoint := teacher.local_endpoint()) is not None:
            endpoint.ensure()  # a loaded server before the clock starts, as in a run's later stages
        started = time.perf_counter()
        asked, stats = generate_single_chunk_questions(teacher, chunks, count, style=style)
        seconds = time.perf_counter() - started
        usage = teacher.store.usage(teacher.run_id)
    kept, screening = screen_questions(asked, encode(base, asked["text"].tolist()), embeddings, Screening())
    passed = round(screening["round_trip_pass_rate"] * len(kept))
    return {
        "questions_per_call": count,
        "question_style": style,
        "parallel_sequences": parallel,
        "wall_s": round(seconds, 1),
        "calls": stats.attempted,
        "failed_calls": stats.failed,
        "questions_written": len(asked),
        "questions_kept": len(kept),
        "questions_per_hour": round(3600 * len(kept) / seconds),
        "seconds_per_call": round(seconds / max(stats.attempted, 1), 2),
        "prompt_tokens": sum(u.prompt_tokens for u in usage),
        "completion_tokens": sum(u.completion_tokens for u in usage),
        "round_trip_pass_rate": round(screening["round_trip_pass_rate"], 4),
        "round_trip_ci": wilson(passed, len(kept)),
        "examples": kept["text"].head(4).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    from embpipe.core.synthesis.question_prompts import QUESTION_STYLES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "benchmarks" / "techqa-quick-pairs"),
                        help="a benchmark data folder: its chunks and their base-model embeddings")  # fmt: skip
    parser.add_argument("--dataset", default="techqa")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--counts", type=int, nargs="+", default=[3, 6, 10])
    parser.add_argument("--parallel", type=int, nargs="+", default=[1], help="the teacher's local_parallel values")
    parser.add_argument("--styles", nargs="+", default=["terms"], choices=QUESTION_STYLES, help="question styles")
    parser.add_argument("--teacher", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--tag", default="", help="results file suffix (a second benchmark of the same dataset)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    from embpipe.core.embedding import load_model, packaged_base_model
    from embpipe.core.synthesis.questions import select_chunks

    assets = Path(args.data) / "assets"
    every = pd.read_parquet(assets / "chunks.parquet")
    documents = pd.read_parquet(assets / "documents.parquet")
    notes = documents.loc[documents["path"].str.endswith(".md"), "doc_id"]  # the folder's SOURCE.md, not the corpus
    every = every[~every["doc_id"].isin(notes)]
    embeddings = pd.read_parquet(assets / "chunk_embeddings.parquet")
    embeddings = embeddings[embeddings["chunk_id"].isin(every["chunk_id"])]
    chunks = select_chunks(every, args.chunks, 20, args.seed)
    base = load_model(packaged_base_model(), 256, "cpu")
    rows = []
    for style in args.styles:
        for parallel in args.parallel:
            for count in args.counts:
                rows.append(measure(chunks, embeddings, count, args.teacher, base, parallel, style))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "examples"}), flush=True)
    result = {"dataset": args.dataset, "teacher": args.teacher, "chunks": len(chunks), "seed": args.seed, "rows": rows}
    path = RESULTS / f"question-yield-{args.dataset}{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
