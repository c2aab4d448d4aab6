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
import json
import logging
import os
import sys

from embpipe.cli_artifacts import command_export, command_lineage, command_serve, command_sft
from embpipe.cli_run import command_plan, command_run

COMMON = argparse.ArgumentParser(add_help=False)
COMMON.add_argument("--debug", action="store_true", help="print full tracebacks (also: EMBPIPE_DEBUG=1)")
USER_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError)


class FirstLineOfErrors(logging.Logger):
    """Loggers (Dagster's console logger among them) that print only the first line of an error record: the
    stack stays in the run's event log (``embpipe ui``) and ``--debug`` prints it."""

    def __init__(self, name: str, level: int = logging.NOTSET) -> None:
        super().__init__(name, level)
        self.addFilter(first_line_of_errors)


def first_line_of_errors(record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR and record.exc_info is None:
        record.msg, record.args = str(record.msg).split("\n", 1)[0], ()
    return True


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


def command_ui(args: argparse.Namespace) -> int:
    import signal
    import subprocess

    from embpipe.orchestration.instance import prepare_dagster_home

    prepare_dagster_home()
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(args.port), "-h", args.host]
    return subprocess.call(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def command_eval(args: argparse.Namespace) -> int:
    from embpipe.core.embedding import load_model, role_encoder
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.evaluation.report import compare_models
    from embpipe.core.evaluation.report_render import markdown_report, save_report
    from embpipe.resources.embedder import EmbedderResource

    embedder = EmbedderResource(max_seq_length=args.max_seq_length)
    dataset = load_beir(args.beir, args.split)
    base = embedder.load()
    encoders = {"base": role_encoder(base, embedder.batch_size)}
    if args.model:
        tuned = load_model(args.model, args.max_seq_length, "auto")
        encoders["tuned"] = role_encoder(tuned, embedder.batch_size)
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
    from embpipe.core.base_models import BASE_MODELS, ensure_base_model
    from embpipe.llm.model_weights import LOCAL_MODELS, ensure_model

    for name in args.names or list(LOCAL_MODELS):
        if name in BASE_MODELS:
            spec = BASE_MODELS[name]
            print(f"{name}: {spec.about}; licence: {spec.licence}")
            folder = ensure_base_model(name, accept_licence=args.accept_licence)
            print(f"{name}: {folder} (adapt it with: embpipe run --base-model {name})")
        else:
            print(f"{name}: {ensure_model(name)}")
    return 0


def stage_setting(text: str) -> tuple[str, str, object]:
    """An argparse type: ``stage.setting=value`` (the value read as JSON when it is JSON, else as text)."""
    target, _, raw = text.partition("=")
    stage, _, setting = target.partition(".")
    if not stage or not setting or not raw:
        raise argparse.ArgumentTypeError(f"expected stage.setting=value, got {text!r}")
    try:
        return stage, setting, json.loads(raw)
    except json.JSONDecodeError:
        return stage, setting, raw


def run_settings_parser() -> argparse.ArgumentParser:
    """The options ``embpipe run`` and ``embpipe plan`` share: the corpus, the teacher, the stage settings."""
    settings = argparse.ArgumentParser(add_help=False)
    settings.add_argument("--documents", help="documents folder (default data/sample)")
    settings.add_argument("--teacher", help="litellm model string (default local/qwen2.5-coder-1.5b)")
    settings.add_argument("--api-base", help="endpoint for a served teacher (Ollama, vLLM)")
    settings.add_argument("--api-key-env", help="name of the environment variable that holds the teacher API key")
    settings.add_argument("--token-budget", type=positive_int, help="most teacher tokens this run may pay for")
    settings.add_argument("--teacher-timeout", type=positive_float, help="seconds one teacher request may take")
    settings.add_argument("--teacher-concurrency", type=positive_int, help="calls in flight (default 1 local, 4 API)")
    settings.add_argument("--teacher-parallel", type=positive_int, help="local teacher replies decoded together")
    settings.add_argument("--max-chunks", type=positive_int, help="chunks to write questions for")
    settings.add_argument("--base-model", help="model to adapt: a sentence-transformers folder or fetched model name")
    settings.add_argument("--epochs", type=positive_int, help="most training epochs")
    settings.add_argument("--no-lmar", action="store_true", help="skip LMAR's stages (triplets, cluster questions)")
    settings.add_argument("--embgen", action="store_true", help="run EmbGen's stages (entities, strategy questions)")
    settings.add_argument("--mining", action="store_true", help="run the student-teacher mining rounds (default: off)")
    settings.add_argument(
        "--set",
        dest="settings",
        type=stage_setting,
        action="append",
        default=[],
        metavar="STAGE.SETTING=VALUE",
        help="any stage setting of the configuration table, e.g. --set passage_pairs.max_pairs=200 (repeatable)",
    )
    return settings


def add_run_command(commands: argparse._SubParsersAction) -> None:
    """``embpipe run``: every stale asset, in process; ``embpipe plan``: what it would ask the teacher."""
    settings = run_settings_parser()
    run = commands.add_parser(
        "run", parents=[COMMON, settings], help="materialize every stale asset in process (headless)"
    )
    run.add_argument("--beir", help="also score on this BEIR folder (never trained on)")
    run.add_argument("--force", action="store_true", help="rebuild every asset (LLM replies still come from cache)")
    run.add_argument("--select", nargs="+", metavar="ASSET", help="only these assets (and what they need)")
    run.add_argument("--log-level", default="INFO", help="Dagster console log level")
    run.set_defaults(func=command_run)
    plan = commands.add_parser(
        "plan",
        parents=[COMMON, settings],
        help="the teacher calls, tokens, cost and hours a run with these settings would spend (calls nothing)",
    )
    plan.set_defaults(func=command_plan)


def add_inspection_commands(commands: argparse._SubParsersAction) -> None:
    """``ui``, ``eval``, ``cost`` and ``lineage``: look at what a run made."""
    ui = commands.add_parser(
        "ui", parents=[COMMON], help="start the Dagster web UI (dagster dev) with the instance under data/"
    )
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(func=command_ui)

    evaluate = commands.add_parser(
        "eval", parents=[COMMON], help="score BM25, the base model and a model on a BEIR folder"
    )
    evaluate.add_argument("--beir", required=True, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    evaluate.add_argument("--model", help="model folder to compare with the base model")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--max-seq-length", type=int, default=256)
    evaluate.add_argument("--output-dir", help="write report.md and the plots into this folder")
    evaluate.set_defaults(func=command_eval)

    cost = commands.add_parser("cost", parents=[COMMON], help="teacher tokens by stage and model (the ledger)")
    cost.add_argument("--run-id", help="one Dagster run (default: all runs)")
    cost.set_defaults(func=command_cost)

    lineage = commands.add_parser(
        "lineage", parents=[COMMON], help="the questions and training pairs behind a document or a query"
    )
    which = lineage.add_mutually_exclusive_group(required=True)
    which.add_argument("--document", metavar="PATH", help="a document's path (as ingested, or ending in it)")
    which.add_argument("--query", metavar="ID", help="a query id: its chunks and documents")
    lineage.add_argument("--csv", action="store_true", help="CSV instead of a table")
    lineage.set_defaults(func=command_lineage)


def add_delivery_commands(commands: argparse._SubParsersAction) -> None:
    """``serve``, ``export``, ``sft`` and ``fetch-models``: hand the model (or the weights) over."""
    from embpipe.serving.app import ServerLimits

    serve = commands.add_parser(
        "serve", parents=[COMMON], help="OpenAI-compatible POST /v1/embeddings (ONNX model when exported)"
    )
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

    export = commands.add_parser(
        "export", parents=[COMMON], help="export a model to ONNX (fp32 + int8) and check parity and speed"
    )
    export.add_argument("--model", help="sentence-transformers folder (default: the pipeline's)")
    export.add_argument("--output", required=True, help="folder to write the ONNX export into")
    export.add_argument("--texts", help="file of held-out texts (one per line) for the parity check")
    export.add_argument("--min-cosine", type=float, default=0.99)
    export.add_argument("--max-seq-length", type=int, default=256)
    export.set_defaults(func=command_export)

    sft = commands.add_parser(
        "sft", parents=[COMMON], help="write EmbGen's question-answer pairs as chat JSONL for LLM fine-tuning"
    )
    sft.add_argument("--output", required=True, help="JSONL file to write")
    sft.add_argument("--system", help="system message of every record (default: a question-answering assistant)")
    sft.set_defaults(func=command_sft)

    fetch = commands.add_parser(
        "fetch-models", parents=[COMMON], help="download and verify teacher weights or optional base models"
    )
    fetch.add_argument("names", nargs="*", help="teacher models (default: all) or base models: all-mpnet-base-v2, …")
    fetch.add_argument(
        "--accept-licence", action="store_true", help="accept the licence of a model that needs it (it is printed)"
    )
    fetch.set_defaults(func=command_fetch_models)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="embpipe", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    add_run_command(commands)
    add_inspection_commands(commands)
    add_delivery_commands(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error (a missing folder, a bad value) is one line on stderr and exit code 2."""
    args = parser().parse_args(argv)
    debug = args.debug or os.environ.get("EMBPIPE_DEBUG", "") not in {"", "0"}
    previous_logger_class = logging.getLoggerClass()
    if not debug:
        logging.setLoggerClass(FirstLineOfErrors)
    try:
        return args.func(args)
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"embpipe {args.command}: {error} (--debug for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"embpipe {args.command}: interrupted; a rerun resumes where this one stopped", file=sys.stderr)
        return 130
    finally:
        logging.setLoggerClass(previous_logger_class)


if __name__ == "__main__":
    sys.exit(main())
