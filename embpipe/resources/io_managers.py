"""IO managers: Parquet files for tables, directories for models, both addressed by asset key.

Every write is atomic (written beside the target, then renamed), so a killed run or two concurrent runs
never leave a half-written table or model behind.
"""

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from embpipe.core.embedding import resolve_device
from embpipe.paths import data_dir


def asset_path(base_dir: str, context: OutputContext | InputContext, suffix: str = "") -> Path:
    """``<base_dir>/<asset key path>[/<partition>]<suffix>``."""
    key = context.asset_key.path
    path = Path(base_dir).joinpath(*key)
    if context.has_asset_partitions:
        path = path / context.asset_partition_key
    return path.with_name(path.name + suffix)


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class ParquetIOManager(ConfigurableIOManager):
    """Stores pandas DataFrames as ``<base_dir>/<asset key>.parquet``."""

    base_dir: str = Field(default="", description="Folder for asset Parquet files; empty = <data dir>/assets.")

    def root(self) -> str:
        return self.base_dir or str(data_dir() / "assets")

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        path = asset_path(self.root(), context, ".parquet")
        write_parquet_atomically(obj, path)
        context.add_output_metadata({"path": str(path), "row_count": len(obj)})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        return read_table(asset_path(self.root(), context, ".parquet"), context.asset_key.to_user_string())


def read_table(path: Path, asset_name: str) -> pd.DataFrame:
    """A table this IO manager wrote; an error naming the file and the fix when it is missing or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: materialize {asset_name} first")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(
            f"{path} is unreadable ({error}): `embpipe run` rebuilds {asset_name} (its output is checked before "
            "each run)"
        ) from error


def stored_table_path(asset_name: str) -> Path:
    """Where the default Parquet IO manager keeps an asset's table (for commands that read it outside a run)."""
    return Path(ParquetIOManager().root()) / f"{asset_name}.parquet"


def stored_model_path(asset_name: str) -> Path:
    """Where the default model IO manager keeps a model asset's folder (for commands outside a run)."""
    return Path(ModelIOManager().root()) / asset_name


def replace_directory(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it with two renames (the old copy removed afterwards)."""
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


class ModelIOManager(ConfigurableIOManager):
    """Stores sentence-transformers models as directories ``<base_dir>/<asset key>/``."""

    base_dir: str = Field(default="", description="Folder for model directories; empty = <data dir>/models.")

    def root(self) -> str:
        return self.base_dir or str(data_dir() / "models")

    def handle_output(self, context: OutputContext, obj) -> None:
        target = asset_path(self.root(), context)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        obj.save(str(staging))
        replace_directory(staging, target)
        context.add_output_metadata({"path": str(target)})

    def load_input(self, context: InputContext):
        from sentence_transformers import SentenceTransformer

        path = asset_path(self.root(), context)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} does not exist: materialize {context.asset_key.to_user_string()} first")
        return SentenceTransformer(str(path), device=resolve_device("auto"))
