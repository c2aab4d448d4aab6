"""The ledger's sections for the side-by-side sweeps: training recipes (``recipe-sweep-*.json``,
``benchmarks/recipe_sweep.py``) and questions asked per teacher call (``question-yield-*.json``,
``benchmarks/question_yield.py``)."""

from __future__ import annotations

import json
from pathlib import Path


def cell(row: dict | None) -> str:
    """``value`` and, against the base, ``Δ (95% CI), p``."""
    if row is None:
        return "–"
    if row.get("delta") is None:
        return f"{row['value']:.4f}"
    return (
        f"{row['value']:.4f}, {row['delta']:+.4f} ({row['ci_low']:+.4f}, {row['ci_high']:+.4f}), p {row['p_value']:.2g}"
    )


def by_model(rows: list[dict]) -> dict[str, dict[str, dict]]:
    table: dict[str, dict[str, dict]] = {}
    for row in rows:
        table.setdefault(row["model"], {})[row["metric"]] = row
    return table


def sweep_table(path: Path) -> str:
    sweep = json.loads(path.read_text())
    main, *others = list(sweep["metrics"])
    tables = {name: by_model(rows) for name, rows in sweep["metrics"].items()}
    other = others[0] if others else None
    header = (
        f"| variant | what it trains on | examples | train s | {main} nDCG@10, Δ (95% CI), p | {main} Recall@100 "
        f"| halfway back to base: nDCG@10 | {other or '–'} nDCG@10 |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    lines.append(f"| base | – | – | – | {cell(tables[main]['base']['ndcg@10'])} | "
                 f"{cell(tables[main]['base']['recall@100'])} | – | "
                 f"{cell(tables[other]['base']['ndcg@10']) if other else '–'} |")  # fmt: skip
    for name, variant in sweep["variants"].items():
        soup = tables[main].get(f"{name}-soup", {}).get("ndcg@10")
        lines.append(
            f"| `{name}` | {variant['about']} | {variant['examples']} | {variant['train_seconds']} "
            f"| {cell(tables[main][name]['ndcg@10'])} | {cell(tables[main][name]['recall@100'])} | {cell(soup)} "
            f"| {cell(tables[other][name]['ndcg@10']) if other else '–'} |"
        )
    base = f" (`{sweep['base_model']}`)" if sweep.get("base_model") else ""  # a fetched base, else the default's
    how = sweep.get("intro") or (  # a probe that trains otherwise says how
        f"`benchmarks/recipe_sweep.py`: every variant trained from the same base{base} with the pipeline's trainer "
        f"for fixed epochs (no early stopping)"
    )
    return (
        f"\n## Training recipes side by side (`{path.name}`)\n\n{how} on `{sweep['device']}`, "
        f"scored on {main}'s real test queries and on {other or 'no other dataset'} (forgetting). *Halfway back* is "
        f"the tuned weights mixed {sweep['soup_alpha']:g} : {1 - sweep['soup_alpha']:g} with the base's.\n\n"
        + "\n".join(lines)
        + "\n"
        + head_to_head_table(sweep.get("head_to_head", {}))
    )


def head_to_head_table(pairs: dict[str, dict[str, list[dict]]]) -> str:
    """Two recipes against each other (paired on the same queries), per dataset: nDCG@10 and Recall@100."""
    if not pairs:
        return ""
    names = list(next(iter(pairs.values())))
    lines = ["| candidate vs reference | " + " | ".join(f"{n} nDCG@10 Δ | {n} Recall@100 Δ" for n in names) + " |"]
    lines.append("|---|" + "---|---|" * len(names))
    for pair, datasets in pairs.items():
        cells = [cell(by_model(datasets[n]).get(pair.split(" vs ")[0], {}).get(m)) for n in names
                 for m in ("ndcg@10", "recall@100")]  # fmt: skip
        lines.append(f"| `{pair}` | " + " | ".join(cells) + " |")
    return "\nHead to head (paired on the same queries; value is the candidate's):\n\n" + "\n".join(lines) + "\n"


def sweep_section(results: Path) -> str:
    """One table per recipe sweep."""
    return "".join(sweep_table(path) for path in sorted(results.glob("recipe-sweep-*.json")))


def yield_table(path: Path) -> str:
    result = json.loads(path.read_text())
    lines = [
        "| questions per call | decoded together | calls | wall s | s per call | written | kept | questions per hour "
        "| round trip (95% CI) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        low, high = row["round_trip_ci"]
        lines.append(
            f"| {row['questions_per_call']} | {row.get('parallel_sequences', 1)} | {row['calls']} | {row['wall_s']} "
            f"| {row['seconds_per_call']} "
            f"| {row['questions_written']} | {row['questions_kept']} | {row['questions_per_hour']:,} "
            f"| {row['round_trip_pass_rate']:.0%} ({low:.0%}–{high:.0%}) |"
        )
    return (
        f"\n## Questions per teacher call (`{path.name}`)\n\n`benchmarks/question_yield.py`: the question stage with "
        f"`{result['teacher']}` on the same {result['chunks']} {result['dataset']} chunks, an empty cache each time; "
        "*decoded together* is the teacher's `local_parallel` (calls in flight, decoded as parallel sequences); "
        "*kept* is after the near-duplicate screen, the round trip is a kept question's chunk in the base model's "
        "top 10 over every chunk.\n\n" + "\n".join(lines) + "\n"
    )


def yield_section(results: Path) -> str:
    """One table per question-yield benchmark."""
    return "".join(yield_table(path) for path in sorted(results.glob("question-yield-*.json")))


def probe_table(path: Path) -> str:
    result = json.loads(path.read_text())
    lines = [
        "| recipe | epoch | validation nDCG@10 (chunks, the pipeline's until 7a287db) "
        "| validation nDCG@10 (documents, the pipeline's since) | hand set nDCG@10, Δ (95% CI), p |",
        "|---|---|---|---|---|",
    ]
    for name, run in result["runs"].items():
        for row in run["epochs"]:
            hand = {"value": row["hand_value"], "delta": row["hand_delta"], "ci_low": row["hand_ci_low"],
                    "ci_high": row["hand_ci_high"], "p_value": row["hand_p_value"]}  # fmt: skip
            lines.append(
                f"| `{name}` ({run['examples']} examples) | {row['epoch']} | {row['validation_chunks']:.4f} "
                f"| {row['validation_documents']:.4f} | {cell(hand)} |"
            )
    return (
        f"\n## The pipeline's validation against a hand-labelled set (`{path.name}`)\n\n"
        "`benchmarks/validation_probe.py`: fixed-epoch training from the base (epoch 0) on a finished run's "
        f"examples; after each epoch, the {result['validation_queries']} validation questions against "
        f"{result['validation_chunks']} chunks (the figure `embedding_model` selected by until 7a287db), the same "
        f"questions scored by document (its figure since), and the {result['hand_queries']} human-labelled "
        f"questions of `{result['hand_set']}`.\n\n" + "\n".join(lines) + "\n"
    )


def probe_section(results: Path) -> str:
    """One table per validation probe."""
    return "".join(probe_table(path) for path in sorted(results.glob("validation-probe-*.json")))
