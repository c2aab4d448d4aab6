"""Training recipes side by side on one benchmark: which way of spending training examples pays?

The pipeline's supervision on a 2-core machine is a few hundred teacher questions at most, so the question is
what else training can use: the teacher-free pairs (``passage_pairs``: a title → its document's first chunk, a
sentence → the rest of its chunk) in volume, with or without hard negatives, larger batches (more in-batch
negatives), and interpolating the tuned weights back towards the base (keep what the base knew). Every
variant is trained from the same base with the pipeline's own trainer (``train_contrastive``, fixed epochs,
no early stopping) and scored on the benchmark's real test queries and on a second dataset (forgetting).

Three steps, so the training can run where a GPU is lent and the scoring where ranx is installed:

    python benchmarks/recipe_sweep.py prepare --data data/benchmarks/techqa-quick-pairs --inputs .sweep
    python benchmarks/recipe_sweep.py train --inputs .sweep --out /tmp/sweep-runs     # GPU or CPU
    python benchmarks/recipe_sweep.py score --inputs .sweep --runs /tmp/sweep-runs

``prepare`` builds the examples exactly as the pipeline would (``teacher_free_pairs`` on the data folder's
chunks, negatives mined by ``mine_for_chunks`` with its stored base-model embeddings; the teacher's training
labels as ``labelled_examples``), copies both BEIR datasets and stores the base model with half-precision
weights (``--half``, so it travels to a lent machine; every variant, the base included, then starts from
those weights upcast to float32). ``train`` writes each variant's top-100 rankings (document indices, best
first) per dataset; ``score`` turns them into metrics against the base (paired randomisation test, bootstrap
interval) and writes ``benchmarks/results/recipe-sweep-<dataset>.json``, which ``benchmarks/ledger.py`` lists.
``prepare --guide MODEL`` also stores a guide embedder's scores of each example's candidates, which the guide
variants (``train --only guide``) learn as soft labels.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from sweep_variants import ALL_PAIRS, ALL_VARIANTS, GUIDED_PAIRS, MATCHED_PAIRS, SEQ_LENGTH, Variant, chosen

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
METRICS = ("ndcg@10", "recall@100", "mrr@5")
TOP_K = 100
SOUP_ALPHA = 0.5  # every trained variant is also scored halfway back to the base weights


def prepare(data: Path, inputs: Path, data_root: Path, datasets: list[str], half: bool, guide: str = "") -> None:
    """The examples tables (with the guide's scores of each example's candidates when ``guide`` names a model),
    both datasets and the base model, in ``inputs``."""
    from embpipe.core.embedding import encode, load_model, packaged_base_model
    from embpipe.core.synthesis.passage_pairs import PairParams, held_out_documents, teacher_free_pairs
    from embpipe.core.training.examples import document_examples, labelled_examples, queries_in_split
    from embpipe.core.training.negatives import NegativeParams, mine_for_chunks
    from embpipe.core.training.trainer import NEGATIVES_PER_EXAMPLE

    assets = data / "assets"
    chunks = pd.read_parquet(assets / "chunks.parquet")
    queries = pd.read_parquet(assets / "synthetic_queries.parquet")
    splits = pd.read_parquet(assets / "query_splits.parquet")
    labels = pd.read_parquet(assets / "mining_rounds.parquet")
    inputs.mkdir(parents=True, exist_ok=True)
    train_queries = queries_in_split(queries, splits, "train")
    teacher = labelled_examples(labels[labels["used"]], train_queries, chunks, NEGATIVES_PER_EXAMPLE)
    documents = pd.read_parquet(assets / "documents.parquet")
    lifted = document_examples(labels[labels["used"]], train_queries, documents, NEGATIVES_PER_EXAMPLE)
    pairs = teacher_free_pairs(chunks, held_out_documents(queries, splits), PairParams(max_pairs=len(chunks) * 2))
    base = load_model(packaged_base_model(), SEQ_LENGTH, "cpu")
    vectors = encode(base, pairs["query"].tolist(), 64)
    embeddings = pd.read_parquet(assets / "chunk_embeddings.parquet")
    mined = mine_for_chunks(vectors, chunks, embeddings, [[c] for c in pairs["chunk_id"]], NegativeParams())
    corpus = dict(zip(chunks["chunk_id"].astype(str), chunks["text"], strict=True))
    pairs["negatives"] = [[corpus[c] for c in m.chunk_ids] for m in mined]
    kept = pairs[["strategy", "query", "positive", "negatives", "weight"]]
    kept = kept.assign(strategy=pairs["strategy"].astype(str))
    teacher_frame = examples_frame(teacher, "teacher")
    if guide:
        teacher_frame, kept = with_guide_scores_column(teacher_frame, kept, guide)
    teacher_frame.to_parquet(inputs / "teacher.parquet")
    examples_frame(lifted, "teacher-documents").to_parquet(inputs / "teacher-documents.parquet")
    kept.to_parquet(inputs / "pairs.parquet")
    for name in datasets:
        shutil.copytree(data_root / name, inputs / "datasets" / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("answers.jsonl", "*.md"))  # fmt: skip
    store_model(packaged_base_model(), inputs / "base-model", half)
    print(f"{len(teacher)} teacher examples, {len(pairs)} pairs ({pairs['strategy'].value_counts().to_dict()})")


def examples_frame(examples, source: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "strategy": source,
            "query": [e.query for e in examples],
            "positive": [e.positive for e in examples],
            "negatives": [list(e.negatives) for e in examples],
            "weight": [e.weight for e in examples],
        }
    )


def with_guide_scores_column(teacher: pd.DataFrame, pairs: pd.DataFrame, guide: str):
    """Both example tables with ``guide_scores``: the guide model's cosine of each query with its positive, then
    its negatives; for every teacher example and the first ``GUIDED_PAIRS`` pairs (the rest get none)."""
    from embpipe.core.training.guide import guide_scores, load_guide
    from embpipe.core.training.rows import TrainingExample

    model = load_guide(guide, SEQ_LENGTH, "auto")
    scored = []
    for frame in (teacher, pairs.head(GUIDED_PAIRS)):
        started = time.perf_counter()
        examples = [TrainingExample(q, p, tuple(n)) for q, p, n in zip(frame["query"], frame["positive"],
                                                                       frame["negatives"], strict=True)]  # fmt: skip
        scored.append([list(s) for s in guide_scores(model, examples)])
        print(f"guide {guide}: {len(frame)} examples scored in {time.perf_counter() - started:.0f} s", flush=True)
    unscored = [[]] * (len(pairs) - len(scored[1]))
    return teacher.assign(guide_scores=scored[0]), pairs.assign(guide_scores=scored[1] + unscored)


def store_model(source: str, target: Path, half: bool) -> None:
    """A copy of the model folder, its weights in float16 when ``half`` (about half the bytes)."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md", "*.onnx"))
    if half:
        weights = load_file(str(Path(source) / "model.safetensors"))
        save_file({k: v.to(torch.float16) for k, v in weights.items()}, str(target / "model.safetensors"))


