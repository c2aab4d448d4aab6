"""Which llama-cpp-python build the local teacher loads, chosen from this CPU's instructions at run time.

``scripts/install.sh`` installs two builds, neither tuned to the build host: the baseline (AVX2, FMA, F16C)
as the environment's ``llama_cpp``, and an AVX-512 variant (with VNNI, VBMI and BF16, without AMX, whose
native builds crash on some virtual machines) under ``<venv>/llama-variants/avx512``. The local teacher
server puts the variant first on ``sys.path`` only where the CPU has every instruction it was built with;
``EMBPIPE_LLAMA_BUILD=baseline`` (or ``avx512``) forces a choice.

Example:
    >>> choose_build({"avx2", "fma", "f16c"}, ["avx512"])
    'baseline'
    >>> choose_build(set(VARIANT_FLAGS["avx512"]), ["avx512"])
    'avx512'
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BASELINE_FLAGS = ("avx", "avx2", "fma", "f16c")
VARIANT_FLAGS: dict[str, tuple[str, ...]] = {
    "avx512": BASELINE_FLAGS + ("bmi2", "avx_vnni", "avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl",
                                "avx512vbmi", "avx512_vnni", "avx512_bf16"),
}  # fmt: skip
PREFERENCE = ("avx512",)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The instruction-set flags of ``/proc/cpuinfo`` (or of the given text); empty where there is none.

    Example:
        >>> sorted(cpu_flags("flags\\t: fpu avx avx2"))
        ['avx', 'avx2', 'fpu']
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return flags


def missing_baseline_flags(flags: set[str]) -> list[str]:
    """The instructions the baseline build needs that ``flags`` lacks (none off x86-64)."""
    if os.uname().machine not in ("x86_64", "AMD64"):
        return []
    return [flag for flag in BASELINE_FLAGS if flag not in flags]


def variants_dir() -> Path:
    """Where ``scripts/install.sh`` puts the variant builds: ``<environment>/llama-variants``."""
    return Path(sys.prefix) / "llama-variants"


def installed_variants() -> list[str]:
    """The variant builds present in this environment."""
    folder = variants_dir()
    return [name for name in PREFERENCE if (folder / name / "llama_cpp").is_dir()]


def choose_build(flags: set[str], installed: list[str]) -> str:
    """The preferred installed variant whose every instruction is in ``flags``, else ``baseline``."""
    forced = os.environ.get("EMBPIPE_LLAMA_BUILD")
    if forced:
        if forced != "baseline" and forced not in installed:
            raise ValueError(f"EMBPIPE_LLAMA_BUILD={forced!r}: installed builds are baseline and {installed}")
        return forced
    for name in PREFERENCE:
        if name in installed and set(VARIANT_FLAGS[name]) <= flags:
            return name
    return "baseline"


def activate_best_build() -> str:
    """Put the chosen build first on ``sys.path`` (before ``llama_cpp`` is imported) and return its name."""
    if "llama_cpp" in sys.modules:
        raise RuntimeError("llama_cpp is already imported; choose the build before importing it")
    name = choose_build(cpu_flags(), installed_variants())
    if name != "baseline":
        sys.path.insert(0, str(variants_dir() / name))
    return name
