"""The local teacher's llama.cpp build is chosen from the CPU's instructions, never from the build host."""

from __future__ import annotations

import os

import pytest

from embpipe.llm.llama_builds import VARIANT_FLAGS, choose_build, cpu_flags, missing_baseline_flags

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma f16c bmi2\n"
AMX_HOST = "flags\t\t: " + " ".join(VARIANT_FLAGS["avx512"]) + " amx_tile amx_int8 amx_bf16\n"


def test_cpu_flags_are_read_from_cpuinfo_text():
    assert cpu_flags(AVX2_ONLY) == {"fpu", "sse", "sse2", "avx", "avx2", "fma", "f16c", "bmi2"}


def test_an_avx2_cpu_gets_the_baseline_even_when_the_variant_is_installed(monkeypatch):
    monkeypatch.delenv("EMBPIPE_LLAMA_BUILD", raising=False)
    assert choose_build(cpu_flags(AVX2_ONLY), ["avx512"]) == "baseline"


def test_an_avx512_cpu_gets_the_variant_only_when_it_is_installed(monkeypatch):
    monkeypatch.delenv("EMBPIPE_LLAMA_BUILD", raising=False)
    assert choose_build(cpu_flags(AMX_HOST), ["avx512"]) == "avx512"
    assert choose_build(cpu_flags(AMX_HOST), []) == "baseline"
    without_bf16 = cpu_flags(AMX_HOST) - {"avx512_bf16"}
    assert choose_build(without_bf16, ["avx512"]) == "baseline"  # every instruction of the variant, or none


def test_a_forced_build_must_be_installed(monkeypatch):
    monkeypatch.setenv("EMBPIPE_LLAMA_BUILD", "baseline")
    assert choose_build(cpu_flags(AMX_HOST), ["avx512"]) == "baseline"
    monkeypatch.setenv("EMBPIPE_LLAMA_BUILD", "avx512")
    with pytest.raises(ValueError, match="installed builds"):
        choose_build(cpu_flags(AMX_HOST), [])


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the AVX2 baseline is an x86-64 requirement")
def test_a_cpu_without_avx2_is_named_not_crashed_on():
    assert missing_baseline_flags({"sse", "avx"}) == ["avx2", "fma", "f16c"]
    assert missing_baseline_flags(cpu_flags(AVX2_ONLY)) == []
