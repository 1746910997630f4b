"""The packaged VS Code extension (.vsix) holds what VS Code needs to run it, and nothing of its tests."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from .test_vscode_e2e import _newest_source_mtime

REPO = Path(__file__).resolve().parents[2]
EXT_DIR = REPO / "editor-clients" / "vscode"


@pytest.fixture(scope="module")
def vsix() -> Path:
    path = EXT_DIR / "fimble.vsix"
    fresh = path.exists() and path.stat().st_mtime >= _newest_source_mtime()
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
    # The icon the Extensions view shows: a 128x128 PNG, inside the package.
    assert manifest["icon"] == "media/icon.png"
    with zipfile.ZipFile(vsix) as z, Image.open(io.BytesIO(z.read("extension/media/icon.png"))) as icon:
        assert (icon.format, icon.size) == ("PNG", (128, 128))
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


def test_vsix_carries_its_own_server(vsix: Path) -> None:
    """The server the extension installs: this checkout's fimble wheel, its version the extension's, and the
    installer; the wheel is reproducible, so an unchanged server is not reinstalled after an extension update."""
    with zipfile.ZipFile(vsix) as z:
        manifest = json.loads(z.read("extension/package.json"))
        server = json.loads(z.read("extension/bundled/server.json"))
        wheel = z.read(f"extension/bundled/{server['wheel']}")
        installer = z.read(f"extension/bundled/{server['installer']}")
        licence = z.read(next(n for n in z.namelist() if n.lower() in ("extension/license", "extension/license.txt")))
    assert server["version"] == manifest["version"]
    assert server["wheel"] == f"fimble-{manifest['version']}-py3-none-any.whl"
    assert hashlib.sha256(wheel).hexdigest() == server["sha256"]
    assert installer == (REPO / "editor-clients" / "install" / "fimble_install.py").read_bytes()
    with zipfile.ZipFile(io.BytesIO(wheel)) as w:
        names = set(w.namelist())
        wheel_licence = w.read(
            next(n for n in names if n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE"))
        )
    assert "fimble/cli/main.py" in names and "fimble/prompts/fim/qwen2.5-coder.toml" in names
    # One licence text: the repository's, in the wheel and the extension.
    assert wheel_licence == licence.replace(b"\r\n", b"\n") == (REPO / "LICENSE").read_bytes()
    commands = {c["command"] for c in manifest["contributes"]["commands"]}
    assert {"fimble.installServer", "fimble.removeServer"} <= commands


@pytest.mark.editor
def test_the_server_wheel_is_reproducible_and_leaves_the_checkout_alone(tmp_path: Path) -> None:
    import subprocess
    import sys

    before = sorted(p.name for p in (*REPO.iterdir(), *(REPO / "server").iterdir()))
    built = [
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "bundle_server.py"), "wheel", "--out", str(tmp_path / str(i))],
            capture_output=True,
            text=True,
            timeout=600,
        )
        for i in range(2)
    ]
    if any(b.returncode != 0 for b in built):
        pytest.skip(f"cannot build the wheel here (no setuptools from an index?): {built[0].stderr[-1000:]}")
    first, second = (next((tmp_path / str(i)).glob("fimble-*.whl")) for i in range(2))
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in (*REPO.iterdir(), *(REPO / "server").iterdir())) == before
