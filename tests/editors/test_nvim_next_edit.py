"""End-to-end tests of next-edit suggestions in Neovim (editor-clients/nvim/lua/fimble/next_edit.lua): a real
headless Neovim with the plugin, and a real `fimble serve` whose model is scripted (tests/next_edit_server.py
answers every next-edit request by renaming `radius` to `r` in the editable region; completions get nothing).

Rename the parameter on the def line, see the other uses struck through with the new name beside them, jump there
with <Tab>, apply with <Tab> again, undo it in one step; <Esc> dismisses; turned off, nothing is asked.

Run:  .venv/bin/pytest tests/editors/test_nvim_next_edit.py -v
Screenshot:  FIMBLE_SCREENSHOT_DIR=/tmp/shots .venv/bin/pytest tests/editors/test_nvim_next_edit.py -k jump
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from . import conftest_nvim
from .conftest_nvim import REPO, SUGGESTION_TIMEOUT_S, NvimSession, save_screenshot

nvim_binary = conftest_nvim.nvim_binary  # fixtures
nvim_factory = conftest_nvim.nvim_factory

pytestmark = pytest.mark.editor

DEMO = '''import math


def area(radius):
    """Area of a circle."""
    return math.pi * radius * radius
'''
RETURN_LINE = "    return math.pi * radius * radius"
RENAMED_RETURN_LINE = "    return math.pi * r * r"

MARKS_LUA = """
local out = {}
for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, require('fimble.next_edit').ns, 0, -1, { details = true })) do
  local d = m[4]
  out[#out + 1] = {
    row = m[2], col = m[3], end_row = d.end_row, end_col = d.end_col, hl = d.hl_group,
    virt_text = d.virt_text, virt_text_pos = d.virt_text_pos, virt_lines = d.virt_lines,
  }
