"""``embpipe plan``: what a run with these settings would ask the teacher, before anything is asked.

It reads and chunks the corpus as the pipeline does, plans every teacher stage with ``embpipe.core.plan`` (the
budget's own token estimate), and prints calls, tokens, cost (where litellm knows the model's price) and hours
(from the teacher's pace in the ledger, else a stated default). ``embpipe run`` stores the same plan in its runs'
tags and prints it beside what was spent. No teacher is called and no asset is written. The command itself
(``command_plan``) is in ``embpipe.cli_run``, which builds the resources and run config both commands share.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

PLAN_TAG = "embpipe/plan"
# Paces used when the ledger has none for the model: the local 1.5B teacher on 2 CPU cores (prompt and generation
# tokens per second, benchmarks/results/teacher-speed.json, portable build) and a served model (a GPU server or
# hosted API: about a second a call).
LOCAL_PROMPT_TPS = 71.5
LOCAL_GENERATION_TPS = 9.44
SERVED_SECONDS_PER_CALL = 1.0
# The guide's CPU time per text on 2 cores: EmbeddingGemma-300M embedded 12,347 techqa texts in 1,445 s
# (benchmarks/results/recipe-sweep-techqa-distil.json); the pipeline distilled MiniLM with its layer on 9,935 texts
# at 1,665 s an epoch (benchmarks/results/techqa-guide.json, alone on an AMD EPYC; the probe's loop took half that).
GUIDE_SECONDS_PER_TEXT = 0.117
DISTIL_SECONDS_PER_TEXT_EPOCH = 0.168


@dataclass(frozen=True)
class Pace:
    """How long the teacher takes: seconds per call (the ledger's pace, or a served default), or the local model's
    token rates; and where the figure comes from."""

    source: str
    seconds_per_call: float = 0.0
    prompt_tps: float | None = None
    generation_tps: float | None = None

    def hours(self, plan) -> float:
        seconds = plan.calls * self.seconds_per_call
        if self.prompt_tps and self.generation_tps:
            seconds += plan.prompt_tokens / self.prompt_tps + plan.completion_tokens / self.generation_tps
        return seconds / 3600

    def describe(self) -> str:
        if self.prompt_tps:
            return f"{self.prompt_tps} prompt + {self.generation_tps} generated tokens/s, {self.source}"
        return f"{self.seconds_per_call:.2f} s/call, {self.source}"


def stage_config(run_config: dict, stage: str):
    """A stage's settings: its config class with the run's overrides (``--set``, ``--max-chunks``)."""
    from embpipe.definitions import all_assets
    from embpipe.orchestration.runner import config_class

    cls = next(config_class(a) for a in all_assets if a.op.name == stage)
    return cls(**run_config["ops"].get(stage, {}).get("config", {}))


def corpus_chunks(run_config: dict):
    """The documents folder read and chunked as the ``read_documents`` and ``chunks`` stages do."""
    import pandas as pd

    from embpipe.core.ingest.chunking import ChunkStrategy
    from embpipe.core.ingest.documents import read_folder, require_documents
    from embpipe.defs.ingest import chunk_documents

    documents_config, chunking = stage_config(run_config, "read_documents"), stage_config(run_config, "chunks")
    if chunking.strategy == ChunkStrategy.SEMANTIC:
        raise ValueError("embpipe plan reads paragraph, sentence or token chunking; semantic chunks need the model")
    result = read_folder(documents_config.folder, documents_config.max_bytes)
    require_documents(result, documents_config.folder)
    documents = pd.DataFrame([vars(d) for d in result.documents])
    return documents_config.folder, len(documents), chunk_documents(documents, chunking.params())


def plan_settings(run_config: dict, idle_stages: frozenset[str]):
    """The plan's ``StageSettings`` from every teacher stage's config."""
    from embpipe.core.plan import StageSettings

    questions, splits = stage_config(run_config, "synthetic_queries"), stage_config(run_config, "query_splits")
    triplets, profiles = stage_config(run_config, "labeled_triplets"), stage_config(run_config, "cluster_profiles")
    clusters = stage_config(run_config, "chunk_clusters")
    cluster_questions = stage_config(run_config, "cluster_queries")
    entities, mining = stage_config(run_config, "entity_descriptions"), stage_config(run_config, "mining_rounds")
    return StageSettings(
        max_chunks=questions.max_chunks,
        questions_per_chunk=questions.questions_per_chunk,
        question_style=questions.question_style,
        min_chunk_tokens=questions.min_chunk_tokens,
        seed=questions.seed,
        triplet_anchors=triplets.anchors,
        triplet_comparison=triplets.comparison,
        max_clusters=profiles.max_clusters,
        cluster_neighbours=clusters.neighbours,
        questions_per_cluster=cluster_questions.questions_per_cluster,
        entity_chunks=entities.max_chunks,
        max_entities=entities.max_entities,
        train_share=splits.train,
        mining_rounds=mining.rounds,
        mining_top_k=mining.top_k,
        max_judgements_per_round=mining.max_judgements_per_round,
        idle_stages=idle_stages,
    )


def teacher_pace(store, model: str, stage: str, concurrency: int) -> Pace:
    """The ledger's pace for ``stage`` (else for the model), else the default for a local or served model."""
    from embpipe.core.plan import seconds_per_call

    for gaps, where in ((store.paid_call_gaps(model, stage), "this stage"), (store.paid_call_gaps(model), "all")):
        measured = seconds_per_call(gaps)
        if measured is not None:
            return Pace(f"ledger ({where})", seconds_per_call=measured)
    if model.startswith("local/"):
        return Pace("default (local model, 2 cores)", prompt_tps=LOCAL_PROMPT_TPS, generation_tps=LOCAL_GENERATION_TPS)
    return Pace(f"default (served, {concurrency} in flight)", seconds_per_call=SERVED_SECONDS_PER_CALL / concurrency)


def run_plan(resources: dict, run_config: dict) -> tuple[dict, list[dict]]:
    """The corpus summary and one row per teacher stage: calls, tokens, capped, cost, hours and the pace's source,
    for a run with these resources and run config (as ``embpipe run`` builds them from its options)."""
    from embpipe.core.plan import plan_run, stage_cost
    from embpipe.llm.budget import RunBudget
    from embpipe.llm.teacher import Teacher

    idle = resources["methods"].idle_teacher_stages()
    folder, documents, chunks = corpus_chunks(run_config)
    teacher_resource = resources["teacher"]
    store = teacher_resource.store()
    teacher = Teacher(teacher_resource.settings(idle), store, "plan")
    budget = RunBudget(teacher.settings.token_budget, "plan", idle)
    rows = []
    for stage in plan_run(chunks, plan_settings(run_config, idle), budget):
        pace = teacher_pace(store, teacher.settings.model, stage.stage, teacher.concurrency)
        rows.append(
            {
                "stage": stage.stage,
                "calls": stage.calls,
                "prompt_tokens": stage.prompt_tokens,
                "completion_tokens": stage.completion_tokens,
                "tokens": stage.tokens,
                "capped_by_budget": stage.capped,
                "cost_usd": stage_cost(teacher.settings.model, stage),
                "hours": pace.hours(stage),
                "pace": pace.describe(),
            }
        )
    corpus = {
        "folder": str(folder),
        "documents": documents,
        "chunks": len(chunks),
        "teacher": teacher.settings.model,
        "concurrency": teacher.concurrency,
        "token_budget": budget.total,
        **guide_summary(run_config, documents + len(chunks)),
    }
    return corpus, rows


def guide_summary(run_config: dict, passages: int) -> dict:
    """The guide's share of a run when ``embedding_model`` distils one (empty otherwise): its model, the
    documents and chunks it embeds (at most; repeated texts count once), and the distillation epochs."""
    training = stage_config(run_config, "embedding_model")
    if not (training.guide_model and training.guide_distill_epochs):
        return {}
    return {"guide": training.guide_model, "guide_passages": passages, "guide_epochs": training.guide_distill_epochs}


def plan_lines(corpus: dict, rows: list[dict]) -> list[str]:
    """The plan as a printed table."""
    lines = [
        f"Plan for {corpus['folder']}: {corpus['documents']} documents, {corpus['chunks']} chunks; teacher "
        f"{corpus['teacher']} ({corpus['concurrency']} call(s) in flight), budget {corpus['token_budget']} tokens",
        f"{'stage':<22}{'calls':>7}{'tokens':>10}  {'capped':<7}{'cost $':>9}{'minutes':>9}  pace",
    ]
    for r in rows:
        cost = "?" if r["cost_usd"] is None else f"{r['cost_usd']:.4f}"
        capped = "yes" if r["capped_by_budget"] else ""
        calls = f"{r['calls']}+" if r["capped_by_budget"] else str(r["calls"])
        lines.append(
            f"{r['stage']:<22}{calls:>7}{r['tokens']:>10}  {capped:<7}{cost:>9}{60 * r['hours']:>9.1f}  " + r["pace"]
        )
    costs = [r["cost_usd"] for r in rows]
    total_cost = "?" if None in costs else f"{sum(costs):.4f}"
    lines.append(
        f"{'total':<22}{sum(r['calls'] for r in rows):>7}{sum(r['tokens'] for r in rows):>10}  {'':<7}"
        f"{total_cost:>9}{60 * sum(r['hours'] for r in rows):>9.1f}"
    )
    lines.append(
        "Upper bounds: completions counted at their max_tokens, every question kept, every mining round run. "
        "'capped': the stage's budget share stops it first; it spends up to that share in at least the calls shown."
    )
    if "guide" in corpus:
        texts, epochs = corpus["guide_passages"], corpus["guide_epochs"]
        minutes = texts * (GUIDE_SECONDS_PER_TEXT + epochs * DISTIL_SECONDS_PER_TEXT_EPOCH) / 60
        lines.append(
            f"Guide {corpus['guide']}: before training it embeds up to {texts} documents and chunks (and the training "
            f"questions), then distils them into the base over {epochs} epoch(s): about {minutes:.1f} minutes on 2 CPU "
            "cores at EmbeddingGemma-300M's measured pace; not teacher time, not in the total above."
        )
    return lines


def plan_tag(resources: dict, run_config: dict) -> dict[str, str]:
    """The run tag holding the plan's tokens and calls per stage (empty when the corpus cannot be planned)."""
    try:
        _, rows = run_plan(resources, run_config)
    except (ValueError, OSError, sqlite3.Error):  # the run reports these itself, at the stage that meets them
        return {}
    return {PLAN_TAG: json.dumps({r["stage"]: {"calls": r["calls"], "tokens": r["tokens"]} for r in rows})}


def plan_versus_spent(tags: dict[str, str], usage) -> list[str]:
    """Planned against counted (paid + cached) calls and tokens per teacher stage, from a run's plan tag."""
    from embpipe.llm.budget import budget_stage

    if PLAN_TAG not in tags:
        return []
    planned = json.loads(tags[PLAN_TAG])
    spent: dict[str, list[int]] = {}
    for u in usage:
        row = spent.setdefault(budget_stage(u.stage), [0, 0])
        row[0] += u.calls
        row[1] += u.prompt_tokens + u.completion_tokens + u.cached_tokens
    lines = [f"{'stage':<22}{'planned calls':>14}{'made':>7}{'planned tokens':>16}{'counted':>9}"]
    for stage, plan in planned.items():
        calls, tokens = spent.get(stage, [0, 0])
        lines.append(f"{stage:<22}{plan['calls']:>14}{calls:>7}{plan['tokens']:>16}{tokens:>9}")
    return lines
