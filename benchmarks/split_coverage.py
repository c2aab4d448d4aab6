"""Does it matter which documents the training questions come from? Retrain one finished run on other splits.

``query_splits`` groups the synthetic questions by source document (60 / 20 / 20), so the documents of the
validation and test questions are never trained on. On a corpus as small as ``data/sample`` (32 documents) that
leaves about 40% of the documents without a training question, and a user's own questions (the hand-written set)
are about every document. This script retrains the base model on the same teacher questions of one data folder
(``embpipe run`` or ``run_benchmark.py``), split four ways, and scores each model after every epoch on a BEIR
target:

- ``document``: the pipeline's training split (whole documents held out);
- ``chunk``: the same fractions grouped by positive chunk instead (held-out questions' positives are still never
  trained on, but their documents' other chunks are);
- ``train+validation``: the pipeline's training and validation questions;
- ``all``: every question, the test split too.

Every variant mines its negatives the same way (``mine_for_chunks`` with the run's stored base embeddings, 4 per
example) and trains a fixed number of epochs with the pipeline's trainer (no early stopping, no selection: each
epoch counts as better than the last, so the last is kept); the per-epoch scores are measurements only.

    python benchmarks/split_coverage.py --data data --beir data/sample-eval --name split-coverage-demo

Writes ``benchmarks/results/<name>.json``: per variant and seed, the training questions and documents, and per
epoch the target's nDCG@10; for the last epoch also Δ vs base with its bootstrap 95% interval and paired p.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("document", "chunk", "train+validation", "all")
FRACTIONS = (0.6, 0.2, 0.2)  # query_splits' defaults


def training_queries(queries: pd.DataFrame, splits: pd.DataFrame, variant: str, seed: int) -> pd.DataFrame:
    """The questions ``variant`` trains on (see the module docstring)."""
    from embpipe.core.synthesis.splits import assign_splits

    if variant == "chunk":
        by_chunk = assign_splits(
            {q: list(p) for q, p in zip(queries["query_id"], queries["positive_chunk_ids"], strict=True)},
            FRACTIONS,
            seed,
        )
        kept = {q for q, split in by_chunk.items() if split == "train"}
    elif variant == "all":
        kept = set(queries["query_id"])
    else:
        names = {"train"} if variant == "document" else {"train", "validation"}
        kept = set(splits.loc[splits["split"].astype(str).isin(names), "query_id"])
    return queries[queries["query_id"].isin(kept)].reset_index(drop=True)


def mined_examples(model, queries: pd.DataFrame, chunks: pd.DataFrame, embeddings: pd.DataFrame) -> list:
    """One example per (question, positive chunk) with 4 base-model negatives below the margin."""
    from embpipe.core.embedding import encode
    from embpipe.core.training.examples import chunk_corpus
    from embpipe.core.training.negatives import NegativeParams, mine_for_chunks
    from embpipe.core.training.rows import TrainingExample

    corpus = chunk_corpus(chunks)
    positives = [list(p) for p in queries["positive_chunk_ids"]]
    vectors = encode(model, queries["text"].tolist(), 32, role="query")
    mined = mine_for_chunks(vectors, chunks, embeddings, positives, NegativeParams())
    return [
        TrainingExample(text, corpus[chunk], tuple(corpus[c] for c in found.chunk_ids[:4]))
        for text, chunk_ids, found in zip(queries["text"], positives, mined, strict=True)
        for chunk in chunk_ids
    ]


def train_and_score(data: Path, target, variant: str, seed: int, epochs: int) -> dict:
    """Train ``variant`` from the base model; the target's nDCG@10 after every epoch, the last one tested."""
    from embpipe.core.embedding import load_model, packaged_base_model, role_encoder
    from embpipe.core.evaluation.report import compare_runs, dense_run
    from embpipe.core.training.trainer import TrainingParams, train_contrastive

    assets = data / "assets"
    chunks = pd.read_parquet(assets / "chunks.parquet")
    queries = pd.read_parquet(assets / "synthetic_queries.parquet")
    splits = pd.read_parquet(assets / "query_splits.parquet")
    model = load_model(packaged_base_model(), 256, "cpu")
    base_run = dense_run(role_encoder(model), target.corpus, target.queries)
    chosen = training_queries(queries, splits, variant, seed)
    examples = mined_examples(model, chosen, chunks, pd.read_parquet(assets / "chunk_embeddings.parquet"))
    curve, runs = [], {}

    def last_epoch_kept(trained) -> float:  # a fixed epoch count: each epoch scores above the one before
        runs["tuned"] = dense_run(role_encoder(trained), target.corpus, target.queries)
        curve.append(compare_runs(target.qrels, {"tuned": runs["tuned"]}, ["ndcg@10"])["value"].iloc[0])
        return float(len(curve))

    train_contrastive(model, examples, last_epoch_kept, TrainingParams(epochs=epochs, patience=epochs, seed=seed))
    table = compare_runs(target.qrels, {"base": base_run, "tuned": runs["tuned"]}, ["ndcg@10"])
    last = table[table["model"] == "tuned"].iloc[0]
    documents = {d for ids in chosen["doc_ids"] for d in ids}
    return {
        "training_questions": len(chosen),
        "training_documents": len(documents),
        "documents_with_questions": len({d for ids in queries["doc_ids"] for d in ids}),
        "examples": len(examples),
        "ndcg@10_by_epoch": [round(float(v), 4) for v in curve],  # [0] = the base model, before training
        "last_epoch": {k: float(last[k]) for k in ("value", "delta", "ci_low", "ci_high", "p_value")},
    }


def main(argv: list[str] | None = None) -> int:
    from embpipe.core.evaluation.beir import load_beir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="a finished run's data folder (EMBPIPE_DATA_DIR)")
    parser.add_argument("--beir", required=True, help="the BEIR folder to score on (the run's --beir target)")
    parser.add_argument("--name", required=True, help="results file name (without .json)")
    parser.add_argument("--about", default="", help="which run's data folder this is, for the results file")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    target = load_beir(args.beir)
    results = {}
    for variant in args.variants:
        for seed in args.seeds:
            scores = train_and_score(Path(args.data), target, variant, seed, args.epochs)
            results[f"{variant}-seed{seed}"] = {"variant": variant, "seed": seed, **scores}
            print(variant, seed, json.dumps(scores), flush=True)
    about = {"about": args.about, "data": str(args.data), "target": str(args.beir), "epochs": args.epochs}
    about["fractions"] = FRACTIONS
    (RESULTS / f"{args.name}.json").write_text(json.dumps({**about, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
