#!/usr/bin/env bash
# Regenerate requirements.lock: every Python dependency of embpipe (all extras but gpu), direct and
# transitive, pinned with sha256 hashes. Run it after changing pyproject.toml's dependencies or
# requirements/pins.txt, then commit both; scripts/install.sh installs only from the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=${EMBPIPE_LOCK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/embpipe/lock-tools}
[ -x "$tools/bin/pip-compile" ] || { $PYTHON -m venv "$tools" && "$tools/bin/pip" install -q "pip-tools==7.6.2"; }
"$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --no-strip-extras --no-emit-index-url \
  --no-emit-find-links --extra cpu --extra pdf --extra dev --extra local \
  --constraint requirements/pins.txt --output-file requirements.lock pyproject.toml
echo "requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) packages"
