"""Run the whole pipeline on a BEIR corpus and score it on that benchmark's real queries.

The pipeline sees only the benchmark's ``corpus.jsonl``, copied alone into the run's data folder (the
benchmark folder's ``SOURCE.md`` or README is not a corpus document); the real queries and judgments are used
by ``retrieval_report`` alone, against the benchmark's own corpus entries.

    python benchmarks/run_benchmark.py --dataset techqa                    # default: fits in 2 hours here
    python benchmarks/run_benchmark.py --dataset techqa --setting quick    # about 30 minutes
    python benchmarks/run_benchmark.py --dataset techqa --variant nocluster --set synthetic_queries.seed=7
    python benchmarks/run_benchmark.py --setting quick --variant miningR --reuse-from mining1 \
        --set mining_rounds.rounds=2

``--reuse-from`` starts from a copy of another variant's data folder (its Dagster instance, assets and teacher
cache) and rebuilds only what the changed settings make stale, so variants that differ in one late stage share
their upstream; the results record which assets were rebuilt, and tokens and wall time cover only those.

Writes ``benchmarks/results/<dataset>-<variant>.json`` (metrics per model, config, seed, tokens and wall
time per stage) and ``benchmarks/results/<dataset>-<variant>/`` (report.md and plots).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from embpipe.llm.budget import DEFAULT_RUN_TOKEN_BUDGET  # noqa: E402  (the repository on the path first)

# Teacher-token budgets: a question request costs about 400 tokens (the budget counts the estimate of prompt plus
# max_tokens before each call) and 10-12 s with the local teacher on 2 cores. The default setting is what
# ``embpipe run`` does by default: its budget, and its most epochs (None: the stage's own default is not overridden).
SETTINGS = {
    "default": {"token_budget": DEFAULT_RUN_TOKEN_BUDGET, "epochs": None},
    "quick": {"token_budget": 15_000, "epochs": 3},
}


def parse_overrides(pairs: list[str]) -> dict[str, dict]:
    """``op.field=value`` pairs as run-config ops, read and checked as ``embpipe run --set`` reads them."""
    from embpipe.cli import stage_setting
    from embpipe.cli_run import require_stage_setting

    ops: dict[str, dict] = {}
    for pair in pairs:
        op, field, value = stage_setting(pair)
        require_stage_setting(op, field)
        ops.setdefault(op, {"config": {}})["config"][field] = value
    return ops


def corpus_only(dataset_dir: Path, data: Path) -> Path:
    """A folder in ``data`` holding a copy of the benchmark's ``corpus.jsonl`` alone: the benchmark folder's notes
    (``SOURCE.md``, a README) are not documents of the corpus and must not reach the pipeline."""
    folder = data / "corpus"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "corpus.jsonl"
    if not target.is_file() or target.read_bytes() != (dataset_dir / "corpus.jsonl").read_bytes():
        shutil.copyfile(dataset_dir / "corpus.jsonl", target)
    return folder


def benchmark_run_config(
    dataset_dir: Path, documents: Path, setting: dict, seed: int, overrides: dict[str, dict]
) -> dict:
    """Run config: ``documents`` (the corpus alone) as the documents, the benchmark as an extra scoring target."""
    ops = {
        "read_documents": {"config": {"folder": str(documents)}},
        "synthetic_queries": {"config": {"seed": seed}},
        "query_splits": {"config": {"seed": seed}},
        "embedding_model": {"config": {"seed": seed} | ({"epochs": setting["epochs"]} if setting["epochs"] else {})},
        "retrieval_report": {"config": {"beir_folder": str(dataset_dir)}},
    }
    for op, cfg in overrides.items():
        ops.setdefault(op, {"config": {}})["config"].update(cfg["config"])
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "INFO"}}}}


def step_seconds(instance, run_ids: list[str]) -> dict[str, float]:
    """Wall seconds of each step (asset) across the runs."""
    from dagster import DagsterEventType

    seconds: dict[str, float] = {}
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS):
            step = entry.dagster_event.step_key
            seconds[step] = seconds.get(step, 0.0) + entry.dagster_event.event_specific_data.duration_ms / 1000
    return seconds


def metrics_by_model(report, target: str) -> dict[str, dict[str, float]]:
    part = report[report.target == target]
    return {m: dict(zip(g.metric, g.value.astype(float), strict=True)) for m, g in part.groupby("model", sort=False)}


def comparison_rows(report, target: str) -> dict[str, dict[str, float]]:
    part = report[(report.target == target) & (report.model == "tuned")]
    columns = ["delta", "ci_low", "ci_high", "p_value", "wins", "losses"]
    return {row.metric: {c: float(getattr(row, c)) for c in columns} for row in part.itertuples(index=False)}


def main(argv: list[str] | None = None) -> int:
    from embpipe.llm.local_endpoint import LOCAL_PARALLEL

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="techqa")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="default")
    parser.add_argument("--variant", help="name in the results file (default: the setting)")
    parser.add_argument("--description", default="", help="what this variant changes, for the experiment ledger")
    parser.add_argument("--teacher", default="local/qwen2.5-coder-1.5b")
    parser.add_argument("--token-budget", type=int, help="override the setting's teacher-token budget")
    parser.add_argument("--teacher-parallel", type=int, default=LOCAL_PARALLEL,
                        help="local teacher replies decoded together (default: embpipe run's)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", action="append", default=[], help="extra stage config: op.field=value")
    parser.add_argument("--no-lmar", action="store_true", help="without LMAR's stages (the no-cluster ablation)")
    parser.add_argument("--embgen", action="store_true", help="with EmbGen's stages (entities, strategy questions)")
    parser.add_argument("--mining", action="store_true", help="with the mining rounds (off: their share to questions)")
    parser.add_argument("--annotate", action="store_true", help="only add stage metadata to an existing result")
    parser.add_argument(
        "--reuse-from",
        metavar="VARIANT",
        help="start from a copy of that variant's data (same upstream config) and rebuild only what is stale",
    )
    args = parser.parse_args(argv)

    variant = args.variant or args.setting
    name = f"{args.dataset}-{variant}"
    dataset_dir = Path(args.data_root) / args.dataset
    os.environ["EMBPIPE_DATA_DIR"] = str(REPO / "data" / "benchmarks" / name)
    if args.annotate:
        return annotate(name)
    if args.reuse_from:
        source = REPO / "data" / "benchmarks" / f"{args.dataset}-{args.reuse_from}"
        target = Path(os.environ["EMBPIPE_DATA_DIR"])
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    from dagster import AssetKey

    from embpipe.definitions import all_assets, all_checks, default_resources
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.orchestration.runner import run_stale
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource

    setting = SETTINGS[args.setting]
    budget = args.token_budget or setting["token_budget"]
    documents = corpus_only(dataset_dir, Path(os.environ["EMBPIPE_DATA_DIR"]))
    run_config = benchmark_run_config(dataset_dir, documents, setting, args.seed, parse_overrides(args.set))
    teacher = TeacherResource(model=args.teacher, token_budget=budget, local_parallel=args.teacher_parallel)
    methods = MethodsResource(lmar=not args.no_lmar, embgen=args.embgen, mining=args.mining)
    resources = {**default_resources(), "teacher": teacher, "methods": methods}
    instance = dagster_instance()
    started = time.perf_counter()
    outcome = run_stale(
        all_assets, all_checks, resources, run_config, instance, force=not args.reuse_from, raise_on_error=False
    )
    blocked_by = failed_checks(instance, outcome.run_ids) if outcome.failed else []
    if outcome.failed and not blocked_by:
        print("the pipeline failed (not a check); see the log above", file=sys.stderr)
        return 1
    if blocked_by:  # a benchmark measures the blocked model too, and its results say it was blocked
        print(f"blocked by {blocked_by}: scoring the blocked model anyway", file=sys.stderr)
        scoring = run_stale(all_assets, [], resources, run_config, instance, targets={AssetKey("retrieval_report")})
        outcome.passes += scoring.passes
    wall = time.perf_counter() - started

    result = collect_result(args, variant, budget, run_config, resources, instance, outcome, wall, dataset_dir)
    result["blocked_by_checks"] = blocked_by
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_report_folder(name, instance)
    print(json.dumps({k: result[k] for k in ("metrics", "tuned_vs_base", "tokens", "wall_s")}, indent=2))
    return 0


def failed_checks(instance, run_ids: list[str]) -> list[str]:
    """Names of the asset checks that failed in these runs."""
    from dagster import DagsterEventType

    return sorted(
        {
            entry.dagster_event.event_specific_data.check_name
            for run_id in run_ids
            for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
            if not entry.dagster_event.event_specific_data.passed
        }
    )


def tokens_by_stage(store, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Teacher calls and tokens per stage (paid prompt/completion, and tokens served from cache)."""
    stages: dict[str, dict[str, int]] = {}
    for usage in (u for run_id in run_ids for u in store.usage(run_id)):
        entry = stages.setdefault(usage.stage, {"calls": 0, "prompt": 0, "completion": 0, "cached": 0})
        entry["calls"] += usage.calls
        entry["prompt"] += usage.prompt_tokens
        entry["completion"] += usage.completion_tokens
        entry["cached"] += usage.cached_tokens
    return stages


