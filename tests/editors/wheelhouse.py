"""The wheel folder the install tests point pip at, so that installing fimble from the editors runs offline and fast.

scripts/bundle_server.py wheelhouse builds it (fimble's wheel, llama-cpp-python from pip's cache of built wheels,
everything else from the package index once); it is kept in ${FIMBLE_CACHE:-~/.cache/fimble-ci}/wheelhouse-<tag>.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("FIMBLE_CACHE") or Path.home() / ".cache" / "fimble-ci")


def build_wheelhouse(python: str = sys.executable) -> Path:
    """The wheel folder for `python` (it must be this interpreter's version); skips the test, saying why, when it
    cannot be built."""
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    if version != f"{sys.version_info.major}.{sys.version_info.minor}":
        pytest.skip(f"{python} is Python {version or '?'}, the tests run {sys.version.split()[0]}: no wheels for it")
    out = cache_root() / f"wheelhouse-cp{version.replace('.', '')}"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bundle_server.py"), "wheelhouse", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot build the offline wheel folder (no package index?): {proc.stderr[-1500:]}")
    return out


def pip_config(wheelhouse: Path) -> str:
    """A user's pip.conf that installs from `wheelhouse` only."""
    return f"[global]\nno-index = true\nfind-links = {wheelhouse}\n"


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """`env` without this machine's pip settings, Python paths or a fimble on PATH: what a new user has."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "FIMBLE_MODEL")
    return {k: v for k, v in env.items() if not k.startswith("PIP_") and k not in drop}
