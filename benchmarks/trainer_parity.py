"""Does training on sentence-transformers' trainer match the hand-written loop it replaced?

Both train the base model on the same examples (a benchmark run's training labels), with the same settings and
seed, for a fixed number of epochs (every epoch counts as the best, so both end on their last epoch: this
compares the training itself, not early stopping). Then BM25, the base model and both trained models are
scored on the benchmark's real test queries; the trainer is compared with the loop (paired test, bootstrap
interval of the per-query nDCG@10 difference).

The loop is read from git at ``--loop-commit`` (the last commit that had it), so nothing of it stays in the tree.

    python benchmarks/trainer_parity.py --data data/benchmarks/techqa-quick-loop --dataset techqa --epochs 2

Writes ``benchmarks/results/trainer-parity-<dataset>.json`` (``…-seed<N>.json`` for another ``--seed``: how much
the loop and the trainer move with the seed alone is the noise a difference between them is measured against).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOOP_COMMIT = "14ebcc4"
DEFAULT_SEED = 42


def loop_module(commit: str):
    """``embpipe/core/training.py`` (the loop's module) as it was at ``commit``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{commit}:embpipe/core/training.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "loop_training.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("loop_training", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["loop_training"] = module
    spec.loader.exec_module(module)
    return module


def every_epoch_is_best() -> Callable[[object], float]:
    """A score that rises with every call, so training keeps its last epoch."""
    calls = [0]

    def score(model) -> float:
        calls[0] += 1
        return float(calls[0])

    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO / "data" / "benchmarks" / "techqa-quick-loop"))
    parser.add_argument("--dataset", default="techqa")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--loop-commit", default=LOOP_COMMIT)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)

    from embpipe.core.embedding import load_model, packaged_base_model, role_encoder
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.evaluation.report import compare_models
    from embpipe.core.training.examples import labelled_examples, queries_in_split
    from embpipe.core.training.trainer import NEGATIVES_PER_EXAMPLE, TrainingParams, train_contrastive

    assets = Path(args.data) / "assets"
    chunks = pd.read_parquet(assets / "chunks.parquet")
    queries = pd.read_parquet(assets / "synthetic_queries.parquet")
    splits = pd.read_parquet(assets / "query_splits.parquet")
    labels = pd.read_parquet(assets / "mining_rounds.parquet")
    train = queries_in_split(queries, splits, "train")
    examples = labelled_examples(labels[labels["used"]], train, chunks, NEGATIVES_PER_EXAMPLE)
    params = TrainingParams(epochs=args.epochs, seed=args.seed, patience=args.epochs)

    base = load_model(packaged_base_model(), 256, "cpu")
    loop = loop_module(args.loop_commit)
    loop_model, started = copy.deepcopy(base), time.perf_counter()
    loop_examples = [loop.TrainingExample(e.query, e.positive, e.negatives, e.weight) for e in examples]
    loop_outcome = loop.train_contrastive(
        loop_model, loop_examples, every_epoch_is_best(), loop.TrainingParams(**vars(params))
    )
    loop_seconds = time.perf_counter() - started
    trainer_model, started = copy.deepcopy(base), time.perf_counter()
    trainer_outcome = train_contrastive(trainer_model, examples, every_epoch_is_best(), params)
    trainer_seconds = time.perf_counter() - started

    target = load_beir(str(Path(args.data_root) / args.dataset), "test")
    models = {"base": base, "loop": loop_model, "trainer": trainer_model}
    encoders = {name: role_encoder(model) for name, model in models.items()}
    table = compare_models(target, encoders, reference="loop").table
    rows = table[table.metric.isin(["ndcg@10", "recall@100", "mrr@5"])]
    result = {
        "data": str(Path(args.data).relative_to(REPO)) if Path(args.data).is_relative_to(REPO) else args.data,
        "dataset": args.dataset,
        "loop_commit": args.loop_commit,
        "train_examples": len(examples),
        "settings": vars(params),
        "seconds": {"loop": round(loop_seconds, 1), "trainer": round(trainer_seconds, 1)},
        "epoch_losses": {
            "loop": [round(r.loss, 4) for r in loop_outcome.history],
            "trainer": [round(r.loss, 4) for r in trainer_outcome.history],
        },
        "test_queries": len(target.qrels),
        "metrics": json.loads(rows.to_json(orient="records")),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.seed == DEFAULT_SEED else f"-seed{args.seed}"  # another seed: the same comparison again
    (RESULTS / f"trainer-parity-{args.dataset}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