def variant_examples(variant: Variant, teacher: pd.DataFrame, pairs: pd.DataFrame, lifted: pd.DataFrame):
    """The ``TrainingExample`` list of one variant (``lifted``: the teacher's examples on documents)."""
    from embpipe.core.training.trainer import TrainingExample

    picked = pairs[pairs["strategy"].isin(variant.strategies)]
    if variant.pairs != ALL_PAIRS:
        picked = picked.head(len(teacher) if variant.pairs == MATCHED_PAIRS else variant.pairs)
    views = {"chunks": [teacher], "documents": [lifted], "both": [teacher, lifted]}[variant.view]
    frames = views if variant.teacher else []
    frames += [picked.assign(weight=variant.pair_weight if variant.pairs_hard_labels else 0.0)] if variant.pairs else []
    examples = []
    for frame in frames:
        guided = frame["guide_scores"] if variant.guide else [()] * len(frame)
        for q, p, n, w, g in zip(frame["query"], frame["positive"], frame["negatives"], frame["weight"], guided,
                                 strict=True):  # fmt: skip
            negatives = tuple(n)[: variant.negatives]
            examples.append(TrainingExample(q, p, negatives, float(w), tuple(g)[: 1 + len(negatives)]))
    return examples


def soup(base_state: dict, model, alpha: float):
    """A copy of ``model`` with weights ``alpha`` × tuned + (1 − ``alpha``) × base."""
    from embpipe.core.training.interpolation import mixed_weights

    mixed = copy.deepcopy(model)
    mixed.load_state_dict(mixed_weights(base_state, model.state_dict(), alpha))
    return mixed


