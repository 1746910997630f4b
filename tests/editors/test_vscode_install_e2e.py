"""End-to-end: from a fresh VS Code (code-server) with the .vsix and no fimble anywhere, to ghost text, through the
install the extension offers (issue #18).

The user's side: no Python on PATH at first, then a Python 3.11+; a pip.conf naming a package index that is down,
then one pointing at a local wheel folder (tests/editors/wheelhouse.py), so the install runs offline. The driver
accepts the offer, sees one clear error with Retry for the missing Python and for pip failing, cancels an install,
then lets one run to the end (its named steps in the progress notification) and types until fimble's ghost text
shows, from the default model the install prepared. FIMBLE_SCREENSHOT_DIR receives vscode-install-*.png.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from .test_vscode_e2e import DRIVER, EXT_DIR, CodeServer, _tail, build_vsix, code_server, code_server_bin, find_chromium
from .wheelhouse import build_wheelhouse, clean_env, pip_config

pytestmark = [pytest.mark.editor, pytest.mark.timeout(1800)]
__all__ = ["code_server", "code_server_bin"]  # fixtures

INITIAL = "def add(a, b):\n    "
TYPED = "return a"
SYSTEM_PYTHON = "/usr/bin/python3"


def path_without_python(bin_dir: Path) -> Path:
    """A folder of links to every program in the system's bin folders except Python, pip and fimble."""
    bin_dir.mkdir()
    skip = re.compile(r"^(python|pip|pydoc|idle|2to3|fimble)")
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not Path(folder).is_dir():
            continue
        for program in sorted(Path(folder).iterdir()):
            link = bin_dir / program.name
            if not skip.match(program.name) and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return bin_dir


def _user_settings() -> dict[str, object]:
    return {
        "fimble.maxTokens": 12,
        "fimble.timeBudgetMs": 20000,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "security.workspace.trust.enabled": False,
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "extensions.ignoreRecommendations": True,
        "editor.inlineSuggest.enabled": True,
        "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
        "editor.suggestOnTriggerCharacters": False,
        "editor.wordBasedSuggestions": "off",
        "editor.minimap.enabled": False,
        "files.autoSave": "off",
        "git.enabled": False,
    }


