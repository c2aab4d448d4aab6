"""The ``embpipe`` command line: run, ui, eval, lineage, cost, serve, export, fetch-models.

Example:
    embpipe run                         # the whole pipeline on data/sample, only what is stale
    embpipe run --documents ~/technotes --teacher openai/gpt-4o-mini
    embpipe eval --beir ../shared/data/techqa --model data/models/embedding_model
    embpipe lineage --document kv-0107-smtp-alerts.md
    embpipe cost
    embpipe serve --port 8000           # OpenAI-compatible /v1/embeddings
    embpipe export --output exported/   # ONNX fp32 + int8 with a parity check
"""

from __future__ import annotations

import argparse
import sys
import time

from embpipe.cli_artifacts import command_export, command_lineage, command_serve, command_sft


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (``--epochs 0`` or ``--token-budget 0`` is a mistake, not "none")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def run_config_from(args: argparse.Namespace) -> dict:
    """Stage config from command-line options (unset options keep the stage defaults)."""
    ops: dict[str, dict] = {}
    if args.documents:
        ops["read_documents"] = {"config": {"folder": args.documents}}
    if args.max_chunks is not None:
        ops["synthetic_queries"] = {"config": {"max_chunks": args.max_chunks}}
    if args.epochs is not None:
        ops["embedding_model"] = {"config": {"epochs": args.epochs}}
    if args.beir:
        ops["retrieval_report"] = {"config": {"beir_folder": args.beir}}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": args.log_level}}}}


def resources_from(args: argparse.Namespace) -> dict:
    """The default resources with the teacher options applied (API keys only from the environment)."""
    from dagster import EnvVar

    from embpipe.definitions import default_resources
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource

    resources = default_resources()
    teacher = {"model": args.teacher} if args.teacher else {}
    if args.api_base:
        teacher["api_base"] = args.api_base
    if args.api_key_env:
        teacher["api_key"] = EnvVar(args.api_key_env)
    if args.token_budget:
        teacher["token_budget"] = args.token_budget
    if args.teacher_timeout:
        teacher["timeout_s"] = args.teacher_timeout
    if teacher:
        resources["teacher"] = TeacherResource(**teacher)
    if getattr(args, "no_lmar", False) or getattr(args, "embgen", False):
        resources["methods"] = MethodsResource(lmar=not args.no_lmar, embgen=args.embgen)
    return resources


