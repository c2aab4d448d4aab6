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
# Pin every package locked with extras a second time without them: pip's hash-checking mode treats
# `name[extra]` and plain `name` (asked for by another package) as two requirements, and fails the install
# as soon as a release newer than the pin exists ("all requirements must have their versions pinned").
plain=$(awk 'match($0, /^[A-Za-z0-9._-]+\[[^]]*\]==/) { on = 1; line = $0; sub(/\[[^]]*\]/, "", line); print line; next }
             on && /^    --hash=/ { print; if (!/\\$/) on = 0; next } { on = 0 }' requirements.lock)
if [ -n "$plain" ]; then
  printf '%s\n%s\n' "# the packages above that carry extras, pinned again without them (pip's hash mode needs both forms)" \
    "$plain" >> requirements.lock
fi
echo "requirements.lock: $(grep -oE '^[A-Za-z0-9._-]+==' requirements.lock | sort -u | wc -l) packages"