def test_vscode_install_from_the_editor_then_ghost_text(code_server: CodeServer, tmp_path: Path) -> None:
    started = time.monotonic()
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip(f"{SYSTEM_PYTHON} is not there")
    wheelhouse = build_wheelhouse(SYSTEM_PYTHON)
    vsix = build_vsix()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    source = workspace / "main.py"
    source.write_text(INITIAL)

    # PATH: the system's programs but no Python and no fimble (the driver adds python3 later).
    bin_dir = path_without_python(tmp_path / "bin")
    # The user's pip configuration: an index that is down, at first.
    pip_conf = code_server.root / "xdg-config" / "pip" / "pip.conf"
    pip_conf.parent.mkdir(parents=True)
    pip_conf.write_text("[global]\nindex-url = http://127.0.0.1:9/simple\nretries = 1\ntimeout = 3\n")
    home = tmp_path / "home"
    home.mkdir()
    code_server.env = {
        **clean_env(code_server.env),
        # A new user's home, and this PATH as the extension host's: VS Code would take it from a login shell
        # (whose profile puts this machine's Pythons on it) unless it was started from a terminal (VSCODE_CLI).
        "HOME": str(home),
        "VSCODE_CLI": "1",
        "PATH": str(bin_dir),
        "XDG_CONFIG_DIRS": str(tmp_path / "no-system-config"),  # not this machine's /etc/xdg/pip/pip.conf
        "FIMBLE_CACHE_DIR": str(tmp_path / "fimble-cache"),
        "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
    }
    settings_file = code_server.user_data / "User" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps(_user_settings(), indent=2))

    code_server.install(vsix)
    code_server.start()
    result_file = tmp_path / "drive-result.json"
    shots = os.environ.get("FIMBLE_SCREENSHOT_DIR", "")
    env = {
        **os.environ,
        "FIMBLE_E2E_MODE": "install",
        "FIMBLE_E2E_URL": f"http://127.0.0.1:{code_server.port}/?folder={workspace}",
        "FIMBLE_E2E_FILE": source.name,
        "FIMBLE_E2E_TYPE": TYPED,
        "FIMBLE_E2E_RESULT": str(result_file),
        "FIMBLE_E2E_PROFILE": str(tmp_path / "chromium-profile"),
        "FIMBLE_E2E_NODE_MODULES": str(EXT_DIR / "node_modules"),
        "FIMBLE_E2E_TIMEOUT_MS": "150000",
        "FIMBLE_E2E_INSTALL_TIMEOUT_MS": "900000",
        "FIMBLE_E2E_PYTHON": SYSTEM_PYTHON,
        "FIMBLE_E2E_PYTHON_LINK": str(bin_dir / "python3"),
        "FIMBLE_E2E_PIP_CONF": str(pip_conf),
        "FIMBLE_E2E_GOOD_PIP_CONF": pip_config(wheelhouse),
        "FIMBLE_CHROMIUM": str(find_chromium()),
    }
    if shots:
        env["FIMBLE_SCREENSHOT_DIR"] = str(Path(shots).resolve())
    drive = subprocess.run(["node", str(DRIVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    storage = code_server.user_data / "User" / "globalStorage" / "fimble.fimble" / "server"

    def explain(what: str) -> str:
        return (
            f"{what}\n--- driver exit {drive.returncode}\n{drive.stderr[-6000:]}\n"
            f"--- driver result\n{json.dumps(result, indent=2)[-8000:]}\n"
            f"--- install.log\n{_tail(storage / 'install.log', 5000)}\n{code_server.diagnostics()}"
        )

    assert drive.returncode == 0 and result.get("ok"), explain("the browser session failed")
    install = result["install"]
    # The offer, before anything ran; the status bar offers it too.
    assert install["offer"]["buttons"] == ["Install", "Not now"], explain("the offer")
    assert "install" in install["statusBeforeInstall"]["text"], explain("the status bar before the install")
    # No Python: one clear message naming the fix, with Retry.
    assert "needs Python 3.11 or newer" in install["noPython"]["text"], explain("no Python")
    assert install["noPython"]["buttons"] == ["Retry", "Show Log"], explain("no Python: the buttons")
    # pip failing: one message that names the index and the way to work offline, with Retry.
    failure = install["pipFailed"]
    assert "127.0.0.1:9" in failure["text"] and "PIP_FIND_LINKS" in failure["text"], explain("pip failing")
    assert failure["buttons"] == ["Retry", "Show Log"], explain("pip failing: the buttons")
    errors = [t for t in install["toastsAfterPipFailure"] if t["buttons"] == ["Retry", "Show Log"]]
    assert len(errors) == 1, explain("one error message")
    assert "nothing of it was kept" in install["cancelled"]["text"], explain("the cancel")
    # The steps of the install that ran to the end, in the progress notification and the status bar.
    progress = " | ".join(install["progress"])
    for title in ("Creating the virtual environment", "Installing the packages", "Preparing the default model"):
        assert title in progress, explain(f"no step {title!r} in the progress notification")
    assert any(re.search(r"installing \d+%", s) for s in install["statusWhileInstalling"]), explain("status bar")
    # It is in place: a venv, the default model assembled, and nothing left of the failed and cancelled tries.
    current = json.loads((storage / "current.json").read_text())
    assert sorted(p.name for p in storage.glob("venv-*")) == [current["venv"]], explain("leftover venvs")
    assert current["model"] and Path(current["model"]).is_file(), explain("the default model")
    # Ghost text from the installed server.
    ghost = (result.get("ghostText") or "").replace("\u00a0", " ")
    assert ghost.strip(), explain("no ghost text")
    saved = source.read_text()
    assert saved.startswith(INITIAL + TYPED) and saved[len(INITIAL + TYPED) :].strip(), explain(f"Tab: {saved!r}")
    print(
        f"install e2e: {time.monotonic() - started:.0f} s in all, the install itself {current['seconds']} s; "
        f"ghost text {ghost!r}; steps: {progress}"
    )
