"""IO managers: tables and models round-trip through real files, addressed by asset key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dagster import AssetIn, Definitions, asset, materialize

from embpipe.resources.io_managers import ModelIOManager, ParquetIOManager


@asset
def table() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b"], "vector": [np.ones(3, np.float32), np.zeros(3, np.float32)]})


@asset(ins={"table": AssetIn()})
def row_count(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"rows": [len(table)], "first": [table["id"].iloc[0]]})


def test_parquet_round_trip_by_asset_key(tmp_path):
    result = materialize([table, row_count], resources={"io_manager": ParquetIOManager(base_dir=str(tmp_path))})
    assert result.success
    stored = pd.read_parquet(tmp_path / "table.parquet")
    assert stored["id"].tolist() == ["a", "b"] and list(stored["vector"].iloc[0]) == [1, 1, 1]
    assert pd.read_parquet(tmp_path / "row_count.parquet").to_dict("records") == [{"rows": 2, "first": "a"}]
    metadata = result.asset_materializations_for_node("table")[0].metadata
    assert metadata["row_count"].value == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_model_directory_round_trip(tmp_path, base_model):
    @asset(io_manager_key="model_io_manager")
    def model():
        return base_model

    @asset
    def dimension(model) -> pd.DataFrame:
        return pd.DataFrame({"dim": [model.encode(["probe"]).shape[1]]})

    defs_resources = {
        "model_io_manager": ModelIOManager(base_dir=str(tmp_path / "models")),
        "io_manager": ParquetIOManager(base_dir=str(tmp_path)),
    }
    assert materialize([model, dimension], resources=defs_resources).success
    assert (tmp_path / "models" / "model" / "config_sentence_transformers.json").is_file()
    assert pd.read_parquet(tmp_path / "dimension.parquet")["dim"].tolist() == [384]
    assert Definitions(assets=[model, dimension], resources=defs_resources)  # wires without error


def test_a_truncated_table_names_its_file_and_the_fix(tmp_path):
    import pandas as pd
    from dagster import AssetKey, build_input_context

    from embpipe.resources.io_managers import ParquetIOManager

    manager = ParquetIOManager(base_dir=str(tmp_path))
    path = tmp_path / "chunks.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(ValueError, match=r"chunks\.parquet is unreadable .*`embpipe run` rebuilds chunks"):
        manager.load_input(build_input_context(asset_key=AssetKey("chunks")))
