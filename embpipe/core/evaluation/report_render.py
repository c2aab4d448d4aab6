"""The retrieval report as Markdown and matplotlib figures (metric vs k; per-query delta histogram).

Functions return text and ``Figure`` objects; callers decide where they go (MLflow, asset metadata, a
results folder).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

CURVE_KS = (1, 3, 5, 10, 20, 50, 100)


def curve_metrics(ks: Sequence[int] = CURVE_KS) -> list[str]:
    """nDCG@k and Recall@k for every k of the curve plot."""
    return [f"{name}@{k}" for name in ("ndcg", "recall") for k in ks]


def format_delta(row: pd.Series) -> str:
    """``+0.0123 [−0.004, +0.029] p=0.041 (12 W / 5 L)`` for one comparison row."""
    if pd.isna(row.get("delta")):
        return ""
    return (
        f"{row.delta:+.4f} [{row.ci_low:+.4f}, {row.ci_high:+.4f}] p={row.p_value:.3g} "
        f"({int(row.wins)} W / {int(row.losses)} L)"
    )


def markdown_report(report: pd.DataFrame, title: str = "Retrieval report") -> str:
    """Per target: a metric × model table and the tuned-vs-base deltas with intervals and tests."""
    lines = [f"# {title}", ""]
    for target, part in report.groupby("target", sort=False):
        wide = part.pivot_table(index="metric", columns="model", values="value", sort=False)
        wide = wide[[m for m in part["model"].unique() if m in wide.columns]]
        n_queries = part["n_queries"].iloc[0] if "n_queries" in part else ""
        lines += [f"## {target} ({n_queries} queries)", "", wide.round(4).to_markdown(), ""]
        compared = part[part["delta"].notna()]
        if len(compared):
            lines += ["Δ vs base (mean per-query difference, bootstrap 95% interval, paired randomisation test):", ""]
            deltas = compared.assign(comparison=compared.apply(format_delta, axis=1))
            lines += [
                deltas.pivot_table(
                    index="metric", columns="model", values="comparison", aggfunc="first", sort=False
                ).to_markdown(),
                "",
            ]
    return "\n".join(lines)


def metric_curve_figure(curves: pd.DataFrame, target: str):
    """nDCG@k and Recall@k against k for every model (``curves``: model, metric, value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, name in zip(axes, ("ndcg", "recall"), strict=True):
        for model, part in curves[curves["metric"].str.startswith(f"{name}@")].groupby("model", sort=False):
            ks = part["metric"].str.split("@").str[1].astype(int)
            axis.plot(ks, part["value"], marker="o", label=model)
        axis.set_xscale("log")
        axis.set_xlabel("k")
        axis.set_title(f"{name}@k — {target}")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


def delta_histogram_figure(deltas: np.ndarray, metric: str, target: str):
    """Histogram of per-query metric differences (tuned − base)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.hist(deltas, bins=np.linspace(-1, 1, 41), color="#4477aa")
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_xlabel(f"{metric}: tuned − base per query")
    axis.set_ylabel("queries")
    axis.set_title(f"Per-query change — {target}")
    figure.tight_layout()
    return figure


def save_report(folder, markdown: str, comparisons) -> list:
    """Write ``report.md`` and the PNG plots of every comparison into ``folder``; returns the paths."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "report.md"]
    paths[0].write_text(markdown)
    for comparison in comparisons:
        target = comparison.table["target"].iloc[0]
        figures = {f"{target}-metric-vs-k.png": metric_curve_figure(comparison.curves, target)}
        deltas = comparison.per_query_ndcg10
        if {"base", "tuned"} <= set(deltas.columns):
            delta = (deltas["tuned"] - deltas["base"]).to_numpy()
            figures[f"{target}-ndcg10-delta-histogram.png"] = delta_histogram_figure(delta, "nDCG@10", target)
        for name, figure in figures.items():
            figure.savefig(folder / name, dpi=110)
            plt.close(figure)
            paths.append(folder / name)
    return paths
