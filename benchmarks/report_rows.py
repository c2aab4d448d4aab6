"""The headline rows of finished runs' retrieval reports, side by side in one results file.

Each run is a data folder that ``embpipe run`` materialized (``EMBPIPE_DATA_DIR``), for instance the demo rerun
with other training settings on a copy of one data folder, so every variant reuses the same teacher replies
and only retrains:

    cp -r data data-lr; EMBPIPE_DATA_DIR=data-lr embpipe run --beir data/sample-eval --token-budget 20000 \\
        --set embedding_model.learning_rate=1e-4 --set 'embedding_model.tuned_shares=[0.5]'
    python benchmarks/report_rows.py --name demo-training-variants \\
        --run "lr1e-4-half=data-lr=learning rate 1e-4, tuned_shares [0.5]" --run "default=data=the defaults"

Writes ``benchmarks/results/<name>.json``: per run, its description and, per scoring target, each model's
nDCG@10 and Recall@100 with Δ vs base, 95% interval and p (as ``retrieval_report`` computed them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METRICS = ("ndcg@10", "recall@100")


def headline_rows(report: pd.DataFrame) -> dict[str, list[dict]]:
    """Per scoring target: the rows of ``METRICS`` for every model, NaNs as nulls."""
    rows = report[report["metric"].isin(METRICS)].astype(object).where(report.notna(), None)
    return {target: group.drop(columns="target").to_dict(orient="records") for target, group in rows.groupby("target")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True, help="results file name (without .json)")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=DATA_DIR=DESCRIPTION")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, folder, about = spec.split("=", 2)
        report = pd.read_parquet(Path(folder) / "assets" / "retrieval_report.parquet")
        runs[name] = {"about": about, "targets": headline_rows(report)}
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