def resolved_stage_config(run_config: dict) -> dict[str, dict]:
    """Every stage's full config (defaults filled in), as the run used it."""
    from embpipe.definitions import all_assets
    from embpipe.orchestration.runner import config_class, op_config

    resolved = {}
    for asset in all_assets:
        cls = config_class(asset)
        if cls is not None:
            resolved[asset.op.name] = cls(**op_config(run_config, asset.op.name)).model_dump(mode="json")
    return resolved


def collect_result(args, variant, budget, run_config, resources, instance, outcome, wall, dataset_dir) -> dict:
    """The results record: metrics per model, the tuned-vs-base tests, counts, tokens and wall time."""
    import pandas as pd

    from embpipe.core.evaluation.beir import load_beir
    from embpipe.paths import data_dir

    assets = data_dir() / "assets"
    report = pd.read_parquet(assets / "retrieval_report.parquet")
    chunks = pd.read_parquet(assets / "chunks.parquet")
    stages = tokens_by_stage(resources["teacher"].store(), outcome.run_ids)
    total_tokens = sum(v["prompt"] + v["completion"] + v["cached"] for v in stages.values())
    benchmark = load_beir(dataset_dir)
    embedder = resources["embedder"]
    return {
        "dataset": args.dataset,
        "variant": variant,
        "description": args.description,
        "setting": args.setting,
        "seed": args.seed,
        "reused_upstream_from": args.reuse_from,
        "rebuilt": outcome.rebuilt,
        "config": {
            "teacher": args.teacher,
            "token_budget": budget,
            "teacher_parallel": args.teacher_parallel,
            "lmar": not args.no_lmar,
            "embgen": args.embgen,
            "run_config": run_config["ops"],
            "base_model": embedder.model_id(),
            "max_seq_length": embedder.max_seq_length,
        },
        "metrics": metrics_by_model(report, benchmark.name),
        "tuned_vs_base": comparison_rows(report, benchmark.name),
        "synthetic_test_metrics": metrics_by_model(report, "synthetic-test"),
        "counts": {
            "benchmark_queries": len(benchmark.qrels),
            "documents": len(pd.read_parquet(assets / "documents.parquet")),
            "chunks": len(chunks),
            "synthetic_queries": len(pd.read_parquet(assets / "synthetic_queries.parquet")),
        },
        "tokens": {
            "total": total_tokens,
            "by_stage": stages,
            "per_document_token": total_tokens / max(int(chunks["n_tokens"].sum()), 1),
        },
        "wall_s": {
            "total": round(wall, 1),
            "by_stage": {k: round(v, 1) for k, v in step_seconds(instance, outcome.run_ids).items()},
        },
        "stage_metadata": stage_metadata(instance),
    }


