"""The packaged VS Code extension (.vsix) holds what VS Code needs to run it, and nothing of its tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXT_DIR = REPO / "editor-clients" / "vscode"


@pytest.fixture(scope="module")
def vsix() -> Path:
    path = EXT_DIR / "fimble.vsix"
    sources = [p for sub in ("src", "media") for p in (EXT_DIR / sub).rglob("*") if p.is_file()]
    sources.append(EXT_DIR / "package.json")
    fresh = path.exists() and path.stat().st_mtime >= max(p.stat().st_mtime for p in sources)
    if not fresh:
        npm = shutil.which("npm")
        if npm is None or not (EXT_DIR / "node_modules" / ".bin" / "vsce").exists():
            pytest.skip(
                "no up-to-date fimble.vsix and no npm dependencies to build it (npm ci in editor-clients/vscode)"
            )
        proc = subprocess.run([npm, "run", "package"], cwd=EXT_DIR, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path


def test_vsix_contents(vsix: Path) -> None:
    with zipfile.ZipFile(vsix) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("extension/package.json"))
    main = "extension/" + manifest["main"].removeprefix("./")
    assert main in names
    assert manifest["engines"]["vscode"] == "^1.91.0"
    assert manifest["activationEvents"] == ["onStartupFinished"]
    # Runtime dependencies travel inside the package (it is not bundled).
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert "extension/node_modules/markdown-it/package.json" in names
    assert "extension/media/explain.js" in names
    # Neither tests, sources, dev tools nor source maps.
    assert not [n for n in names if n.startswith("extension/out/test/")]
    assert not [n for n in names if n.endswith((".ts", ".map")) and not n.endswith(".d.ts")]
    assert not [n for n in names if "/node_modules/typescript/" in n or "/node_modules/@vscode/vsce/" in n]
    assert not [n for n in names if "/node_modules/playwright-core/" in n]
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert {
        "fimble.enable",
        "fimble.disable",
        "fimble.explainSelection",
        "fimble.fixAtCursor",
        "fimble.showLastPrompt",
    } <= commands
    settings = manifest["contributes"]["configuration"]["properties"]
    for key in ("model", "nGpuLayers", "nThreads", "maxTokens", "timeBudgetMs", "enabledLanguages", "useContext"):
        assert f"fimble.{key}" in settings
    assert settings["fimble.maxDocumentBytes"]["default"] == 1_000_000
    # What runs a program or sends code off the machine comes from the user's own settings only.
    restricted = set(manifest["capabilities"]["untrustedWorkspaces"]["restrictedConfigurations"])
    for key in ("serverPath", "pythonPath", "serverArgs", "model", "fallbackModel", "fixCheckers", "backend", "url"):
        assert settings[f"fimble.{key}"]["scope"] == "machine", key
        assert f"fimble.{key}" in restricted, key
    assert manifest["capabilities"]["untrustedWorkspaces"]["supported"] == "limited"
