"""Distil a strong embedder's geometry into the small base on the domain's own text: does it reach the bar?

Every lever that trains the small base on the teacher's few hundred labels has stayed below techqa's 0.77 bar,
and a guide's soft scores of (question, passage) pairs (one number per pair) did not help either. This probe
gives the small model far more signal per text: the guide's whole embedding of every document, chunk and
pseudo-query of the corpus (no test query is read), learnt with a mean-squared error as sentence-transformers'
multilingual distillation does. The student is the base with one linear layer on top (its width to the
guide's), the layer first fitted in closed form (ridge least squares on the frozen base's embeddings), then
the whole student tuned end to end. (The pipeline now does the same on the trainer when
``embedding_model.guide_model`` is set: ``embpipe/core/training/distillation.py``; this probe keeps the
hand-written loop its committed figures came from; its layer fit and batching are the pipeline's, the fit now in
float64 where the committed runs solved in float32.)

    python benchmarks/distill_probe.py --inputs .sweep --data data/benchmarks/techqa \\
        --guide embeddinggemma-300m --out /tmp/distill --epochs 2 --save-model --teacher-epochs 3
    python benchmarks/distill_probe.py ... --start-from /tmp/distill/student --halfway --teacher-epochs 3 \\
        --control /tmp/sweep-runs    # the halfway mix, then the teacher; and the control's rankings, paired
    python benchmarks/recipe_sweep.py score --inputs .sweep --runs /tmp/distill --tag distil \\
        --versus distil-2ep-soup+teacher:teacher-chunks-seed42

``--inputs`` is a ``recipe_sweep.py prepare`` folder (its base model, BEIR datasets and examples: the teacher's
questions and the teacher-free pairs' queries are the pseudo-queries); ``--data`` the pipeline's data folder
of the same corpus (its ``documents`` and ``chunks`` assets). The guide's embeddings are cached in ``--out``;
the rankings and log are the ones ``recipe_sweep.py score`` reads.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from recipe_sweep import SOUP_ALPHA, earlier_runs, rankings, saved, soup

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEQ_LENGTH = 256
RIDGE = 1e-2
INTRO = (  # the ledger's words for how these variants were trained
    "`benchmarks/distill_probe.py`: the base with a linear layer to the guide's width (fitted by least squares), "
    "then tuned end to end on the guide's embeddings (mean squared error) of the corpus' documents, chunks and "
    "pseudo-queries (the teacher's training questions, the teacher-free pairs' titles and sentences; no test query); "
    "`+teacher`: then the pipeline's trainer on the teacher's labels with the control's settings "
    "(`teacher-chunks-seed42`, the control from the base, is copied from a recipe sweep of the same inputs)"
)


def distillation_texts(inputs: Path, data: Path) -> dict[str, list[str]]:
    """The corpus' texts by role: documents and chunks as the pipeline embeds them, and pseudo-queries (the
    teacher's training questions, the teacher-free pairs' titles and sentences); no benchmark query."""
    from embpipe.core.evaluation.beir import passage_text

    documents = pd.read_parquet(data / "assets" / "documents.parquet")
    chunks = pd.read_parquet(data / "assets" / "chunks.parquet")
    passages = [passage_text(t, x) for t, x in zip(documents.title, documents.text, strict=True)]
    passages += [passage_text(t, x) for t, x in zip(chunks.title, chunks.text, strict=True)]
    queries = pd.concat([pd.read_parquet(inputs / f"{name}.parquet")["query"] for name in ("teacher", "pairs")])
    return {"document": list(dict.fromkeys(passages)), "query": list(dict.fromkeys(queries))}


def guide_targets(guide_path: str, texts: dict[str, list[str]], cache: Path) -> dict[str, np.ndarray]:
    """The guide's normalised embeddings of each role's texts, through its prompts; cached in ``cache``."""
    from embpipe.core.embedding import encode_with_progress
    from embpipe.core.training.guide import load_guide

    key = hashlib.sha256(json.dumps([guide_path, SEQ_LENGTH, texts]).encode()).hexdigest()  # same texts, same guide
    if cache.is_file():
        stored = np.load(cache)
        if "key" not in stored.files or str(stored["key"]) == key:  # (a cache from before keys: checked by size)
            if all(len(stored[role]) == len(rows) for role, rows in texts.items()):
                return {role: stored[role] for role in texts}
    guide = load_guide(guide_path, SEQ_LENGTH, "cpu")
    log = lambda message: print(f"guide: {message}", flush=True)  # noqa: E731
    targets = {role: encode_with_progress(guide, rows, 16, log, 512, role) for role, rows in texts.items()}
    np.savez(cache, key=np.array(key), **targets)
    return targets


def with_projection(base, sources: np.ndarray, targets: np.ndarray):
    """``base`` followed by a linear layer to the guide's width, fitted by ridge least squares from the base's
    embeddings ``sources`` to ``targets``, and a normalisation (the pipeline's own layer and head)."""
    from embpipe.core.training.distillation import least_squares_head, with_head

    return with_head(base, least_squares_head(sources, targets, RIDGE))


def distil(student, texts: list[str], targets: np.ndarray, epochs: int, learning_rate: float, seed: int) -> list[float]:
    """Tune ``student`` end to end so its embeddings of ``texts`` match ``targets`` (mean squared error of the
    normalised vectors, linear warm-up over a tenth of the steps then linear decay); the epochs' mean losses."""
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    from embpipe.core.training.distillation import length_grouped_batches

    lengths = [len(text) for text in texts]
    plan = [length_grouped_batches(lengths, 32, rng) for _ in range(epochs)]
    steps = sum(len(p) for p in plan)
    optimizer = torch.optim.AdamW(student.parameters(), lr=learning_rate, weight_decay=0.01)
    warm = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    target_rows = torch.from_numpy(targets)
    student.train()
    losses, step, started = [], 0, time.perf_counter()
    for epoch, batches in enumerate(plan):
        total = 0.0
        for batch in batches:
            features = student.preprocess([texts[i] for i in batch])
            out = student(features)["sentence_embedding"]
            loss = ((out - target_rows[batch]) ** 2).sum(-1).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step(), schedule.step(), optimizer.zero_grad()
            total, step = total + loss.item(), step + 1
            if step % 50 == 0:
                print(f"step {step}/{steps} loss {loss.item():.4f} {time.perf_counter() - started:.0f} s", flush=True)
        losses.append(round(total / len(batches), 5))
        print(f"epoch {epoch + 1}: mean loss {losses[-1]}", flush=True)
    student.eval()
    return losses


def scored(name: str, model, datasets: dict, ranked: dict, log: dict, out: Path, record: dict) -> None:
    """Rank every dataset with ``model`` as variant ``name`` and save the rankings and log so far."""
    log["variants"][name] = {"name": name, **record}
    ranked |= {f"{name}/{d}": r for d, r in rankings(model, datasets).items()}
    saved(out, ranked, log)


def prefix(args) -> str:
    """The variants' name prefix: ``distil``, or ``distil-docs`` for the documents and queries alone."""
    return "distil-docs" if args.no_chunks else "distil"


def linear_student(args, base):
    """The base with its least-squares projection to the guide's embeddings of the corpus' texts; with those
    texts, their targets, and the record fields every distilled variant shares."""
    from embpipe.core.embedding import encode

    texts = distillation_texts(args.inputs, args.data)
    started, cached = time.perf_counter(), (args.out / "guide-targets.npz").is_file()
    targets = guide_targets(args.guide, texts, args.out / "guide-targets.npz")
    seconds = None if cached else round(time.perf_counter() - started, 1)  # the guide's time where it ran here
    if args.no_chunks:  # the documents come first in the passages: keep them and the queries
        kept = len(pd.read_parquet(args.data / "assets" / "documents.parquet"))
        texts["document"], targets["document"] = texts["document"][:kept], targets["document"][:kept]
    print({role: len(rows) for role, rows in texts.items()}, flush=True)
    common = {"examples": sum(map(len, texts.values())), "guide": args.guide, "guide_seconds": seconds}
    all_texts = texts["document"] + texts["query"]
    all_targets = np.vstack([targets["document"], targets["query"]])
    student = with_projection(copy.deepcopy(base), encode(base, all_texts, 64), all_targets)
    return student, all_texts, all_targets, common


def distilled_student(args, base, datasets: dict, ranked: dict, log: dict):
    """The base with its least-squares projection (scored as ``distil-linear``), then tuned end to end on the
    guide's embeddings (scored, with its halfway mix back to ``distil-linear``); the tuned student and its name."""
    student, all_texts, all_targets, common = linear_student(args, base)
    texts = " (the documents and queries alone, no chunk)" if args.no_chunks else ""
    about = f"the base, frozen, and a linear layer to the guide's embeddings fitted by least squares{texts}"
    record = {"about": about, **common, "train_seconds": 0.0}
    scored(f"{prefix(args)}-linear", student, datasets, ranked, log, args.out, record)
    linear_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    started = time.perf_counter()
    losses = distil(student, all_texts, all_targets, args.epochs, args.learning_rate, args.seed)
    name = f"{prefix(args)}-{args.epochs}ep"
    about = (
        f"{prefix(args)}-linear tuned end to end on the guide's embeddings, {args.epochs} epochs, learning rate "
        f"{args.learning_rate} (halfway back: to {prefix(args)}-linear)"
    )
    record = {"about": about, **common, "train_seconds": round(time.perf_counter() - started, 1),
              "epoch_losses": losses}  # fmt: skip
    scored(name, student, datasets, ranked, log, args.out, record)
    halfway = soup(linear_state, student, SOUP_ALPHA)  # its "halfway back" is to distil-linear (the base has no layer)
    ranked |= {f"{name}-soup/{d}": r for d, r in rankings(halfway, datasets).items()}
    saved(args.out, ranked, log)
    if args.save_model:
        student.save(str(args.out / "student"))
    return student, name


def with_teacher(args, student, name: str, datasets: dict, ranked: dict, log: dict) -> None:
    """``student`` trained further on the teacher's labels by the pipeline's contrastive trainer, with the
    control's settings (4 negatives, batch 8, ``--teacher-epochs`` fixed epochs, seed 42); scored."""
    from recipe_sweep import variant_examples
    from sweep_variants import ALL_VARIANTS
    from trainer_parity import every_epoch_is_best

    from embpipe.core.training.trainer import TrainingParams, train_contrastive

    control = next(v for v in ALL_VARIANTS if v.name == "teacher-chunks-seed42")
    teacher = pd.read_parquet(args.inputs / "teacher.parquet")
    examples = variant_examples(control, teacher, teacher.head(0), teacher.head(0))
    started = time.perf_counter()
    params = TrainingParams(epochs=args.teacher_epochs, batch_size=control.batch_size, patience=args.teacher_epochs,
                            seed=control.seed, learning_rate=control.learning_rate, scale=control.scale)  # fmt: skip
    outcome = train_contrastive(student, examples, every_epoch_is_best(), params)
    about = f"{name}, then the teacher's labels as the control trains on them ({args.teacher_epochs} epochs)"
    record = {"about": about, "examples": len(examples), "train_seconds": round(time.perf_counter() - started, 1),
              "epoch_losses": [round(r.loss, 4) for r in outcome.history]}  # fmt: skip
    scored(f"{name}+teacher", student, datasets, ranked, log, args.out, record)


def with_control(runs: Path, ranked: dict, log: dict) -> None:
    """Add the control (``teacher-chunks-seed42``: the teacher's labels from the base) from a ``recipe_sweep.py
    train`` folder of the same inputs, for head-to-heads; only where its base rankings are this folder's."""
    control, (theirs, their_log) = "teacher-chunks-seed42", earlier_runs(runs)
    bases = [key for key in ranked if key.startswith("base/")]
    if not bases or any(not np.array_equal(theirs.get(key, ()), ranked[key]) for key in bases):
        raise SystemExit(f"{runs}: its base rankings are not this folder's; not the same inputs")
    ranked |= {key: rows for key, rows in theirs.items() if key.split("/")[0] in (control, f"{control}-soup")}
    log["variants"] = {control: their_log["variants"][control], **log["variants"]}


def run(args: argparse.Namespace) -> None:
    from embpipe.core.embedding import load_model
    from embpipe.core.evaluation.beir import load_beir

    args.out.mkdir(parents=True, exist_ok=True)
    datasets = {p.name: load_beir(p, "test") for p in sorted((args.inputs / "datasets").iterdir())}
    ranked, log = earlier_runs(args.out)
    log["device"], log["intro"] = "cpu", INTRO
    base = load_model(str(args.inputs / "base-model"), SEQ_LENGTH, "cpu").float()
    if "base/techqa" not in ranked:
        ranked |= {f"base/{d}": r for d, r in rankings(base, datasets).items()}
    if args.control:
        with_control(args.control, ranked, log)
        saved(args.out, ranked, log)
    if args.start_from:  # a student saved by an earlier call (--save-model): only the teacher step
        student, name = load_model(str(args.start_from), SEQ_LENGTH, "cpu"), f"{prefix(args)}-{args.epochs}ep"
        if args.halfway:  # from its halfway mix back to distil-linear (rebuilt from the cached targets)
            linear_state = linear_student(args, base)[0].state_dict()
            student, name = soup(linear_state, student, SOUP_ALPHA), f"{name}-soup"
    else:
        student, name = distilled_student(args, base, datasets, ranked, log)
    if args.teacher_epochs:
        with_teacher(args, student, name, datasets, ranked, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=Path, required=True, help="a recipe_sweep.py prepare folder")
    parser.add_argument("--data", type=Path, required=True, help="the pipeline's data folder of the same corpus")
    parser.add_argument("--guide", required=True, help="the guide: a fetched name (embeddinggemma-300m) or a path")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--save-model", action="store_true", help="keep the tuned student in OUT/student")
    parser.add_argument("--start-from", type=Path, help="a student saved by an earlier call: skip to the teacher step")
    parser.add_argument("--control", type=Path, help="a recipe_sweep.py train folder: copy its control's rankings")
    parser.add_argument("--no-chunks", action="store_true", help="distil on the documents and queries alone")
    parser.add_argument("--halfway", action="store_true", help="with --start-from: from its halfway mix")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="then train on the teacher's labels (0: no)")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
