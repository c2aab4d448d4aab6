"""The training recipes ``recipe_sweep.py`` compares: one ``Variant`` per recipe, grouped the way ``--only``
picks them (by name, or a group's name: ``teacher-settings``, ``guide``, ``negatives``, ``views``, ``soups``).
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_LENGTH = 256  # the benchmark's evaluation length
ALL_PAIRS = -1  # every teacher-free pair
MATCHED_PAIRS = -2  # as many teacher-free pairs as the teacher's examples


@dataclass(frozen=True)
class Variant:
    """One training recipe: which examples, how many negatives each keeps, batch size, epochs, length."""

    name: str
    about: str
    teacher: bool = False
    pairs: int = 0  # teacher-free pairs: 0 = none, a count, ALL_PAIRS or MATCHED_PAIRS
    strategies: tuple[str, ...] = ("title", "inverse_cloze")
    negatives: int = 4
    batch_size: int = 8
    epochs: int = 1
    seq_length: int = SEQ_LENGTH
    pair_weight: float = 0.5
    seed: int = 42
    learning_rate: float = 2e-5
    scale: float = 50.0
    guide: bool = False  # the guide embedder's soft labels distilled (KL over each example's own candidates)
    pairs_hard_labels: bool = True  # False: teacher-free pairs teach through the guide's soft labels alone
    distill_weight: float = 1.0  # weight of the guide's soft labels (0: the guide only masks, see guide_mask)
    guide_scale: float = 0.0  # the guide's softmax scale in its soft labels; 0 = ``scale``
    guide_mask: bool = False  # negatives the guide scores at least as high as the positive leave the softmax
    view: str = "chunks"  # the teacher's examples on chunks, on whole documents (as a document index embeds
    # them: title + text cut at the training length) or both
    soup_of: tuple[str, ...] = ()  # not trained: the uniform average of these variants' weights (trained first)


VARIANTS = (
    Variant("teacher", "the teacher's training labels alone (the current default recipe)", teacher=True, epochs=3),
    Variant("teacher+pairs-default", "teacher labels + every pair at the default training settings (4 negatives, "
            "batch 8, 3 epochs)", teacher=True, pairs=-1, epochs=3),
    Variant("teacher+pairs-default-seed43", "teacher+pairs-default with another seed", teacher=True, pairs=-1,
            epochs=3, seed=43),
    Variant("teacher+pairs-matched", "teacher labels + as many teacher-free pairs as there are teacher examples "
            "(weight 0.5), 4 negatives, batch 8, 3 epochs (on the sample corpus every pair is about that many)",
            teacher=True, pairs=MATCHED_PAIRS, epochs=3),
    Variant("pairs-1k", "1,000 teacher-free pairs, 1 hard negative, batch 32", pairs=1000, negatives=1, batch_size=32),
    Variant("pairs-inbatch", "every teacher-free pair, in-batch negatives only, batch 32", pairs=-1, negatives=0,
            batch_size=32),
    Variant("pairs", "every teacher-free pair, 1 hard negative, batch 32", pairs=-1, negatives=1, batch_size=32),
    Variant("pairs-neg4-b8", "every teacher-free pair, 4 hard negatives, batch 8 (the default training settings)",
            pairs=-1),
    Variant("pairs-b64", "every teacher-free pair, 1 hard negative, batch 64", pairs=-1, negatives=1, batch_size=64),
    Variant("pairs-len128", "every teacher-free pair, 1 hard negative, batch 32, 128 training tokens", pairs=-1,
            negatives=1, batch_size=32, seq_length=128),
    Variant("pairs-3ep", "every teacher-free pair, 1 hard negative, batch 32, 3 epochs", pairs=-1, negatives=1,
            batch_size=32, epochs=3),
    Variant("teacher+pairs", "teacher labels (weight 1) + every pair (weight 0.5), 1 hard negative, batch 32",
            teacher=True, pairs=-1, negatives=1, batch_size=32),
    Variant("pairs-seed43", "pairs with another seed (the noise of a seed alone)", pairs=-1, negatives=1,
            batch_size=32, seed=43),
    Variant("teacher-seed43", "teacher with another seed (the noise of a seed alone)", teacher=True, epochs=3,
            seed=43),
    Variant("teacher+pairs-3ep", "teacher labels + every pair, 1 hard negative, batch 32, 3 epochs", teacher=True,
            pairs=-1, negatives=1, batch_size=32, epochs=3),
    Variant("pairs-w1", "every pair at weight 1 (the same as `pairs`: weights are normalised per batch)", pairs=-1,
            negatives=1, batch_size=32, pair_weight=1.0),
)  # fmt: skip
# The teacher's labels under other training settings, three seeds each (``--only`` picks these for a second run).
TEACHER_SETTINGS = tuple(
    Variant(f"{name}-seed{seed}", about, teacher=True, epochs=epochs, learning_rate=rate, scale=scale, seed=seed)
    for name, about, epochs, rate, scale in (
        ("teacher-default", "teacher labels, the default settings (3 epochs, 2e-5, scale 50)", 3, 2e-5, 50.0),
        ("teacher-lr5e-5", "teacher labels, learning rate 5e-5", 3, 5e-5, 50.0),
        ("teacher-lr1e-4", "teacher labels, learning rate 1e-4", 3, 1e-4, 50.0),
        ("teacher-6ep", "teacher labels, 6 epochs", 6, 2e-5, 50.0),
        ("teacher-scale20", "teacher labels, scale 20 (temperature 0.05)", 3, 2e-5, 20.0),
    )
    for seed in (42, 43, 44)
)
# The teacher's labels with fewer hard negatives and larger batches (more in-batch negatives), two seeds each: on
# techqa's look-alike technotes a mined "negative" might be another answer. Measured at seed 42
# (recipe-sweep-techqa-negatives.json), fewer negatives lose: the default's 4 stay.
NEGATIVE_SETTINGS = tuple(
    Variant(f"{name}-seed{seed}", about, teacher=True, epochs=3, negatives=negatives, batch_size=batch, seed=seed)
    for name, about, negatives, batch in (
        ("teacher-neg4-b8", "teacher labels, 4 hard negatives, batch 8 (the default training settings)", 4, 8),
        ("teacher-neg1-b16", "teacher labels, 1 hard negative, batch 16", 1, 16),
        ("teacher-neg0-b32", "teacher labels, in-batch negatives only, batch 32", 0, 32),
    )
    for seed in (42, 43)
)
GUIDED_PAIRS = 1000  # the pairs ``prepare --guide`` scores (the first ones: the guide encodes ~7x slower than MiniLM)
# The guide embedder (``prepare --guide``): its soft labels on the teacher's examples and on teacher-free pairs.
GUIDE_VARIANTS = (
    Variant("teacher-guide", "teacher labels + the guide's soft labels on their candidates (KL), default settings",
            teacher=True, epochs=3, guide=True),
    Variant("pairs-guide", "1,000 teacher-free pairs taught by the guide's soft labels alone (no hard label), "
            "4 negatives, batch 8", pairs=GUIDED_PAIRS, guide=True, pairs_hard_labels=False),
    Variant("teacher+pairs-guide", "teacher labels + guide KL, and 1,000 pairs by the guide's soft labels alone, "
            "4 negatives, batch 8", teacher=True, pairs=GUIDED_PAIRS, guide=True, pairs_hard_labels=False),
    Variant("teacher+pairs-guide-3ep", "teacher+pairs-guide for 3 epochs", teacher=True, pairs=GUIDED_PAIRS,
            guide=True, pairs_hard_labels=False, epochs=3),
    Variant("pairs-1k-hard", "the same 1,000 teacher-free pairs by their hard labels (weight 0.5), no guide, "
            "4 negatives, batch 8 (the control for the guide's mask)", pairs=GUIDED_PAIRS),
    Variant("pairs-guidemask", "the same 1,000 pairs by their hard labels, the negatives the guide scores at least "
            "as high as the positive masked (GISTEmbed's use of a guide), no soft labels", pairs=GUIDED_PAIRS,
            guide=True, distill_weight=0.0, guide_mask=True),
    Variant("pairs-guide-soft20", "pairs-guide with softer soft labels: the guide's softmax at scale 20 (the "
            "student's stays 50)", pairs=GUIDED_PAIRS, guide=True, pairs_hard_labels=False, guide_scale=20.0),
)  # fmt: skip
# The teacher's labels lifted to whole documents (``document_examples``): techqa, as BEIR evaluations do, embeds
# each document once, cut at 256 tokens, while the teacher's questions come from chunks, a third of them past
# the first 256 tokens of their document.
VIEW_SETTINGS = tuple(
    Variant(f"{name}-seed{seed}", about, teacher=True, epochs=3, view=view, seed=seed)
    for name, about, view in (
        ("teacher-chunks", "teacher labels on chunks, the default settings (the control)", "chunks"),
        ("teacher-documents", "teacher labels lifted to documents: the positive chunk's whole document, the "
         "negatives' documents, default settings", "documents"),
        ("teacher-both", "teacher labels on chunks and the same lifted to documents, default settings", "both"),
    )
    for seed in (42, 43)
)  # fmt: skip
# Three seeds of the default recipe and their uniform weight average (a model soup of runs from one base): the
# same examples at three times the training time, against the per-query mean of the three alone.
SOUP_SETTINGS = (
    Variant("teacher-chunks-seed44", "teacher labels on chunks, the default settings, a third seed", teacher=True,
            epochs=3, seed=44),
    Variant("teacher-chunks-soup3", "the uniform average of teacher-chunks-seed42, -seed43 and -seed44's weights",
            soup_of=("teacher-chunks-seed42", "teacher-chunks-seed43", "teacher-chunks-seed44")),
)  # fmt: skip
ALL_VARIANTS = VARIANTS + TEACHER_SETTINGS + GUIDE_VARIANTS + NEGATIVE_SETTINGS + VIEW_SETTINGS + SOUP_SETTINGS


def chosen(variant: Variant, only: list[str]) -> bool:
    """Whether ``--only`` picks ``variant``: by name, or by its group's name (``teacher-settings``, ``guide``,
    ``negatives``, ``views``, ``soups``); with no names, the first list."""
    if not only:
        return variant in VARIANTS
    return (
        variant.name in only
        or ("teacher-settings" in only and variant in TEACHER_SETTINGS)
        or ("guide" in only and variant in GUIDE_VARIANTS)
        or ("negatives" in only and variant in NEGATIVE_SETTINGS)
        or ("views" in only and variant in VIEW_SETTINGS)
        or ("soups" in only and variant in SOUP_SETTINGS)
    )
