"""The experiment ledger: generated from the results files, current, and honest about what paid."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from embpipe_tests.conftest import REPO


@pytest.fixture(scope="module")
def ledger():
    spec = importlib.util.spec_from_file_location("ledger", REPO / "benchmarks" / "ledger.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ledger"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def result(delta: float, low: float, high: float, p: float, recall_delta: float = 0.0, best_epoch: int = 1) -> dict:
    test = {"delta": delta, "ci_low": low, "ci_high": high, "p_value": p, "wins": 1.0, "losses": 0.0}
    recall = {"delta": recall_delta, "ci_low": recall_delta - 0.01, "ci_high": recall_delta + 0.01, "p_value": 0.5}
    return {
        "dataset": "toy",
        "variant": "v",
        "setting": "quick",
        "description": "a toy variant",
        "metrics": {m: {"ndcg@10": 0.5, "recall@100": 0.8} for m in ("bm25", "base", "tuned")},
        "tuned_vs_base": {"ndcg@10": test, "recall@100": {**recall, "wins": 0.0, "losses": 0.0}},
        "tokens": {"total": 1234},
        "wall_s": {"total": 10.0, "by_stage": {"embedding_model": 7.0, "chunks": 1.0}},
        "stage_metadata": {"embedding_model": {"train_examples": 42, "best_epoch": best_epoch}},
    }


def test_the_committed_ledger_and_readme_table_match_the_results_files(ledger):
    assert ledger.main(["--check"]) == 0, "run: python benchmarks/ledger.py"


def test_a_row_says_what_paid_from_the_interval_not_the_point_estimate(ledger, tmp_path):
    files = {
        "toy-gain.json": result(0.02, 0.01, 0.03, 0.001),
        "toy-noise.json": result(0.02, -0.01, 0.05, 0.2),
        "toy-kept.json": result(0.0, 0.0, 0.0, 1.0, best_epoch=0),
        "toy-worse.json": result(-0.02, -0.03, -0.01, 0.001),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    (tmp_path / "serving-speed.json").write_text(json.dumps({"model": "x"}))  # not a benchmark comparison
    rows = {row.file: row for row in ledger.benchmark_rows(tmp_path)}
    assert set(rows) == set(files)
    assert rows["toy-gain.json"].verdict == "yes"
    assert rows["toy-noise.json"].verdict == "no real difference"
    assert rows["toy-kept.json"].verdict.startswith("no: base kept")
    assert rows["toy-worse.json"].verdict == "no: worse than base"
    assert rows["toy-gain.json"].examples == "42" and rows["toy-gain.json"].tokens == "1,234"
    assert "+0.0200 (+0.0100, +0.0300), p 0.001" in ledger.results_table(list(rows.values()))


def test_the_readme_table_is_replaced_between_its_markers_only(ledger):
    readme = f"intro\n{ledger.README_START}\nold table\n{ledger.README_END}\noutro\n"
    assert ledger.readme_with_table(readme, "| new |\n") == (
        f"intro\n{ledger.README_START}\n| new |\n{ledger.README_END}\noutro\n"
    )
    with pytest.raises(ValueError, match="ledger markers"):
        ledger.readme_with_table("no markers", "| new |\n")


def test_a_lever_is_judged_against_the_variant_it_changes(ledger, tmp_path):
    def metric(before, after, delta, low, high, p):
        return {"before": before, "after": after, "delta": delta, "ci_low": low, "ci_high": high, "p_value": p}

    compare = {
        "dataset": "toy",
        "before": "plain",
        "after": "lever",
        "queries": 100,
        "metrics": {
            "ndcg@10": metric(0.70, 0.74, 0.04, 0.02, 0.06, 0.001),
            "recall@100": metric(0.90, 0.85, -0.05, -0.07, -0.03, 0.001),
        },
    }
    (tmp_path / "compare-toy-plain-vs-lever.json").write_text(json.dumps(compare))
    elsewhere = {**compare, "after": "lever-elsewhere", "scored_on": "other"}  # the forgetting check
    (tmp_path / "compare-toy-plain-vs-lever-on-other.json").write_text(json.dumps(elsewhere))
    section = ledger.lever_section(tmp_path)
    assert "| toy: `plain` → `lever` | 100 | 0.7000 → 0.7400 | +0.0400 (+0.0200, +0.0600), p 0.001 |" in section
    assert "| other: `plain` → `lever-elsewhere` | 100 |" in section
    assert section.rstrip().endswith("gain, but Recall@100 fell |")
    assert ledger.lever_section(tmp_path / "empty") == ""


def test_the_sweep_sections_show_each_variant_against_the_base_and_each_setting_s_yield(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ledger_sweep import sweep_section, yield_section

    def row(model: str, metric: str, value: float, delta: float | None = None) -> dict:
        extra = (
            {} if delta is None else {"delta": delta, "ci_low": delta - 0.01, "ci_high": delta + 0.01, "p_value": 0.02}
        )
        return {"model": model, "metric": metric, "value": value, **extra}

    rows = [row(m, k, v, d) for m, d in (("base", None), ("pairs", -0.05), ("pairs-soup", -0.01))
            for k, v in (("ndcg@10", 0.7 + (d or 0)), ("recall@100", 0.9))]  # fmt: skip
    sweep = {"dataset": "toy", "soup_alpha": 0.5, "device": "cuda:0", "metrics": {"toy": rows, "other": rows},
             "variants": {"pairs": {"about": "every pair", "examples": 10, "train_seconds": 1.5}}}  # fmt: skip
    (tmp_path / "recipe-sweep-toy.json").write_text(json.dumps(sweep))
    text = sweep_section(tmp_path)
    assert "| `pairs` | every pair | 10 | 1.5 | 0.6500, -0.0500 (-0.0600, -0.0400), p 0.02 |" in text
    assert "0.6900, -0.0100 (-0.0200, +0.0000), p 0.02" in text  # halfway back to the base
    sweep["head_to_head"] = {"pairs-soup vs pairs": {"toy": [row("pairs-soup", "ndcg@10", 0.69, 0.04)]}}
    (tmp_path / "recipe-sweep-toy.json").write_text(json.dumps(sweep))
    assert "| `pairs-soup vs pairs` | 0.6900, +0.0400 (+0.0300, +0.0500), p 0.02 | – |" in sweep_section(tmp_path)
    assert "from the same base with" in sweep_section(tmp_path)  # the default base is not named
    (tmp_path / "recipe-sweep-toy.json").write_text(json.dumps({**sweep, "base_model": "all-mpnet-base-v2"}))
    assert "from the same base (`all-mpnet-base-v2`) with" in sweep_section(tmp_path)
    (tmp_path / "recipe-sweep-toy.json").write_text(json.dumps({**sweep, "intro": "`probe.py`: distilled"}))
    assert "`probe.py`: distilled on `cuda:0`" in sweep_section(tmp_path)  # a probe that trains otherwise says how
    assert "pipeline's trainer" not in sweep_section(tmp_path)
    kept = {"questions_per_call": 3, "calls": 4, "wall_s": 40.0, "seconds_per_call": 10.0, "questions_written": 12,
            "questions_kept": 10, "questions_per_hour": 900, "round_trip_pass_rate": 0.7,
            "round_trip_ci": [0.4, 0.9]}  # fmt: skip
    together = {**kept, "parallel_sequences": 4, "wall_s": 20.0, "seconds_per_call": 5.0, "questions_per_hour": 1800}
    (tmp_path / "question-yield-toy.json").write_text(
        json.dumps({"dataset": "toy", "teacher": "local/x", "chunks": 4, "rows": [kept, together]})
    )
    assert "| 3 | 1 | 4 | 40.0 | 10.0 | 12 | 10 | 900 | 70% (40%–90%) |" in yield_section(tmp_path)
    assert "| 3 | 4 | 4 | 20.0 | 5.0 | 12 | 10 | 1,800 | 70% (40%–90%) |" in yield_section(tmp_path)


def test_the_validation_probe_section_shows_each_epoch_beside_the_hand_set(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from ledger_sweep import probe_section

    def epoch(number: int, chunks: float, hand: float, delta: float | None) -> dict:
        low, high, p = (None, None, None) if delta is None else (delta - 0.01, delta + 0.01, 0.03)
        test = {"hand_delta": delta, "hand_ci_low": low, "hand_ci_high": high, "hand_p_value": p}
        return {"epoch": number, "validation_chunks": chunks, "validation_documents": 0.9, "hand_value": hand, **test}

    probe = {"hand_set": "toy-eval", "hand_queries": 60, "validation_queries": 16, "validation_chunks": 141,
             "runs": {"teacher-seed42": {"examples": 59, "epochs": [epoch(0, 0.85, 0.90, None),
                                                                    epoch(1, 0.78, 0.94, 0.04)]}}}  # fmt: skip
    (tmp_path / "validation-probe-toy.json").write_text(json.dumps(probe))
    text = probe_section(tmp_path)
    assert "| `teacher-seed42` (59 examples) | 0 | 0.8500 | 0.9000 | 0.9000 |" in text
    tuned = "| `teacher-seed42` (59 examples) | 1 | 0.7800 | 0.9000 | 0.9400, +0.0400 (+0.0300, +0.0500), p 0.03 |"
    assert tuned in text
    assert "16 validation questions against 141 chunks" in text and "60 human-labelled questions of `toy-eval`" in text


def test_the_lever_account_reads_each_figure_from_its_results_file(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from levers import Measure, figure

    def test(value: float, delta: float) -> dict:
        return {"value": value, "delta": delta, "ci_low": delta - 0.01, "ci_high": delta + 0.01, "p_value": 0.004}

    benchmark = result(0.03, 0.02, 0.04, 0.004)
    benchmark["metrics"]["tuned"]["ndcg@10"] = 0.77
    guide = {"model": "guide", "metric": "ndcg@10"}
    sweep = {
        "variants": {},
        "metrics": {"toy": [{**guide, **test(0.78, 0.04)}], "other": [{**guide, **test(0.97, -0.01)}]},
    }
    compare = {"dataset": "toy", "before": "a", "after": "b", "scored_on": "other",
               "metrics": {"ndcg@10": {"before": 0.98, "after": 0.99, **test(0.0, 0.01)}}}  # fmt: skip
    rows = {"rows": [{"parallel_sequences": 1, "questions_per_hour": 900, "round_trip_pass_rate": 0.7},
                     {"parallel_sequences": 8, "questions_per_hour": 2400, "round_trip_pass_rate": 0.68}]}  # fmt: skip
    for name, content in {
        "toy-v.json": benchmark,
        "sweep.json": sweep,
        "compare.json": compare,
        "yield.json": rows,
    }.items():
        (tmp_path / name).write_text(json.dumps(content))
    assert figure(tmp_path, Measure("toy-v.json", "x")) == (
        "toy 0.7700, +0.0300 (+0.0200, +0.0400), p 0.004; Recall@100 +0.0000, p 0.5"
    )
    assert figure(tmp_path, Measure("sweep.json", "x", "guide")) == (
        "toy 0.7800, +0.0400 (+0.0300, +0.0500), p 0.004; other 0.9700, -0.0100 (-0.0200, +0.0000), p 0.004"
    )
    assert (
        figure(tmp_path, Measure("compare.json", "x")) == "other 0.9800 → 0.9900, +0.0100 (+0.0000, +0.0200), p 0.004"
    )
    assert figure(tmp_path, Measure("yield.json", "x", {"parallel_sequences": 8})) == (
        "2,400 questions/hour, round trip 68%"
    )
    with pytest.raises(FileNotFoundError):  # a lever naming a file that is not committed fails the ledger
        figure(tmp_path, Measure("missing.json", "x"))
