"""The ledger's lever-by-lever account: for each lever the issue asked for, the committed runs that measured it,
whether ``embpipe run`` uses it, and what is left. The words here are ours; every figure is read from the
results file named, so a rerun updates the account and a missing file fails the ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ledger_sweep import cell

GOAL = (
    "Goal (issue 17): techqa nDCG@10 ≥ 0.77 with p < 0.01 (base all-MiniLM-L6-v2 0.7345) through the defaults of "
    "`embpipe run`, Recall@100 not below the base, pubmedqa not worse than the base."
)


@dataclass(frozen=True)
class Measure:
    """One figure: a results file, and in a sweep the model (or in a question-yield file the row) it reports."""

    file: str
    label: str
    pick: str | dict | None = None


@dataclass(frozen=True)
class Lever:
    name: str
    measures: tuple[Measure, ...]
    in_defaults: str
    left: str


LEVERS = (
    Lever(
        "The defaults of `embpipe run` (teacher questions, LMAR, 4 hard negatives, best trained epoch)",
        (
            Measure("techqa-default.json", "techqa, from scratch"),
            Measure("compare-techqa-base-vs-default-on-pubmedqa.json", "pubmedqa, base → tuned"),
        ),
        "the recipe",
        "Short of 0.77 with MiniLM, and no lever below that every user could get closes the gap; no forgetting.",
    ),
    Lever(
        "Teacher throughput: 3 questions a call, 8 replies decoded together in waves, grammar-constrained JSON",
        (
            Measure("question-yield-techqa-waves.json", "one reply at a time", {"parallel_sequences": 1}),
            Measure("question-yield-techqa-waves.json", "8 in waves", {"parallel_sequences": 8}),
        ),
        "yes",
        "Done (over 3× the 615 questions an hour the issue started from); the questions do not buy the nDCG "
        "that the extra volume suggests (next row).",
    ),
    Lever(
        "More teacher tokens for the same recipe",
        (
            Measure("compare-techqa-neg4-same-questions-vs-tokens-120k.json", "120,000 against 60,000 tokens"),
            Measure("compare-techqa-default-vs-parallel8-150k.json", "150,000 tokens, 8 replies together"),
        ),
        "no (60,000 tokens)",
        "No measurable gain from doubling the teacher's budget: the 1.5B teacher's questions saturate early.",
    ),
    Lever(
        "Question style: user-style symptoms and goals, forum-post style",
        (
            Measure("compare-techqa-fresh-vs-user-style.json", "user style against the default"),
            Measure("compare-techqa-neg4-same-questions-vs-post-style.json", "post style against the default"),
        ),
        "no (opt-in `synthetic_queries.question_style`)",
        "Neither beat the default style; a stronger teacher may write them better (unmeasured).",
    ),
    Lever(
        "Round-trip filtering of questions (kept only when the base ranks their passage in its top 10)",
        (Measure("compare-techqa-fresh-vs-round-trip.json", "filtered against unfiltered"),),
        "no (opt-in `synthetic_queries.round_trip_filter`)",
        "Worse, measured: it keeps only questions the base already answers, and fewer of them.",
    ),
    Lever(
        "Teacher-free pairs (title → passage, inverse cloze)",
        (
            Measure("recipe-sweep-techqa.json", "pairs alone", "pairs"),
            Measure("recipe-sweep-techqa-pairs-matched.json", "teacher + matched pairs", "teacher+pairs-matched"),
        ),
        "no (`passage_pairs.max_pairs` 0)",
        "Hurt techqa at every count and weight tried, while pubmedqa rose: they teach generic matching.",
    ),
    Lever(
        "Hard negatives per example and batch (MNRL, in-batch negatives)",
        (
            Measure("recipe-sweep-techqa-negatives.json", "4 negatives, batch 8", "teacher-neg4-b8-seed42"),
            Measure("recipe-sweep-techqa-negatives.json", "in-batch only, batch 32", "teacher-neg0-b32-seed42"),
            Measure("compare-techqa-neg4-same-questions-vs-neg8.json", "8 negatives against 4"),
        ),
        "yes (4 negatives, batch 8)",
        "Settled: more negatives than 4 did not pay.",
    ),
    Lever(
        "Training length and weighting (5 epochs, the base's misses weighted twice)",
        (
            Measure("compare-techqa-neg4-same-questions-vs-epochs-5.json", "5 epochs against 4"),
            Measure("compare-techqa-neg4-same-questions-vs-base-miss-2.json", "base misses × 2"),
        ),
        "no",
        "Both worse; the best trained epoch by validation is the default now.",
    ),
    Lever(
        "Keep what the base knew: weight interpolation with the base, the mix chosen on validation",
        (
            Measure("recipe-sweep-techqa-soups.json", "tuned", "teacher-chunks-seed42"),
            Measure("recipe-sweep-techqa-soups.json", "halfway mix", "teacher-chunks-seed42-soup"),
        ),
        "no (`embedding_model.tuned_shares` [1.0])",
        "Without a guide pubmedqa never fell, so the mix only cost techqa; with the guide, the mix that kept "
        "pubmedqa is the distillation's (next row).",
    ),
    Lever(
        "A strong embedder as guide: EmbeddingGemma-300M distilled into MiniLM, then the teacher's labels",
        (
            Measure("recipe-sweep-techqa-distil.json", "probe, 2 epochs + teacher", "distil-2ep+teacher"),
            Measure("recipe-sweep-techqa-distil.json", "probe, its halfway mix", "distil-2ep-soup+teacher"),
            Measure("techqa-guide.json", "through `embpipe run` (`--set embedding_model.guide_model=…`)"),
            Measure("compare-techqa-default-vs-guide.json", "that model against the defaults' model, same queries"),
            Measure("compare-techqa-base-vs-guide-on-pubmedqa.json", "that model on pubmedqa"),
        ),
        "no (opt-in `embedding_model.guide_model`; Gemma licence, fetched on request)",
        "The one lever past 0.77 with MiniLM, through `embpipe run` too (Recall@100 up), but pubmedqa falls "
        "(forgetting). The probe's halfway mix kept pubmedqa: now `guide_distill_share=0.5`, not yet measured on "
        "techqa. It cannot be a silent default (licence; about 2 hours of CPU on techqa).",
    ),
    Lever(
        "The guide's other uses: soft labels (MarginMSE-style KL), false-negative masking (GISTEmbed)",
        (
            Measure("recipe-sweep-techqa-guide.json", "teacher labels + its soft labels", "teacher-guide"),
            Measure("recipe-sweep-techqa-guide.json", "1,000 teacher-free pairs, its soft labels alone", "pairs-guide"),
            Measure("recipe-sweep-techqa-guide.json", "the same pairs, its mask", "pairs-guidemask"),
        ),
        "no (`distill_weight` 0, `guide_mask` off)",
        "Soft labels added nothing to the teacher's labels; on teacher-free pairs they reach the teacher's figure "
        "without a teacher token, but Recall@100 fell and the gain did not hold on a second preparation. The mask "
        "alone leaves the pairs below the base.",
    ),
    Lever(
        "A stronger base: all-mpnet-base-v2 adapted by the default recipe",
        (Measure("recipe-sweep-techqa-mpnet.json", "probe, base 0.7414 → adapted", "teacher-chunks-seed42"),),
        "no (opt-in `embedder.model`, `embpipe fetch-models`)",
        "Reaches 0.77 on its own base, 5× slower to encode; the goal asks it of MiniLM.",
    ),
    Lever(
        "LMAR (labelled triplets, clusters, validated cluster questions), quick setting",
        (
            Measure("techqa-lmar.json", "LMAR on"),
            Measure("techqa-nocluster.json", "LMAR off"),
        ),
        "yes",
        "Its tokens bought no more than the same tokens on plain questions.",
    ),
    Lever(
        "Student–teacher mining rounds",
        (Measure("compare-techqa-default-vs-no-mining.json", "mining off against on"),),
        "no (`methods.mining` off)",
        "Its judgements cost a third of the run and bought nothing measurable.",
    ),
    Lever(
        "EmbGen (entity decomposition, proximity and cluster questions), quick setting",
        (Measure("techqa-embgen.json", "three strategies"), Measure("techqa-proximity.json", "proximity only")),
        "no (`methods.embgen` off)",
        "Measured only at the quick setting (22 training examples): not at a scale where it can matter.",
    ),
)


def figure(results: Path, measure: Measure) -> str:
    """The measure's figure from its results file: nDCG@10 with Δ (95% CI), p against its comparison (and for a
    benchmark run, Recall@100's Δ against the base)."""
    data = json.loads((results / measure.file).read_text())
    if "rows" in data:  # question yield: one row of the sweep
        row = next(r for r in data["rows"] if all(r.get(k) == v for k, v in measure.pick.items()))
        return f"{row['questions_per_hour']:,} questions/hour, round trip {row['round_trip_pass_rate']:.0%}"
    if "variants" in data:  # recipe sweep: the model against the base, on every dataset scored
        rows = {
            dataset: next(r for r in rows if r["model"] == measure.pick and r["metric"] == "ndcg@10")
            for dataset, rows in data["metrics"].items()
        }
        return "; ".join(f"{dataset} {cell(row)}" for dataset, row in rows.items())
    if "before" in data:  # compare_variants: after against before, per query
        m = data["metrics"]["ndcg@10"]
        return f"{data.get('scored_on', data['dataset'])} {m['before']:.4f} → " + cell({**m, "value": m["after"]})
    test, recall = data["tuned_vs_base"]["ndcg@10"], data["tuned_vs_base"]["recall@100"]
    ndcg = cell({**test, "value": data["metrics"]["tuned"]["ndcg@10"]})
    return f"{data['dataset']} {ndcg}; Recall@100 {recall['delta']:+.4f}, p {recall['p_value']:.2g}"


def lever_rows(results: Path) -> list[str]:
    rows = []
    for lever in LEVERS:
        figures = "<br>".join(f"{m.label} (`{m.file}`): {figure(results, m)}" for m in lever.measures)
        rows.append(f"| {lever.name} | {figures} | {lever.in_defaults} | {lever.left} |")
    return rows


def levers_section(results: Path) -> str:
    """The account, first in the ledger: nDCG@10 (value, Δ vs its comparison with the 95% interval, p)."""
    header = "| lever | measured (nDCG@10, Δ (95% CI), p) | in `embpipe run`? | what is left |\n|---|---|---|---|\n"
    return (
        f"\n## Lever by lever: how far each got\n\n{GOAL} Each figure is read from the results file named; "
        "Δ is against the base, or for a `compare-*.json` against the variant before it.\n\n"
        + header
        + "\n".join(lever_rows(results))
        + "\n"
    )
