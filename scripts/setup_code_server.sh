#!/usr/bin/env bash
# Installs code-server 4.100.3 (VS Code 1.100) from the npm registry without any other download,
# plus Debian's chromium and ripgrep, for fimble's VS Code end-to-end test
# (tests/editors/test_vscode_e2e.py).
#
# Idempotent and cached: the install lands in $FIMBLE_CACHE/code-server-4.100.3
# (default ~/.cache/fimble-ci) and is skipped when a completed install is already there.
# Prints the path of the code-server launcher as its last line.
#
# Environment:
#   FIMBLE_CACHE             cache root (default ${HOME}/.cache/fimble-ci)
#   FIMBLE_SKIP_APT=1        do not apt-get install the system packages
#   FIMBLE_CODE_SERVER_FORCE=1  reinstall even when the cache is complete
set -euo pipefail

CS_VERSION=4.100.3
CACHE_ROOT="${FIMBLE_CACHE:-${HOME}/.cache/fimble-ci}"
DEST="${CACHE_ROOT}/code-server-${CS_VERSION}"
STAMP="${DEST}/.fimble-install-complete"
APT_PACKAGES=(libkrb5-dev libxkbfile-dev libsecret-1-dev ripgrep chromium build-essential python3 pkg-config)

log() { printf '[setup_code_server] %s\n' "$*" >&2; }

install_apt() {
  if [[ "${FIMBLE_SKIP_APT:-0}" == 1 ]]; then
    return 0
  fi
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "apt packages present"
    return 0
  fi
  log "apt-get install ${missing[*]}"
  local SUDO=()
  if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

install_code_server() {
  if [[ -f "$STAMP" && "${FIMBLE_CODE_SERVER_FORCE:-0}" != 1 ]]; then
    log "cached: $DEST"
    return 0
  fi
  local node_major
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  if [[ "$node_major" != 20 ]]; then
    log "code-server ${CS_VERSION} needs Node 20, found $(node --version)"
    exit 1
  fi
  local rg
  rg="$(command -v rg || true)"
  if [[ -z "$rg" ]]; then
    log "ripgrep (rg) not found; install Debian's ripgrep"
    exit 1
  fi

  mkdir -p "$CACHE_ROOT"
  local work
  work="$(mktemp -d "${CACHE_ROOT}/.code-server-build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN
  log "npm pack code-server@${CS_VERSION} in $work"
  (cd "$work" && npm pack --silent "code-server@${CS_VERSION}" >/dev/null && tar xzf "code-server-${CS_VERSION}.tgz")
  local pkg="$work/package"

  export npm_config_unsafe_perm=true npm_config_yes=true npm_config_audit=false npm_config_fund=false \
    npm_config_update_notifier=false
  log "installing code-server's dependencies"
  (cd "$pkg" && npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2 && npm rebuild argon2 >&2)

  log "installing VS Code's dependencies (lib/vscode)"
  (
    cd "$pkg/lib/vscode"
    npm install --omit=dev --ignore-scripts --no-audit --no-fund >&2
    # @vscode/ripgrep's postinstall downloads a binary: use Debian's instead.
    mkdir -p node_modules/@vscode/ripgrep/bin
    cp "$rg" node_modules/@vscode/ripgrep/bin/rg
    chmod +x node_modules/@vscode/ripgrep/bin/rg
    # Builds the native modules (node-pty, spdlog, kerberos, watcher...); ripgrep sees its binary and skips.
    npm rebuild >&2
    # What code-server's postinstall.sh does after installing.
    rm -rf node_modules.asar && ln -s node_modules node_modules.asar
    (cd bin/remote-cli && rm -f code-server && ln -s code-linux.sh code-server)
    (cd bin/helpers && rm -f browser.sh && ln -s browser-linux.sh browser.sh)
  )
  log "installing built-in extensions' shared dependencies (lib/vscode/extensions)"
  (cd "$pkg/lib/vscode/extensions" && npm install --omit=dev --no-audit --no-fund >&2)

  # Launcher that does not depend on npm's bin linking.
  mkdir -p "$pkg/bin"
  cat > "$pkg/bin/code-server" <<'LAUNCHER'
#!/usr/bin/env sh
here="$(cd "$(dirname "$0")/.." && pwd)"
exec node "$here/out/node/entry.js" "$@"
LAUNCHER
  chmod +x "$pkg/bin/code-server"

  # Smoke test before publishing into the cache.
  XDG_CONFIG_HOME="$work/xdg-config" XDG_DATA_HOME="$work/xdg-data" "$pkg/bin/code-server" --version >&2

  rm -rf "$DEST"
  mv "$pkg" "$DEST"
  touch "$STAMP"
  log "installed into $DEST"
}

install_apt
install_code_server
echo "${DEST}/bin/code-server"
