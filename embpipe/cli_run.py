"""``embpipe run``: stage settings from the command line, the stale-only run, and its summary.

Wired into the ``embpipe`` parser in ``embpipe.cli``; heavy imports stay inside the functions.
"""

from __future__ import annotations

import argparse
import sys
import time

from embpipe.cli_plan import plan_lines, plan_tag, plan_versus_spent, run_plan


def run_config_from(args: argparse.Namespace) -> dict:
    """Stage config from command-line options (unset options keep the stage defaults)."""
    ops: dict[str, dict] = {}
    if args.documents:
        ops["read_documents"] = {"config": {"folder": args.documents}}
    if args.max_chunks is not None:
        ops["synthetic_queries"] = {"config": {"max_chunks": args.max_chunks}}
    if args.epochs is not None:
        ops["embedding_model"] = {"config": {"epochs": args.epochs}}
    if getattr(args, "beir", None):
        ops["retrieval_report"] = {"config": {"beir_folder": args.beir}}
    for stage, setting, value in getattr(args, "settings", []):
        require_stage_setting(stage, setting)
        ops.setdefault(stage, {"config": {}})["config"][setting] = value
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": getattr(args, "log_level", "INFO")}}}}


def require_stage_setting(stage: str, setting: str) -> None:
    """A clear error for a ``--set`` that names no stage or no setting of it."""
    from embpipe.definitions import all_assets
    from embpipe.orchestration.runner import config_class

    settings = {asset.op.name: config_class(asset) for asset in all_assets}
    if stage not in settings or settings[stage] is None:
        configurable = sorted(name for name, cls in settings.items() if cls is not None)
        raise ValueError(f"--set: no stage {stage!r} with settings; stages: {', '.join(configurable)}")
    fields = settings[stage].model_fields
    if setting not in fields:
        raise ValueError(f"--set: {stage} has no setting {setting!r}; its settings: {', '.join(fields)}")


def resources_from(args: argparse.Namespace) -> dict:
    """The default resources with the teacher options applied (API keys only from the environment)."""
    from dagster import EnvVar

    from embpipe.core.base_models import base_model_path
    from embpipe.definitions import default_resources
    from embpipe.resources.embedder import EmbedderResource
    from embpipe.resources.methods import MethodsResource
    from embpipe.resources.teacher import TeacherResource

    resources = default_resources()
    if getattr(args, "base_model", None):
        resources["embedder"] = EmbedderResource(base_model=base_model_path(args.base_model))
    teacher = {"model": args.teacher} if args.teacher else {}
    if args.api_base:
        teacher["api_base"] = args.api_base
    if args.api_key_env:
        teacher["api_key"] = EnvVar(args.api_key_env)
    if args.token_budget:
        teacher["token_budget"] = args.token_budget
    if args.teacher_timeout:
        teacher["timeout_s"] = args.teacher_timeout
    if getattr(args, "teacher_concurrency", None):
        teacher["max_concurrency"] = args.teacher_concurrency
    if getattr(args, "teacher_parallel", None):
        teacher["local_parallel"] = args.teacher_parallel
    if teacher:
        resources["teacher"] = TeacherResource(**teacher)
    resources["methods"] = MethodsResource(
        lmar=not getattr(args, "no_lmar", False),
        embgen=getattr(args, "embgen", False),
        mining=getattr(args, "mining", False),
    )
    return resources


def latest_metadata(instance, asset: str, field: str) -> str:
    """A metadata value of an asset's latest materialization, or '?' when there is none."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return str(metadata[field].value) if field in metadata else "?"


def print_summary(outcome, instance, started: float, tags: dict[str, str] | None = None) -> None:
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
    if outcome.failed:
        built = [a for p in outcome.passes[:-1] for a in p.assets]
        print(f"\nBuilt before the stop: {', '.join(built) or 'nothing'}")
    else:
        print(f"\nRebuilt: {', '.join(outcome.rebuilt) or 'nothing (everything was fresh)'}")
    if outcome.owed:
        print(f"Owed: {', '.join(outcome.owed)} (the teacher was unavailable for some items or a check failed; "
              "the next `embpipe run` asks those items again and pays only for them)")  # fmt: skip
    if outcome.held_back:
        held = ", ".join(f"{asset} (by {check})" for asset, check in sorted(outcome.held_back.items()))
        print(f"Held back by a failed blocking check, until its asset is rebuilt and passes: {held}")
    print(f"Teacher tokens paid in this run: {paid} (calls served from cache: {sum(u.cached_calls for u in usage)})")
    versus = plan_versus_spent(tags or {}, usage)
    if versus:
        print("Teacher calls and tokens, planned (embpipe plan) against made and counted (paid + cached):")
        print("\n".join(versus))
    if stored_model_path("embedding_model").is_dir():
        print(f"Model:   {stored_model_path('embedding_model')}")
        print(
            f"MLflow:  training run {latest_metadata(instance, 'embedding_model', 'mlflow_run_id')}; browse with "
            f"mlflow ui --backend-store-uri {MlflowResource().uri()}"
        )
    if report_path.is_file():
        print(
            f"Report:  {report_path} (Markdown and plots: MLflow run "
            f"{latest_metadata(instance, 'retrieval_report', 'mlflow_run_id')}, artifacts report/)"
        )
    print(f"Wall time: {time.perf_counter() - started:.1f} s")


def command_run(args: argparse.Namespace) -> int:
    from dagster import AssetKey

    from embpipe.definitions import all_assets, all_checks
    from embpipe.orchestration.instance import dagster_instance
    from embpipe.orchestration.runner import run_stale

    started = time.perf_counter()
    resources, run_config = resources_from(args), run_config_from(args)  # setting mistakes stop here
    tags = plan_tag(resources, run_config)
    instance = dagster_instance()

    def on_pass(number: int, names: list[str]) -> None:
        print(f"[embpipe] pass {number}: materializing {', '.join(names)}", flush=True)

    targets = {AssetKey(name) for name in args.select} if args.select else None
    outcome = run_stale(
        all_assets, all_checks, resources, run_config, instance, force=args.force, on_pass=on_pass,
        targets=targets, raise_on_error=False, tags=tags,
    )  # fmt: skip
    print_summary(outcome, instance, started, tags)
    for error in outcome.errors:
        print(f"[embpipe] stopped: {error}", file=sys.stderr)
    if outcome.failed and not args.debug:
        print(
            "[embpipe] the traceback is in the run's event log (embpipe ui) and printed with --debug", file=sys.stderr
        )
    return 1 if outcome.failed else 0


def command_plan(args: argparse.Namespace) -> int:
    """``embpipe plan``: the teacher calls, tokens, cost and minutes of a run with these options."""
    corpus, rows = run_plan(resources_from(args), run_config_from(args))
    print("\n".join(plan_lines(corpus, rows)))
    return 0
