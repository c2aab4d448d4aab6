"""Does the pipeline's validation agree with a hand-labelled set? Epoch by epoch, on a finished run's data.

``embedding_model`` picked its epoch, and kept the base weights when no epoch beat them, by nDCG@10 on the
teacher's held-out validation questions against the run's chunks (``validation_target``); since this probe it
scores them by document. On a small corpus those
questions are few and copy their chunk's words. This script trains the pipeline's trainer for fixed epochs from
the base model on a recipe sweep's prepared examples (``recipe_sweep.py prepare``) and, after every epoch (the
base as epoch 0), scores three things: the pipeline's validation figure, the same validation questions scored by
document (a chunk ranks its document; any chunk of the positive's document answers), and nDCG@10 on a
hand-labelled BEIR set with its paired difference from the base (bootstrap 95% interval, randomisation p).

    python benchmarks/recipe_sweep.py prepare --data DATA --inputs .sweep --data-root ROOT --dataset sample-eval
    python benchmarks/validation_probe.py --data DATA --inputs .sweep --beir data/sample-eval --name sample-eval

Writes ``benchmarks/results/validation-probe-<name>.json``; ``benchmarks/ledger.py`` lists it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
METRIC = "ndcg@10"
sys.path.insert(0, str(REPO / "benchmarks"))

from recipe_sweep import variant_examples  # noqa: E402
from sweep_variants import ALL_PAIRS, Variant  # noqa: E402

RECIPES = {
    "teacher": Variant("teacher", "the teacher's training labels (the default recipe: 4 hard negatives, batch 8)",
                       teacher=True),
    "teacher+pairs": Variant("teacher+pairs", "teacher labels + every teacher-free pair (weight 0.5), 4 hard "
                             "negatives, batch 8", teacher=True, pairs=ALL_PAIRS),
}  # fmt: skip


def epoch_scorer(validation, document_of: dict[str, str], hand, rows: list[dict]):
    """A trainer score function that records every epoch's three figures in ``rows``; it rises with each call,
    so training runs its fixed epochs."""
    from embpipe.core.embedding import role_encoder
    from embpipe.core.evaluation.metrics import evaluate
    from embpipe.core.evaluation.report import compare_runs, dense_run
    from embpipe.core.training.validation import by_document, document_qrels

    qrels_by_document = document_qrels(validation.qrels, document_of)
    hand_runs: dict = {}

    def score(model) -> float:
        encoder = role_encoder(model, 32)
        run = dense_run(encoder, validation.corpus, validation.queries)
        name = "base" if not rows else "tuned"
        hand_runs[name] = dense_run(encoder, hand.corpus, hand.queries)
        row = {
            "epoch": len(rows),
            "validation_chunks": evaluate(validation.qrels, run, [METRIC])[METRIC],
            "validation_documents": evaluate(qrels_by_document, by_document(run, document_of), [METRIC])[METRIC],
        }
        table = compare_runs(hand.qrels, hand_runs, [METRIC])
        hand_row = table[table["model"] == name].iloc[0]
        row |= {f"hand_{key}": (None if pd.isna(hand_row[key]) else float(hand_row[key]))
                for key in ("value", "delta", "ci_low", "ci_high", "p_value")}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        return float(len(rows))

    return score


def probe(data: Path, inputs: Path, beir: Path, recipes: list[str], seeds: list[int], epochs: int) -> dict:
    """Every recipe at every seed: its examples and per-epoch figures."""
    from embpipe.core.embedding import load_model
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.training.trainer import TrainingParams, train_contrastive
    from embpipe.core.training.validation import chunk_documents, validation_target

    assets = data / "assets"
    chunks = pd.read_parquet(assets / "chunks.parquet")
    validation = validation_target(pd.read_parquet(assets / "synthetic_queries.parquet"),
                                   pd.read_parquet(assets / "query_splits.parquet"), chunks)  # fmt: skip
    document_of = chunk_documents(chunks)
    hand = load_beir(beir)
    teacher, pairs = pd.read_parquet(inputs / "teacher.parquet"), pd.read_parquet(inputs / "pairs.parquet")
    runs = {}
    for recipe in recipes:
        examples = variant_examples(RECIPES[recipe], teacher, pairs)
        for seed in seeds:
            rows: list[dict] = []
            model = load_model(str(inputs / "base-model"), 256, "cpu").float()
            started = time.perf_counter()
            train_contrastive(model, examples, epoch_scorer(validation, document_of, hand, rows),
                              TrainingParams(epochs=epochs, batch_size=RECIPES[recipe].batch_size, patience=epochs,
                                             seed=seed))  # fmt: skip
            seconds = round(time.perf_counter() - started, 1)
            runs[f"{recipe}-seed{seed}"] = {"about": RECIPES[recipe].about, "examples": len(examples), "seed": seed,
                                            "seconds": seconds, "epochs": rows}  # fmt: skip
    return {"data": str(data), "hand_set": beir.name, "hand_queries": len(hand.queries),
            "validation_queries": len(validation.queries), "validation_chunks": len(validation.corpus),
            "runs": runs}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a finished run's data folder (with assets/)")
    parser.add_argument("--inputs", required=True, help="recipe_sweep.py prepare's folder for that run")
    parser.add_argument("--beir", required=True, help="the hand-labelled BEIR folder")
    parser.add_argument("--name", required=True, help="results file suffix")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    result = probe(Path(args.data), Path(args.inputs), Path(args.beir), args.recipes, args.seeds, args.epochs)
    path = RESULTS / f"validation-probe-{args.name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