RECORDED_STAGES = (
    "labeled_triplets",
    "chunk_clusters",
    "cluster_profiles",
    "cluster_queries",
    "entity_descriptions",
    "entity_clusters",
    "embgen_queries",
    "synthetic_queries",
    "query_splits",
    "hard_negatives",
    "mining_rounds",
    "embedding_model",
    "onnx_model",
)


def stage_metadata(instance) -> dict[str, dict]:
    """The latest materialization metadata of the stages whose figures a comparison needs (rounds, epochs)."""
    from dagster import AssetKey

    recorded = {}
    for name in RECORDED_STAGES:
        event = instance.get_latest_materialization_event(AssetKey(name))
        if event is None or event.asset_materialization is None:
            continue
        values = {}
        for key, entry in event.asset_materialization.metadata.items():
            value = entry.value
            if isinstance(value, int | float | str | bool | dict | list):
                values[key] = value
            elif hasattr(value, "md_str"):
                values[key] = value.md_str
        recorded[name] = values
    return recorded


def annotate(name: str) -> int:
    """Add ``stage_metadata`` to an existing results file from the run's own Dagster instance."""
    from embpipe.orchestration.instance import dagster_instance

    path = RESULTS / f"{name}.json"
    result = json.loads(path.read_text())
    result["stage_metadata"] = stage_metadata(dagster_instance())
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["stage_metadata"], indent=2)[:4000])
    return 0


def write_report_folder(name: str, instance) -> None:
    """The report (Markdown and plots) that retrieval_report logged to MLflow, into results/<name>/."""
    import mlflow
    from dagster import AssetKey

    from embpipe.resources.tracking import MlflowResource

    event = instance.get_latest_materialization_event(AssetKey("retrieval_report"))
    run_id = event.asset_materialization.metadata["mlflow_run_id"].value
    folder = RESULTS / name
    folder.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(MlflowResource().uri())
    artifact_uri = mlflow.get_run(run_id).info.artifact_uri
    if artifact_uri.startswith("file://"):  # a local store: copy the files as they are
        source = Path(urllib.parse.urlparse(artifact_uri).path) / "report"
        for path in sorted(source.iterdir()):
            shutil.copyfile(path, folder / path.name)
    else:
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report", dst_path=str(folder))


if __name__ == "__main__":
    sys.exit(main())
