"""One lever against the variant it changes: the two benchmark runs' models scored on the same real queries.

A results file says how a variant did against the base model; whether a lever paid is the difference between two
variants, measured per query (paired randomisation test, bootstrap interval of the per-query difference), which
two results files cannot give. This script loads both variants' trained models from their data folders
(``data/benchmarks/<dataset>-<variant>/models/embedding_model``) and scores them side by side.

    python benchmarks/compare_variants.py --dataset techqa --before quick-tie --after quick-pairs

Writes ``benchmarks/results/compare-<dataset>-<before>-vs-<after>.json``; ``benchmarks/ledger.py`` lists it.
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
    parser.add_argument("--max-seq-length", type=int, default=256)
    args = parser.parse_args(argv)

    from embpipe.core.embedding import load_model, role_encoder
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.evaluation.report import compare_models

    started = time.perf_counter()
    target = load_beir(Path(args.data_root) / args.dataset)
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
    path = RESULTS / f"compare-{args.dataset}-{args.before}-vs-{args.after}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
