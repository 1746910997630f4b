"""End-to-end: next edits in fimble's VS Code extension, in a real VS Code (code-server + chromium).

The server is the real `fimble serve` with a scripted model that renames `radius` to `r` in the editable region
(tests/next_edit_server.py): rename the parameter on the def line by typing, see the next edit drawn on the return
line (the old name struck through, the new one as ghost text), Tab jumps there, Tab applies it, one Ctrl+Z undoes
the apply and only the apply; then Esc dismisses a suggestion, and `fimble.nextEdit: false` turns them off.

Needs what test_vscode_e2e.py needs (code-server, chromium, node); skips the same way. FIMBLE_DOCS_SCREENSHOTS (the
README's pictures: docs/images) or FIMBLE_SCREENSHOT_DIR, when set, receives vscode-next-edit.png.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TypedDict

import pytest

from .test_vscode_e2e import (
    EXT_DIR,
    QUIET_SETTINGS,
    REPO,
    CodeServer,
    build_vsix,
    code_server,
    code_server_bin,
    find_chromium,
)

__all__ = ["code_server", "code_server_bin"]  # fixtures

pytestmark = [pytest.mark.editor, pytest.mark.timeout(900)]

DRIVER = Path(__file__).resolve().parent / "vscode_e2e" / "next_edit.js"
SOURCE = 'import math\n\n\ndef area(radius):\n    """Area of a circle."""\n    return math.pi * radius * radius\n'
DEF_LINE = 4  # 1-based, as the driver's "Go to Line"
RETURN_LINE = 5  # 0-based, as the drawing's lines


def _scripted_server(folder: Path) -> Path:
    """An executable the extension starts as its server (`<it> serve [args]`): the scripted next-edit server."""
    script = folder / "fimble-next-edit"
    server_code = REPO / "server"
    script.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH={shlex.quote(str(server_code))}"${{PYTHONPATH:+:$PYTHONPATH}}" '
        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'tests' / 'next_edit_server.py'))} radius r "
        '"$@"\n'
    )
    script.chmod(0o755)
    return script


class DrawnLine(TypedDict):
    """A view line as the driver read it: its text, the spans struck through, the decoration text added."""

    text: str
    struck: list[str]
    added: list[str]


def _with_decorations(lines: list[DrawnLine]) -> dict[int, DrawnLine]:
    return {i: line for i, line in enumerate(lines) if line["struck"] or line["added"]}


def test_vscode_next_edit_jump_apply_undo_dismiss_off(code_server: CodeServer, tmp_path: Path) -> None:
    vsix = build_vsix()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    source = workspace / "circle.py"
    source.write_text(SOURCE)

    machine_settings_file = code_server.user_data / "Machine" / "settings.json"
    machine_settings_file.parent.mkdir(parents=True)
    machine_settings_file.write_text(json.dumps({"fimble.serverPath": str(_scripted_server(tmp_path))}, indent=2))
    settings_file = code_server.user_data / "User" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text(json.dumps({**QUIET_SETTINGS, "fimble.nextEdit": True}, indent=2))

    code_server.install(vsix)
    code_server.start()

    result_file = tmp_path / "drive-result.json"
    env: dict[str, str] = {
        **os.environ,
        "FIMBLE_E2E_URL": f"http://127.0.0.1:{code_server.port}/?folder={workspace}",
        "FIMBLE_E2E_FILE": source.name,
        "FIMBLE_E2E_OLD": "radius",
        "FIMBLE_E2E_NEW": "r",
        "FIMBLE_E2E_LINE": str(DEF_LINE),
        "FIMBLE_E2E_COLUMN": str(len("def area(") + 1),
        "FIMBLE_E2E_RESULT": str(result_file),
        "FIMBLE_E2E_PROFILE": str(tmp_path / "chromium-profile"),
        "FIMBLE_E2E_NODE_MODULES": str(EXT_DIR / "node_modules"),
        "FIMBLE_E2E_SETTINGS": str(settings_file),
        "FIMBLE_E2E_TIMEOUT_MS": "90000",
        "FIMBLE_CHROMIUM": str(find_chromium()),
    }
    # FIMBLE_DOCS_SCREENSHOTS=docs/images regenerates the README's picture of a next edit.
    shots = os.environ.get("FIMBLE_DOCS_SCREENSHOTS") or os.environ.get("FIMBLE_SCREENSHOT_DIR", "")
    if shots:
        env["FIMBLE_SCREENSHOT_DIR"] = str(Path(shots).resolve())
    drive = subprocess.run(["node", str(DRIVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}

    def explain(what: str) -> str:
        return (
            f"{what}\n--- driver exit {drive.returncode}\n{drive.stderr[-6000:]}\n"
            f"--- driver result\n{json.dumps(result, indent=2)[-8000:]}\n{code_server.diagnostics()}"
        )

    assert drive.returncode == 0 and result.get("ok"), explain("the browser session failed")
    ne = result["nextEdit"]

    # Drawn at its place: both uses on the return line struck through, the new name as ghost text after each, and
    # on the cursor's line (the def line) the hint that Tab jumps there.
    shown = _with_decorations(ne["shown"])
    assert set(shown) == {DEF_LINE - 1, RETURN_LINE}, explain("decorations on other lines than the def and return")
    ret = shown[RETURN_LINE]
    assert ret["text"] == "    return math.pi * radius * radius", explain("the return line changed before Tab")
    assert ret["struck"] == ["radius", "radius"], explain("the old name is not struck through twice")
    assert ret["added"] == ["r", "r"], explain("the new name is not shown as ghost text twice")
    hint = shown[DEF_LINE - 1]
    assert hint["text"] == "def area(r):" and hint["struck"] == [], explain("the def line is not as typed")
    assert any("Tab: jump to next edit (line 6)" in a for a in hint["added"]), explain("no jump hint on the def line")

    # Tab jumped to the first edit (line 6, column 22 is `radius`), still showing it, now with the apply hint.
    assert ne["cursorBeforeJump"].startswith(f"Ln {DEF_LINE}, Col"), explain("the cursor was not on the def line")
    assert ne["cursorAfterJump"] == "Ln 6, Col 22", explain("Tab did not jump to the edit")
    after_jump = _with_decorations(ne["afterJump"])
    assert after_jump[RETURN_LINE]["struck"] == ["radius", "radius"], explain("the jump dismissed the next edit")
    assert any("Tab: apply" in a for a in after_jump[RETURN_LINE]["added"]), explain("no apply hint at the edit")

    # Tab applied both edits; one undo took back the apply, and only it: the rename typed before stays.
    assert "    return math.pi * r * r" in ne["afterApply"].splitlines(), explain("not applied")
    assert "def area(r):" in ne["afterApply"].splitlines()
    assert source.read_text() == SOURCE.replace("def area(radius)", "def area(r)"), explain("not one undo step")

    # The undo brought the suggestion back; Esc took it away and nothing came back while the editor was idle.
    assert _with_decorations(ne["shownAgain"])[RETURN_LINE]["struck"] == ["radius", "radius"], explain("not again")
    assert not _with_decorations(ne["afterEscape"]), explain("Esc did not dismiss the next edit")

    # Turned off: nothing after an edit that paused, nothing when asked, and the server said why.
    assert not _with_decorations(ne["offAfterEdit"]), explain("a next edit with fimble.nextEdit false")
    assert not _with_decorations(ne["offAfterCommand"]), explain("a next edit shown when asked while off")
    assert "no next edit: next edits are turned off" in ne["offMessage"], explain("the server did not say it is off")
    if shots:
        assert (Path(shots) / "vscode-next-edit.png").is_file()
