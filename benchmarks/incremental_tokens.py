"""Teacher tokens of a full run on a 100-document corpus, then of the refresh after adding one document.

The corpus is the first ``--documents`` documents of a BEIR corpus (read from ../shared/data, written as text
files into data/benchmarks/incremental/documents); the refresh is the ``refresh_stale`` job that the
documents sensor and the nightly schedule launch, run in process with the stage defaults.

    python benchmarks/incremental_tokens.py                          # local teacher
    python benchmarks/incremental_tokens.py --teacher fake/teacher   # deterministic token counts, minutes

Writes ``benchmarks/results/incremental-tokens.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_documents(corpus: Path, folder: Path, count: int) -> list[Path]:
    """The first ``count`` corpus rows as ``<id>.txt`` files (title on the first line)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with corpus.open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if not str(row.get("text", "")).strip():
                continue
            path = folder / f"{row['_id']}.txt"
            path.write_text(f"{row.get('title') or row['_id']}\n\n{row['text']}\n", encoding="utf-8")
            paths.append(path)
            if len(paths) == count:
                break
    return paths


# Training settings only (teacher-facing stages keep their defaults): keeps three refreshes affordable on a CPU.
LIGHT_TRAINING = {
    "mining_rounds": {"config": {"rounds": 1, "student_epochs": 1}},
    "embedding_model": {"config": {"epochs": 1, "validation_corpus_size": 500}},
}


def refresh(instance, resources, stages: dict) -> dict:
    """One run of the refresh job; its inner runs' paid teacher tokens by stage."""
    from embpipe.defs.automation import refresh_passes, refresh_stale

    started = time.perf_counter()
    run_config = {"ops": {"refresh_stale_assets": {"config": {"stage_config_json": json.dumps(stages)}}}}
    result = refresh_stale.execute_in_process(instance=instance, resources=resources, run_config=run_config)
    passes = refresh_passes(instance, result.run_id)
    output = {
        "run_ids": [r.run_id for r in passes],
        "rebuilt": sorted(a for p in passes for a in p.assets),
    }
    store = resources["teacher"].store()
    usage = [u for run_id in output["run_ids"] for u in store.usage(run_id)]
    by_stage: dict[str, int] = {}
    for u in usage:
        by_stage[u.stage] = by_stage.get(u.stage, 0) + u.prompt_tokens + u.completion_tokens
    return {
        "paid_tokens": sum(by_stage.values()),
        "paid_tokens_by_stage": by_stage,
        "paid_calls": sum(u.calls - u.cached_calls for u in usage),
        "cached_calls": sum(u.cached_calls for u in usage),
        "rebuilt": output["rebuilt"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "data" / "techqa" / "corpus.jsonl"))
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--teacher", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--default-training", action="store_true", help="train with the stage defaults")
    args = parser.parse_args(argv)

    root = REPO / "data" / "benchmarks" / "incremental"
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "documents"
    paths = write_documents(Path(args.corpus), folder, args.documents + 1)
    extra = paths[-1].read_text(encoding="utf-8")
    paths[-1].unlink()
    os.environ["EMBPIPE_DATA_DIR"] = str(root / "data")
    os.environ["EMBPIPE_DOCUMENTS"] = str(folder)
    os.environ["EMBPIPE_AUTOMATION"] = "stopped"

    from embpipe.definitions import default_resources
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.resources.teacher import TeacherResource

    resources = {**default_resources(), "teacher": TeacherResource(model=args.teacher)}
    instance = dagster_instance()
    stages = {} if args.default_training else LIGHT_TRAINING
    full = refresh(instance, resources, stages)
    unchanged = refresh(instance, resources, stages)
    paths[-1].write_text(extra, encoding="utf-8")
    incremental = refresh(instance, resources, stages)
    result = {
        "corpus": args.corpus,
        "documents": args.documents,
        "added_document": paths[-1].name,
        "teacher": args.teacher,
        "stage_config": stages,
        "full": full,
        "rerun_unchanged": unchanged,
        "after_adding_one": incremental,
        "incremental_share_of_full": round(incremental["paid_tokens"] / max(full["paid_tokens"], 1), 4),
    }
    out = REPO / "benchmarks" / "results" / "incremental-tokens.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