end
return out
"""


def scripted_server() -> list[str]:
    return [sys.executable, str(REPO / "tests" / "next_edit_server.py"), "radius", "r"]


def start(nvim_factory: Callable[..., NvimSession], **opts: Any) -> NvimSession:
    s = nvim_factory(
        {"cmd": scripted_server(), "debounce_ms": 30, "next_edit": {"debounce_ms": 50}, **opts},
        files={"demo.py": DEMO},
    )
    s.nvim.command("edit demo.py")
    s.wait_ready()
    return s


MARK_KEYS = ("row", "col", "end_row", "end_col", "hl", "virt_text", "virt_text_pos", "virt_lines")


def marks(s: NvimSession) -> list[dict[str, Any]]:
    """The next-edit extmarks of the current buffer (a detail Lua left out is None here)."""
    return [{key: m.get(key) for key in MARK_KEYS} for m in s.lua(MARKS_LUA)]


def rename_parameter(s: NvimSession) -> None:
    """Changes `radius` on the def line to `r`, typed in insert mode, and stays there."""
    s.nvim.command("normal! 4G0f(l")
    s.nvim.input("ciwr")
    s.wait(lambda: s.lines()[3] == "def area(r):" and s.mode() == "i", "the parameter to be renamed")


def shown_line(line: str, row_marks: list[dict[str, Any]]) -> str:
    """`line` as the marks show it: struck-through ranges left out, inline text put in at its column."""
    events = [(m["col"], 0, m) for m in row_marks if m["hl"] == "FimbleNextEditDelete"]
    events += [(m["col"], 1, m) for m in row_marks if m["virt_text_pos"] == "inline"]
    out, col = [], 0
    for pos, kind, m in sorted(events, key=lambda e: (e[0], e[1])):
        out.append(line[col:pos])
        col = max(col, pos)
        if kind == 0:
            col = m["end_col"]
        else:
            out.append("".join(chunk[0] for chunk in m["virt_text"]))
    out.append(line[col:])
    return "".join(out)


def wait_next_edit(s: NvimSession) -> list[dict[str, Any]]:
    return list(
        s.wait(
            lambda: s.lua("return require('fimble.next_edit').is_visible()") and marks(s),
            "the next edit on the return line",
            SUGGESTION_TIMEOUT_S,
        )
    )


def test_rename_shows_the_next_edit_tab_jumps_tab_applies_u_undoes(nvim_factory: Callable[..., NvimSession]) -> None:
    s = start(nvim_factory)
    rename_parameter(s)
    shown = wait_next_edit(s)

    # The other uses, on the return line (row 5): struck through, the new name beside them.
    diff = [m for m in shown if m["row"] == 5 or m["end_row"] == 5]
    deleted = [m for m in diff if m["hl"] == "FimbleNextEditDelete"]
    assert deleted, shown
    assert all(RETURN_LINE[m["col"] : m["end_col"]].strip() for m in deleted)
    inline = [m for m in diff if m["virt_text_pos"] == "inline"]
    assert inline and all(chunk[1] == "FimbleNextEditInsert" for m in inline for chunk in m["virt_text"]), shown
    assert shown_line(RETURN_LINE, diff) == RENAMED_RETURN_LINE
    # The cursor is on the def line: the hint there points at line 6.
    hint = [m for m in shown if m["virt_text_pos"] == "eol"]
    assert [(m["row"], m["virt_text"]) for m in hint] == [(3, [["⇥ next edit: line 6", "FimbleNextEditHint"]])]
    assert s.lines()[5] == RETURN_LINE, "nothing applied yet"
    shot = save_screenshot(s, "nvim-next-edit")
    if shot is not None:
        assert shot.stat().st_size > 1000

    # <Tab>: the cursor goes to the start of the first edit, the hint goes, the edit stays.
    jump_col = min(m["col"] for m in diff if m["row"] == 5)
    s.nvim.input("<Tab>")
    s.wait(lambda: s.cursor() == (6, jump_col), "<Tab> to jump to the edit")
    s.wait(lambda: not [m for m in marks(s) if m["virt_text_pos"] == "eol"], "the hint to go")
    assert s.lines()[5] == RETURN_LINE and s.mode() == "i"

    # <Tab> again: applied.
    s.nvim.input("<Tab>")
    s.wait(lambda: s.lines()[5] == RENAMED_RETURN_LINE, "<Tab> again to apply the edit")
    assert s.lines()[3] == "def area(r):"
    assert s.mode() == "i"
    s.wait(lambda: not marks(s), "the applied edit's marks to go")

    # One undo step: `u` restores the return line and keeps the rename.
    s.nvim.input("<Esc>")
    s.wait(lambda: s.mode() == "n", "normal mode")
    s.nvim.input("u")
    s.wait(lambda: s.lines()[5] == RETURN_LINE, "u to undo the applied edit")
    assert s.lines()[3] == "def area(r):", "the rename is a change of its own"


def test_esc_dismisses_and_the_command_asks_again(nvim_factory: Callable[..., NvimSession]) -> None:
    s = start(nvim_factory)
    rename_parameter(s)
    wait_next_edit(s)
    s.nvim.input("<Esc>")
    s.wait(lambda: not marks(s) and s.mode() == "n", "<Esc> to dismiss the next edit and leave insert mode")
    assert not s.lua("return require('fimble.next_edit').is_visible()")
    assert s.lines()[5] == RETURN_LINE
    assert s.lua("return vim.fn.maparg('<Tab>', 'n', false, true).buffer") != 1, "no key left mapped"

    # Asked for explicitly, in normal mode; applied by the command.
    s.nvim.command("FimbleNextEdit")
    wait_next_edit(s)
    s.nvim.command("FimbleNextEdit apply")
    s.wait(lambda: s.lines()[5] == RENAMED_RETURN_LINE, ":FimbleNextEdit apply")


def test_turned_off_asks_nothing(nvim_factory: Callable[..., NvimSession]) -> None:
    s = start(nvim_factory, next_edit=False, ghost_text="extmarks")
    rename_parameter(s)
    # The ghost-text request for the renamed text was answered (the server is there and sees the edit) ...
    s.wait(
        lambda: s.lua(
            "local r = require('fimble.ghost').last_result() return r and r.tick == vim.api.nvim_buf_get_changedtick(0)"
        ),
        "the ghost-text answer for the renamed line",
    )
    # ... and well past the next-edit debounce, nothing was asked or shown.
    time.sleep(1.0)
    assert s.lua("return require('fimble.next_edit').requests_sent") == 0
    assert not marks(s)
    s.nvim.input("<Esc>")
    assert "next edits are turned off" in s.command_output("FimbleNextEdit")
    assert not marks(s)
