"""One lever against the variant it changes: the two benchmark runs' models scored on the same real queries.

A results file says how a variant did against the base model; whether a lever paid is the difference between two
variants, measured per query (paired randomisation test, bootstrap interval of the per-query difference), which
two results files cannot give. This script loads both variants' trained models from their data folders
(``data/benchmarks/<dataset>-<variant>/models/embedding_model``) and scores them side by side.

    python benchmarks/compare_variants.py --dataset techqa --before quick-tie --after quick-pairs
    python benchmarks/compare_variants.py --dataset techqa --before base --after no-mining --on pubmedqa

``base`` names the packaged base model, and a fetched model's name (``embeddinggemma-300m``) that model as it
ships; ``--on`` scores the models on another BEIR dataset than the one they were adapted to (the forgetting check).
Writes ``benchmarks/results/compare-<dataset>-<before>-vs-<after>.json`` (``…-on-<dataset>.json`` with ``--on``);
``benchmarks/ledger.py`` lists it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METRICS = ("ndcg@10", "recall@100", "mrr@5")


def model_folder(dataset: str, variant: str) -> Path:
    """A variant's trained model, the packaged base model for ``base``, or a fetched model by its name (the guide
    ``embeddinggemma-300m``, ``all-mpnet-base-v2``)."""
    from embpipe.core.base_models import BASE_MODELS, base_model_path

    if variant == "base":
        from embpipe.core.embedding import packaged_base_model

        return Path(packaged_base_model())
    if variant in BASE_MODELS:
        return Path(base_model_path(variant))
    folder = REPO / "data" / "benchmarks" / f"{dataset}-{variant}" / "models" / "embedding_model"
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: run benchmarks/run_benchmark.py --variant {variant} first")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="techqa")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--before", required=True, help="the variant the lever changes")
    parser.add_argument("--after", required=True, help="the variant with the lever")
    parser.add_argument("--on", default="", help="the BEIR dataset to score on (default: --dataset)")
    parser.add_argument("--max-seq-length", type=int, default=256)
    args = parser.parse_args(argv)

    from embpipe.core.embedding import load_model, role_encoder
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.evaluation.report import compare_models

    started = time.perf_counter()
    scored_on = args.on or args.dataset
    target = load_beir(Path(args.data_root) / scored_on)
    encoders = {}
    for variant in (args.before, args.after):
        model = load_model(str(model_folder(args.dataset, variant)), args.max_seq_length, "auto")
        encoders[variant] = role_encoder(model, 32)
    table = compare_models(target, encoders, reference=args.before).table
    rows = table[table["metric"].isin(METRICS) & (table["model"] != "bm25")]
    result = {
        "dataset": args.dataset,
        "before": args.before,
        "after": args.after,
        "scored_on": scored_on,
        "queries": len(target.queries),
        "metrics": {
            metric: {
                "before": float(part.loc[part.model == args.before, "value"].iloc[0]),
                "after": float(part.loc[part.model == args.after, "value"].iloc[0]),
                **{
                    key: float(part.loc[part.model == args.after, key].iloc[0])
                    for key in ("delta", "ci_low", "ci_high", "p_value", "wins", "losses")
                },
            }
            for metric, part in rows.groupby("metric", sort=False)
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }
    suffix = f"-on-{scored_on}" if scored_on != args.dataset else ""
    path = RESULTS / f"compare-{args.dataset}-{args.before}-vs-{args.after}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
