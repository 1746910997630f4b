#!/usr/bin/env python3
"""Packages the fimble server for the editor clients.

  bundle_server.py wheel --out DIR        the fimble wheel, built reproducibly from this checkout
  bundle_server.py vscode                 editor-clients/vscode/bundled/: that wheel, the installer and server.json
                                          (run by `npm run package`, so the .vsix always carries its own server)
  bundle_server.py wheelhouse --out DIR   that wheel and every wheel `pip install fimble[default-model]` needs on
                                          this Python version and platform, for installing offline
                                          (PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR); llama-cpp-python comes from pip's
                                          cache when it has a built wheel (else it is compiled)

The wheel is built from a copy of pyproject.toml, README.md and server/ (so the checkout gets no build/ or
egg-info folders), with SOURCE_DATE_EPOCH fixed: the same sources give the same bytes, and the VS Code extension
reinstalls its server only when the wheel's sha256 changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VSCODE = REPO / "editor-clients" / "vscode"
INSTALLER = REPO / "editor-clients" / "install" / "fimble_install.py"
# 1980-01-01, the earliest time a zip file can hold.
SOURCE_DATE_EPOCH = "315532800"
# Setuptools reads `license = "MIT"` (an SPDX expression) from 77 on.
MIN_SETUPTOOLS = (77, 0)


def project_version(repo: Path = REPO) -> str:
    with (repo / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"bundle_server: {' '.join(argv[:4])} ... failed with exit code {proc.returncode}")


def _setuptools_is_new_enough() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    parts = re.findall(r"\d+", setuptools.__version__)[:2]
    return tuple(int(p) for p in parts) >= MIN_SETUPTOOLS


def build_wheel(out: Path, repo: Path = REPO) -> Path:
    """The fimble wheel in `out` (an older fimble wheel there is replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("fimble-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="fimble-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy2(repo / name, src / name)
        # server/fimble/prompts is a link to the repository's prompts/: copied as files.
        shutil.copytree(
            repo / "server",
            src / "server",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
        )
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(out)]
        if _setuptools_is_new_enough():
            argv.append("--no-build-isolation")  # works offline
        _run([*argv, str(src)], env=env)
    (wheel,) = out.glob("fimble-*.whl")
    return wheel


def bundle_vscode(repo: Path = REPO) -> Path:
    """editor-clients/vscode/bundled/ with the wheel, the installer and server.json; checks the versions match."""
    package = json.loads((repo / "editor-clients" / "vscode" / "package.json").read_text())
    version = project_version(repo)
    if package["version"] != version:
        raise SystemExit(
            f"bundle_server: the extension is {package['version']} but the server is {version}: make "
            "editor-clients/vscode/package.json and pyproject.toml say the same version"
        )
    out = repo / "editor-clients" / "vscode" / "bundled"
    if out.exists():
        shutil.rmtree(out)
    wheel = build_wheel(out, repo)
    shutil.copy2(INSTALLER, out / INSTALLER.name)
    manifest = {"version": version, "wheel": wheel.name, "sha256": sha256(wheel), "installer": INSTALLER.name}
    (out / "server.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def cached_llama_wheel() -> Path | None:
    """The newest llama-cpp-python wheel pip has built and cached, if any."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "list", "--format=abspath", "llama_cpp_python"],
        capture_output=True,
        text=True,
    )
    found = [Path(line.strip()) for line in proc.stdout.splitlines() if line.strip().endswith(".whl")]
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def wheelhouse(out: Path, repo: Path = REPO) -> Path:
    """A folder holding every wheel an offline `pip install fimble[default-model]` needs (plus setuptools and
    wheel, which building fimble from a checkout needs), for this Python's version and platform."""
    out.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(out, repo)
    if not list(out.glob("llama_cpp_python-*.whl")):
        cached = cached_llama_wheel()
        if cached is not None:
            shutil.copy2(cached, out / cached.name)
        else:
            print("bundle_server: compiling llama-cpp-python (5-10 minutes)", file=sys.stderr)
            _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), "llama-cpp-python"])
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--find-links",
            str(out),
            "-d",
            str(out),
            f"{wheel}[default-model]",
            "setuptools",
            "wheel",
        ]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("wheel").add_argument("--out", type=Path, required=True)
    sub.add_parser("vscode")
    sub.add_parser("wheelhouse").add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "wheel":
        print(build_wheel(args.out))
    elif args.command == "vscode":
        print(bundle_vscode())
    else:
        print(wheelhouse(args.out))


if __name__ == "__main__":
    main()