def uniform_soup(model, states: list[dict]):
    """A copy of ``model`` holding the element-wise mean of ``states``: a running mean of ``mixed_weights``."""
    from embpipe.core.training.interpolation import mixed_weights

    mean = states[0]
    for count, state in enumerate(states[1:], start=2):
        mean = mixed_weights(mean, state, 1.0 / count)
    mixed = copy.deepcopy(model)
    mixed.load_state_dict(mean)
    return mixed


def rankings(model, targets: dict) -> dict[str, np.ndarray]:
    """Per dataset: the top-100 document indices of each test query, best first."""
    from embpipe.core.embedding import encode
    from embpipe.core.evaluation.retrieval import top_k

    model.max_seq_length = SEQ_LENGTH
    out = {}
    for name, target in targets.items():
        docs = encode(model, list(target.corpus.values()), 128, "document")  # a base's prompts, where it has them
        queries = encode(model, list(target.queries.values()), 128, "query")
        out[name] = top_k(queries, docs, TOP_K).indices.astype(np.int32)
    return out


def shrunk(target, size: int):
    """``target`` cut to ``size`` queries and their documents plus the first ``size`` others (a smoke test)."""
    from embpipe.core.evaluation.beir import BeirDataset

    queries = dict(list(target.queries.items())[:size])
    keep = {d for q in queries for d in target.qrels.get(q, {})} | set(list(target.corpus)[:size])
    corpus = {d: t for d, t in target.corpus.items() if d in keep}
    return BeirDataset(target.name, corpus, queries, {q: target.qrels[q] for q in queries if q in target.qrels})


