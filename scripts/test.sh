#!/usr/bin/env bash
# Install everything the test suite needs (venv, dev extras, system packages, editors) and run it.
# The README's test command and CI's .ci/run both call exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${FIMBLE_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# llama-cpp-python compiles llama.cpp from source on first install (~5-10 minutes on 2 cores); pip caches the wheel.
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'

# System packages and editors for the end-to-end editor tests (skipped when not root and not already present).
if [ -x scripts/setup_editors.sh ]; then
  bash scripts/setup_editors.sh
fi

export PATH="$PWD/$VENV/bin:$PATH"
# llama.cpp's llama-server takes ~20 minutes to build on 2 cores, so its tests are opt-in: they run when a build is
# cached (scripts/setup_llama_server.sh makes one) and skip, saying why, otherwise.
if [ -z "${FIMBLE_LLAMA_SERVER:-}" ] && server_bin=$(bash scripts/setup_llama_server.sh --cached 2>/dev/null | tail -n1); then
  export FIMBLE_LLAMA_SERVER="$server_bin"
fi
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
