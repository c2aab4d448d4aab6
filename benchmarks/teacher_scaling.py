"""Questions per minute against a served teacher at 1, 4 and 16 calls in flight, under a rate limit.

A stand-in OpenAI-compatible server on 127.0.0.1 (``embpipe.llm.latency_server``) answers every call after a
fixed latency and refuses calls beyond its rate limit with a 429 and ``Retry-After``, as a GPU server or hosted
API would. The question stage (``generate_single_chunk_questions``, the code every run uses, through litellm) asks
it for questions on the same techqa chunks at each concurrency, with an empty cache each time. Writes
``benchmarks/results/teacher-scaling.json``: wall seconds, questions per minute, paid tokens, 429s, failures; and
one more pass at the highest concurrency without a rate limit (a served model of one's own).

    python benchmarks/teacher_scaling.py --chunks 300 --latency-s 0.3 --rate-per-s 20
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from embpipe.core.ingest.chunking import ChunkingParams
from embpipe.core.ingest.documents import read_folder
from embpipe.core.synthesis.questions import generate_single_chunk_questions, select_chunks
from embpipe.defs.ingest import chunk_documents
from embpipe.llm.latency_server import LatencyServer
from embpipe.llm.teacher import Teacher, TeacherSettings
from embpipe.llm.teacher_store import TeacherStore

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "teacher-scaling.json"
TECHQA = REPO.parent / "shared" / "data" / "techqa"


def techqa_chunks(count: int, seed: int) -> pd.DataFrame:
    """``count`` techqa chunks, chosen as the question stage chooses them."""
    documents = pd.DataFrame([vars(d) for d in read_folder(TECHQA).documents])
    return select_chunks(chunk_documents(documents, ChunkingParams()), count, 20, seed)


def measure(chunks: pd.DataFrame, concurrency: int, latency_s: float, rate_per_s: float | None) -> dict:
    """One pass of the question stage at ``concurrency``, with an empty cache."""
    with tempfile.TemporaryDirectory() as folder, LatencyServer(latency_s, rate_per_s) as server:
        settings = TeacherSettings(
            model="openai/stand-in", api_base=server.url, api_key="unused", max_concurrency=concurrency,
            token_budget=None, backoff_s=0.5, max_retries=6,
        )  # fmt: skip
        teacher = Teacher(settings, TeacherStore(Path(folder) / "teacher.sqlite"), run_id=f"c{concurrency}")
        started = time.perf_counter()
        questions, stats = generate_single_chunk_questions(teacher, chunks, 3)
        seconds = time.perf_counter() - started
        usage = teacher.store.usage(teacher.run_id)
    return {
        "concurrency": concurrency,
        "wall_s": round(seconds, 2),
        "calls": stats.attempted,
        "failed": stats.failed,
        "questions": len(questions),
        "questions_per_minute": round(60 * len(questions) / seconds, 1),
        "calls_per_s": round(stats.attempted / seconds, 2),
        "paid_tokens": sum(u.prompt_tokens + u.completion_tokens for u in usage),
        "http_429": server.log.count(429),
        "pauses": teacher.pacer.pauses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--latency-s", type=float, default=0.3)
    parser.add_argument("--rate-per-s", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    chunks = techqa_chunks(args.chunks, args.seed)
    rows = []
    for concurrency in args.concurrency:
        rows.append(measure(chunks, concurrency, args.latency_s, args.rate_per_s))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["questions_per_minute"]
    for row in rows:
        row["speedup"] = round(row["questions_per_minute"] / base, 2) if base else None
    unlimited = measure(chunks, max(args.concurrency), args.latency_s, None)  # a served model of our own
    print(json.dumps(unlimited), flush=True)
    result = {
        "what": "question stage against a stand-in served teacher (fixed latency, rate limit), techqa chunks",
        "chunks": len(chunks),
        "latency_s": args.latency_s,
        "rate_limit_per_s": args.rate_per_s,
        "questions_per_chunk": 3,
        "ceiling_calls_per_s": args.rate_per_s,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "rows": rows,
        "without_rate_limit": unlimited,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