def train(inputs: Path, out: Path, device: str, only: list[str], smoke: int = 0) -> None:
    """Train every variant from the stored base model; save rankings and timings in ``out``.

    ``smoke`` > 0 cuts every dataset, example list and epoch count down to check the script end to end."""
    from trainer_parity import every_epoch_is_best  # this folder's script: fixed epochs, the last one kept

    from embpipe.core.embedding import load_model
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.training.trainer import TrainingParams, train_contrastive

    out.mkdir(parents=True, exist_ok=True)
    targets = {p.name: load_beir(p, "test") for p in sorted((inputs / "datasets").iterdir())}
    teacher, pairs = pd.read_parquet(inputs / "teacher.parquet"), pd.read_parquet(inputs / "pairs.parquet")
    lifted_path = inputs / "teacher-documents.parquet"
    lifted = pd.read_parquet(lifted_path) if lifted_path.is_file() else teacher.head(0)
    if smoke:
        targets = {name: shrunk(target, smoke) for name, target in targets.items()}
        teacher, pairs, lifted = teacher.head(smoke), pairs.head(smoke), lifted.head(smoke)
    base = load_model(str(inputs / "base-model"), SEQ_LENGTH, device).float()
    base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    ranked, log = earlier_runs(out)  # a later call adds its variants to the same folder
    kept = all(len(ranked.get(f"base/{d}", ())) == len(t.queries) for d, t in targets.items())
    if not kept:  # the base's rankings of these queries are kept from an earlier call (not a smoke run's)
        ranked |= {f"base/{d}": r for d, r in rankings(base, targets).items()}
    log["device"] = str(base.device)
    saved(out, ranked, log)
    trained: dict[str, dict] = {}  # this call's trained weights, for soups
    for variant in ALL_VARIANTS:
        if not chosen(variant, only):
            continue
        if variant.soup_of:
            mixed = uniform_soup(base, [trained[name] for name in variant.soup_of])
            ranked |= {f"{variant.name}/{d}": r for d, r in rankings(mixed, targets).items()}
            members = [log["variants"][name] for name in variant.soup_of]  # its cost: the members' training
            log["variants"][variant.name] = {**asdict(variant), "examples": sum(m["examples"] for m in members),
                                             "train_seconds": sum(m["train_seconds"] for m in members)}  # fmt: skip
            saved(out, ranked, log)
            continue
        examples = variant_examples(variant, teacher, pairs, lifted)
        model = copy.deepcopy(base)
        model.max_seq_length = variant.seq_length
        started = time.perf_counter()
        epochs = 1 if smoke else variant.epochs
        outcome = train_contrastive(model, examples, every_epoch_is_best(),
                                    TrainingParams(epochs=epochs, batch_size=variant.batch_size, patience=epochs,
                                                   seed=variant.seed, learning_rate=variant.learning_rate,
                                                   scale=variant.scale, distill_weight=variant.distill_weight,
                                                   guide_scale=variant.guide_scale,
                                                   guide_mask=variant.guide_mask))  # fmt: skip
        seconds = time.perf_counter() - started
        trained[variant.name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log["variants"][variant.name] = {
            **asdict(variant),
            "examples": len(examples),
            "train_seconds": round(seconds, 1),
            "epoch_losses": [round(r.loss, 4) for r in outcome.history],
        }
        print(f"{variant.name}: {len(examples)} examples, {seconds:.0f} s", flush=True)
        ranked |= {f"{variant.name}/{d}": r for d, r in rankings(model, targets).items()}
        saved(out, ranked, log)  # each scoring is kept as it lands: a long CPU run stopped early keeps what it scored
        mixed = rankings(soup(base_state, model, SOUP_ALPHA), targets)
        ranked |= {f"{variant.name}-soup/{d}": r for d, r in mixed.items()}
        saved(out, ranked, log)


def saved(out: Path, ranked: dict[str, np.ndarray], log: dict) -> None:
    """Write the rankings and the training log scored so far into ``out``."""
    np.savez_compressed(out / "rankings.npz", **ranked)
    (out / "train-log.json").write_text(json.dumps(log, indent=2))


def earlier_runs(out: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The rankings and training log already in ``out`` (empty when it is new)."""
    if not (out / "rankings.npz").is_file():
        return {}, {"variants": {}}
    stored = np.load(out / "rankings.npz")
    return {key: stored[key] for key in stored.files}, json.loads((out / "train-log.json").read_text())


def ranked_run(query_ids: list[str], doc_ids: list[str], rows: np.ndarray) -> dict[str, dict[str, float]]:
    """A BEIR run from rankings (document indices, best first), scored by rank."""
    return {
        q: {doc_ids[j]: float(TOP_K - rank) for rank, j in enumerate(row)}
        for q, row in zip(query_ids, rows, strict=True)
    }


def described(variants: dict[str, dict]) -> dict[str, dict]:
    """The trained variants' records with their descriptions as this script words them now."""
    about = {v.name: v.about for v in ALL_VARIANTS}
    return {name: {**record, "about": about.get(name, record["about"])} for name, record in variants.items()}


def paired_rows(qrels, runs: dict, candidates: list[str], references: list[str]) -> list[dict]:
    """Per metric: the candidates' per-query mean (over their runs, e.g. seeds) against the references', with
    the bootstrap interval of the difference and a paired sign-flip test."""
    from embpipe.core.evaluation.report import per_query_values
    from embpipe.core.evaluation.significance import bootstrap_interval, sign_flip_p_value

    rows = []
    for metric in METRICS:
        table = per_query_values(qrels, {n: runs[n] for n in candidates + references}, metric)
        after, before = table[candidates].mean(axis=1).to_numpy(), table[references].mean(axis=1).to_numpy()
        interval = bootstrap_interval(before, after)
        rows.append({"model": ",".join(candidates), "metric": metric, "value": float(after.mean()),
                     "delta": interval.mean, "ci_low": interval.low, "ci_high": interval.high,
                     "p_value": sign_flip_p_value(before, after)})  # fmt: skip
    return rows


def score(inputs: Path, runs: Path, dataset: str, smoke: int = 0, versus: tuple[str, ...] = ()) -> dict:
    """Metrics of every ranking against the base's, per dataset, and of each ``versus`` pair
    (``candidate:reference``, each one ranking name or several, comma-separated, averaged per query) against each
    other; the results file's content."""
    from embpipe.core.evaluation.beir import load_beir
    from embpipe.core.evaluation.report import compare_runs

    ranked = np.load(runs / "rankings.npz")
    log = json.loads((runs / "train-log.json").read_text())
    tables, head_to_head = {}, {}
    for folder in sorted((inputs / "datasets").iterdir(), key=lambda f: (f.name != dataset, f.name)):
        target = load_beir(folder, "test")
        target = shrunk(target, smoke) if smoke else target
        doc_ids, query_ids = list(target.corpus), list(target.queries)
        named = {key.split("/")[0]: ranked[key] for key in ranked.files if key.endswith(f"/{folder.name}")}
        as_runs = {name: ranked_run(query_ids, doc_ids, rows) for name, rows in named.items()}
        table = compare_runs(target.qrels, as_runs, METRICS, reference="base")
        tables[folder.name] = json.loads(table.to_json(orient="records"))
        for candidate, reference in (pair.split(":") for pair in versus):
            rows = paired_rows(target.qrels, as_runs, candidate.split(","), reference.split(","))
            head_to_head.setdefault(f"{candidate} vs {reference}", {})[folder.name] = rows
    variants = described(log["variants"])
    known_base = fetched_base_name(inputs / "base-model")
    return {"dataset": dataset, "soup_alpha": SOUP_ALPHA, "device": log["device"], "variants": variants,
            "metrics": tables, **({"base_model": known_base} if known_base else {}),
            **({"head_to_head": head_to_head} if head_to_head else {}),
            **({"intro": log["intro"]} if log.get("intro") else {})}  # fmt: skip


def fetched_base_name(folder: Path) -> str:
    """The name of the ``embpipe fetch-models`` base whose weights ``folder`` holds, else "" (the default base)."""
    from embpipe.core.base_models import BASE_MODELS, WEIGHTS_FILE
    from embpipe.llm.model_weights import sha256_of

    digest = sha256_of(folder / WEIGHTS_FILE)
    return next((spec.name for spec in BASE_MODELS.values() if spec.weights_sha256 == digest), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("prepare", "train", "score"))
    parser.add_argument("--data", default=str(REPO / "data" / "benchmarks" / "techqa-quick-pairs"))
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="techqa", help="the benchmark (first); --also: the forgetting check")
    parser.add_argument("--also", default="pubmedqa")
    parser.add_argument("--inputs", default=str(REPO / ".sweep"))
    parser.add_argument("--runs", default="/tmp/sweep-runs")
    parser.add_argument("--out", default="/tmp/sweep-runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--half", action="store_true", help="store the base model's weights in float16")
    parser.add_argument("--guide", default="", help="prepare: a guide model (fetched name or path) scores examples")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="variant names; teacher-settings, guide, negatives, views, soups: a group (default: the first list)",
    )
    parser.add_argument("--tag", default="", help="results file suffix (a second sweep of the same dataset)")
    parser.add_argument(
        "--versus",
        nargs="*",
        default=[],
        help="candidate:reference ranking names, paired; a,b,c:d,e,f compares per-query means",
    )
    parser.add_argument("--smoke", type=int, default=0, help="cut to this many queries and examples (a check)")
    args = parser.parse_args(argv)
    inputs = Path(args.inputs)
    if args.step == "prepare":
        prepare(Path(args.data), inputs, Path(args.data_root), [args.dataset, args.also], args.half, args.guide)
    elif args.step == "train":
        train(inputs, Path(args.out), args.device, args.only, args.smoke)
    else:
        result = score(inputs, Path(args.runs), args.dataset, args.smoke, tuple(args.versus))
        path = (
            RESULTS / f"recipe-sweep-{args.dataset}{'-' + args.tag if args.tag else ''}.json"
            if not args.smoke
            else Path(args.runs) / "smoke.json"
        )
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