def latest_metadata(instance, asset: str, field: str) -> str:
    """A metadata value of an asset's latest materialization, or '?' when there is none."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return str(metadata[field].value) if field in metadata else "?"


def print_summary(outcome, instance, started: float) -> None:
    """The before/after table and where the model, report, MLflow runs and ledger are."""

    from embpipe.core.evaluation.report_render import markdown_report
    from embpipe.resources.io_managers import read_table, stored_model_path, stored_table_path
    from embpipe.resources.teacher import TeacherResource
    from embpipe.resources.tracking import MlflowResource

    report_path = stored_table_path("retrieval_report")
    if report_path.is_file():
        print(markdown_report(read_table(report_path, "retrieval_report"), "Before / after adaptation"))
    store = TeacherResource().store()
    usage = [u for run_id in outcome.run_ids for u in store.usage(run_id)]
    paid = sum(u.prompt_tokens + u.completion_tokens for u in usage)
    print(f"\nRebuilt: {', '.join(outcome.rebuilt) or 'nothing (everything was fresh)'}")
    if outcome.held_back:
        held = ", ".join(f"{asset} (by {check})" for asset, check in sorted(outcome.held_back.items()))
        print(f"Held back by a failed blocking check, until its asset is rebuilt and passes: {held}")
    print(f"Teacher tokens paid in this run: {paid} (calls served from cache: {sum(u.cached_calls for u in usage)})")
    print(f"Model:   {stored_model_path('embedding_model')}")
    print(
        f"Report:  {report_path} (Markdown and plots: MLflow run "
        f"{latest_metadata(instance, 'retrieval_report', 'mlflow_run_id')}, artifacts report/)"
    )
    print(
        f"MLflow:  training run {latest_metadata(instance, 'embedding_model', 'mlflow_run_id')}; browse with "
        f"mlflow ui --backend-store-uri {MlflowResource().uri()}"
    )
    print(f"Wall time: {time.perf_counter() - started:.1f} s")


def command_run(args: argparse.Namespace) -> int:
    from dagster import AssetKey

    from embpipe.definitions import all_assets, all_checks
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.orchestration.runner import run_stale

    started = time.perf_counter()
    instance = dagster_instance()

    def on_pass(number: int, names: list[str]) -> None:
        print(f"[embpipe] pass {number}: materializing {', '.join(names)}", flush=True)

    targets = {AssetKey(name) for name in args.select} if args.select else None
    resources, run_config = resources_from(args), run_config_from(args)
    outcome = run_stale(
        all_assets, all_checks, resources, run_config, instance, force=args.force, on_pass=on_pass,
        targets=targets, raise_on_error=False,
    )  # fmt: skip
    print_summary(outcome, instance, started)
    for error in outcome.errors:
        print(f"[embpipe] stopped: {error}", file=sys.stderr)
    return 1 if outcome.failed else 0


def command_ui(args: argparse.Namespace) -> int:
    import signal
    import subprocess

    from embpipe.orchestration.instance import prepare_dagster_home

    prepare_dagster_home()
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(args.port), "-h", args.host]
    return subprocess.call(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def command_eval(args: argparse.Namespace) -> int:
    from embpipe.core.embedding import encode, load_model
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.evaluation.report import compare_models
    from embpipe.core.evaluation.report_render import markdown_report, save_report
    from embpipe.resources.embedder import EmbedderResource

    embedder = EmbedderResource(max_seq_length=args.max_seq_length)
    dataset = load_beir(args.beir, args.split)
    base = embedder.load()
    encoders = {"base": lambda texts: encode(base, texts, embedder.batch_size)}
    if args.model:
        tuned = load_model(args.model, args.max_seq_length, "auto")
        encoders["tuned"] = lambda texts: encode(tuned, texts, embedder.batch_size)
    comparison = compare_models(dataset, encoders, top_k=100)
    markdown = markdown_report(comparison.table, f"{dataset.name}: {len(dataset.corpus)} documents")
    print(markdown)
    if args.output_dir:
        for path in save_report(args.output_dir, markdown, [comparison]):
            print(f"wrote {path}")
    return 0


def command_cost(args: argparse.Namespace) -> int:
    from embpipe.resources.teacher import TeacherResource

    rows = TeacherResource().store().usage(args.run_id)
    print(f"{'stage':<22}{'model':<32}{'calls':>7}{'cached':>8}{'prompt':>10}{'completion':>12}{'cost $':>10}")
    for r in rows:
        print(
            f"{r.stage:<22}{r.model:<32}{r.calls:>7}{r.cached_calls:>8}{r.prompt_tokens:>10}{r.completion_tokens:>12}{r.cost:>10.4f}"
        )
    return 0


def command_fetch_models(args: argparse.Namespace) -> int:
    from embpipe.llm.model_weights import main

    return main(args.names)


def add_run_command(commands: argparse._SubParsersAction) -> None:
    """``embpipe run``: every stale asset, in process."""
    run = commands.add_parser("run", help="materialize every stale asset in process (headless)")
    run.add_argument("--documents", help="documents folder (default data/sample)")
    run.add_argument("--teacher", help="litellm model string (default local/qwen2.5-coder-1.5b)")
    run.add_argument("--api-base", help="endpoint for a served teacher (Ollama, vLLM)")
    run.add_argument("--api-key-env", help="name of the environment variable that holds the teacher API key")
    run.add_argument("--token-budget", type=positive_int, help="most teacher tokens this run may pay for")
    run.add_argument("--teacher-timeout", type=positive_float, help="seconds one teacher request may take")
    run.add_argument("--max-chunks", type=positive_int, help="chunks to write questions for")
    run.add_argument("--epochs", type=positive_int, help="most training epochs")
    run.add_argument(
        "--no-lmar", action="store_true", help="skip LMAR's stages (triplets, clusters, cluster questions)"
    )
    run.add_argument("--embgen", action="store_true", help="run EmbGen's stages (entities, strategy questions)")
    run.add_argument("--beir", help="also score on this BEIR folder (never trained on)")
    run.add_argument("--force", action="store_true", help="rebuild every asset (LLM replies still come from cache)")
    run.add_argument("--select", nargs="+", metavar="ASSET", help="only these assets (and what they need)")
    run.add_argument("--log-level", default="INFO", help="Dagster console log level")
    run.set_defaults(func=command_run)


def add_inspection_commands(commands: argparse._SubParsersAction) -> None:
    """``ui``, ``eval``, ``cost`` and ``lineage``: look at what a run made."""
    ui = commands.add_parser("ui", help="start the Dagster web UI (dagster dev) with the instance under data/")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=command_ui)

    evaluate = commands.add_parser("eval", help="score BM25, the base model and a model on a BEIR folder")
    evaluate.add_argument("--beir", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    evaluate.add_argument("--model", help="model folder to compare with the base model")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--max-seq-length", type=int, default=256)
    evaluate.add_argument("--output-dir", help="write report.md and the plots into this folder")
    evaluate.set_defaults(func=command_eval)

    cost = commands.add_parser("cost", help="teacher tokens by stage and model (the ledger)")
    cost.add_argument("--run-id", help="one Dagster run (default: all runs)")
    cost.set_defaults(func=command_cost)

    lineage = commands.add_parser("lineage", help="the questions and training pairs behind a document or a query")
    which = lineage.add_mutually_exclusive_group(required=True)
    which.add_argument("--document", metavar="PATH", help="a document's path (as ingested, or ending in it)")
    which.add_argument("--query", metavar="ID", help="a query id: its chunks and documents")
    lineage.add_argument("--csv", action="store_true", help="CSV instead of a table")
    lineage.set_defaults(func=command_lineage)


def add_delivery_commands(commands: argparse._SubParsersAction) -> None:
    """``serve``, ``export``, ``sft`` and ``fetch-models``: hand the model (or the weights) over."""
    from embpipe.serving.app import ServerLimits

    serve = commands.add_parser("serve", help="OpenAI-compatible POST /v1/embeddings (ONNX model when exported)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", help="ONNX export or sentence-transformers folder (default: the pipeline's)")
    serve.add_argument("--name", default="embpipe", help="model name reported by /v1/models and /health")
    serve.add_argument("--max-batch", type=int, default=ServerLimits.max_batch, help="most inputs per request")
    serve.add_argument(
        "--max-input-chars", type=int, default=ServerLimits.max_input_chars, help="longest input in characters"
    )
    serve.add_argument("--max-body-bytes", type=int, default=ServerLimits.max_body_bytes, help="largest request body")
    serve.add_argument("--log-level", default="warning")
    serve.set_defaults(func=command_serve)

    export = commands.add_parser("export", help="export a model to ONNX (fp32 + int8) and check parity and speed")
    export.add_argument("--model", help="sentence-transformers folder (default: the pipeline's)")
    export.add_argument("--output", required=True, help="folder to write the ONNX export into")
    export.add_argument("--texts", help="file of held-out texts (one per line) for the parity check")
    export.add_argument("--min-cosine", type=float, default=0.99)
    export.add_argument("--max-seq-length", type=int, default=256)
    export.set_defaults(func=command_export)

    sft = commands.add_parser("sft", help="write EmbGen's question-answer pairs as chat JSONL for LLM fine-tuning")
    sft.add_argument("--output", required=True, help="JSONL file to write")
    sft.add_argument("--system", help="system message of every record (default: a question-answering assistant)")
    sft.set_defaults(func=command_sft)

    fetch = commands.add_parser("fetch-models", help="download and verify the local teacher weights")
    fetch.add_argument("names", nargs="*")
    fetch.set_defaults(func=command_fetch_models)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="embpipe", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_inspection_commands(commands)
    add_delivery_commands(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
