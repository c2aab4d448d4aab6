"""The stale-only runner: failed passes, holding back what a failed blocking check guards, method switches."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dagster import AssetCheckResult, DagsterInstance, Output, asset, asset_check

from embpipe.orchestration.instance import prepare_dagster_home
from embpipe.orchestration.runner import run_stale
from embpipe.resources.methods import MethodsResource

UPSTREAM_VALUE = {"value": 1}
PROJECT = Path(__file__).resolve().parents[1]


@asset
def upstream() -> int:
    return UPSTREAM_VALUE["value"]


@asset
def downstream(upstream: int) -> int:
    return upstream + 1


@asset_check(asset=upstream, blocking=True)
def upstream_is_large(upstream: int) -> AssetCheckResult:
    return AssetCheckResult(passed=upstream > 1)


def built(instance: DagsterInstance, asset_def) -> bool:
    return instance.get_latest_materialization_event(asset_def.key) is not None


def test_a_failed_blocking_check_holds_back_the_assets_below_until_the_asset_passes(tmp_path, monkeypatch):
    monkeypatch.setitem(UPSTREAM_VALUE, "value", 1)
    instance = DagsterInstance.local_temp(str(tmp_path))
    graph, checks = [upstream, downstream], [upstream_is_large]
    outcome = run_stale(graph, checks, {}, {}, instance, raise_on_error=False)
    assert outcome.failed and outcome.rebuilt == ["upstream"] and not built(instance, downstream)

    again = run_stale(graph, checks, {}, {}, instance)  # upstream is fresh now, but still blocked
    assert again.rebuilt == [] and again.held_back == {"downstream": "upstream_is_large"}
    assert not built(instance, downstream)

    monkeypatch.setitem(UPSTREAM_VALUE, "value", 2)
    fixed = run_stale(graph, checks, {}, {}, instance, force=True)
    assert fixed.rebuilt == ["upstream", "downstream"] and not fixed.held_back and built(instance, downstream)


def test_a_failed_pass_raises_by_default(tmp_path):
    with pytest.raises(Exception, match="blocking asset check failed"):
        run_stale([upstream, downstream], [upstream_is_large], {}, {}, DagsterInstance.local_temp(str(tmp_path)))


@asset(required_resource_keys={"methods"})
def switched(context) -> Output[int]:
    return Output(int(context.resources.methods.lmar), metadata={"lmar": context.resources.methods.lmar})


@asset
def downstream_of_switched(switched: int) -> int:
    return switched + 1


def test_flipping_a_method_switch_rebuilds_the_stages_that_read_it(tmp_path):
    instance = DagsterInstance.local_temp(str(tmp_path))
    graph = [switched, downstream_of_switched]
    assert run_stale(graph, [], {"methods": MethodsResource(lmar=False)}, {}, instance).rebuilt == [
        "switched",
        "downstream_of_switched",
    ]
    assert run_stale(graph, [], {"methods": MethodsResource(lmar=False)}, {}, instance).rebuilt == []
    flipped = run_stale(graph, [], {"methods": MethodsResource(lmar=True)}, {}, instance)
    assert flipped.rebuilt == ["switched", "downstream_of_switched"]


@asset(io_manager_key="tables")
def stored_table():
    import pandas as pd

    return pd.DataFrame({"x": [1, 2, 3]})


@asset(io_manager_key="tables")
def table_below(stored_table):
    return stored_table.assign(y=stored_table["x"] * 2)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_deleted_or_damaged_output_is_rebuilt_on_the_next_run(tmp_path, damage):
    from embpipe.resources.io_managers import ParquetIOManager

    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    resources = {"tables": ParquetIOManager(base_dir=str(tmp_path / "assets"))}
    graph = [stored_table, table_below]
    assert run_stale(graph, [], resources, {}, instance).rebuilt == ["stored_table", "table_below"]
    assert run_stale(graph, [], resources, {}, instance).rebuilt == []
    path = tmp_path / "assets" / "stored_table.parquet"
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:20])
    assert "stored_table" in run_stale(graph, [], resources, {}, instance).rebuilt
    assert path.is_file() and run_stale(graph, [], resources, {}, instance).rebuilt == []


@asset
def logs_through_python_logging() -> int:
    logging.getLogger("embpipe.core.training.distillation").info("distillation step 50/100, 12 s")
    return 1


@pytest.mark.parametrize("beside_the_project", [True, False])
def test_embpipe_s_own_log_lines_reach_the_run_s_event_log(tmp_path, monkeypatch, beside_the_project):
    monkeypatch.setenv("EMBPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(PROJECT if beside_the_project else tmp_path)  # else the fallback settings
    home = prepare_dagster_home()
    instance = DagsterInstance.from_config(str(home))
    run_stale([logs_through_python_logging], [], {}, {}, instance)
    messages = [record.user_message for record in instance.all_logs(instance.get_runs(limit=1)[0].run_id)]
    assert "distillation step 50/100, 12 s" in messages
