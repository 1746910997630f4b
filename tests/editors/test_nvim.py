"""End-to-end tests of the Neovim plugin (editor-clients/nvim) with a real headless Neovim and the real
`fimble serve` running a tiny random-weight model.

Run:  .venv/bin/pytest tests/editors/test_nvim.py -v
Screenshot of the ghost text:  FIMBLE_SCREENSHOT_DIR=/tmp/shots .venv/bin/pytest tests/editors/test_nvim.py -k ghost
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from . import conftest_nvim
from .conftest_nvim import SHORT_TIMEOUT_S, NvimSession, default_settings, save_screenshot

# Fixtures (conftest_nvim.py is a plain module, so they are bound here explicitly).
nvim_binary = conftest_nvim.nvim_binary
nvim_factory = conftest_nvim.nvim_factory
nvim_tiny_model = conftest_nvim.nvim_tiny_model

pytestmark = pytest.mark.editor

DEMO = '''import math


def area(radius):
    """Area of a circle."""
    return math.pi * radius * radius
'''

# Typed after `Go` (a new last line) in chunks: each chunk gives the model another chance. The
# cursor line holds non-ASCII text, so positions differ between bytes, UTF-8 and UTF-16.
TYPING = ["\ndef label(radius):\n", 'return "périmètre ≈ " + ', *'str(radius) + " cm"', *" # ok"]


@pytest.fixture
def session(nvim_factory: Callable[..., NvimSession], nvim_tiny_model: Path) -> NvimSession:
    """Neovim editing demo.py with fimble attached and the model loaded."""
    s = nvim_factory(
        {"settings": default_settings(nvim_tiny_model), "debounce_ms": 30, "ghost_text": "extmarks"},
        files={"demo.py": DEMO},
    )
    s.nvim.command("edit demo.py")
    s.wait_ready()
    return s


def _show_suggestion(s: NvimSession) -> str:
    s.nvim.input("Go")
    return s.type_until_suggestion(TYPING)


def test_ghost_text_appears_as_extmarks(session: NvimSession) -> None:
    s = session
    suggestion = _show_suggestion(s)
    assert s.mode() == "i", "still in insert mode"
    marks = s.ghost_extmarks()
    assert len(marks) == 1
    _id, row, col, details = marks[0]
    crow, ccol = s.cursor()
    assert (row, col) == (crow - 1, ccol), "the ghost text sits at the cursor"
    first_line, *other_lines = suggestion.split("\n")
    if first_line:
        assert details["virt_text_pos"] == "inline"
        assert details["virt_text"][0][1] == "FimbleSuggestion"
        shown = "".join(chunk[0] for chunk in details["virt_text"] if chunk[1] == "FimbleSuggestion")
        assert shown == first_line.replace("\t", " " * 8) or first_line.startswith(shown)
    if other_lines:
        assert len(details["virt_lines"]) == len(other_lines)
    # Nothing was inserted into the buffer.
    assert "".join(TYPING[1:]).startswith(s.lines()[-1].strip())
    assert s.status().startswith("fimble: ready")
    # The statusline function, as a user would put it in 'statusline'.
    s.nvim.command("""set statusline=%f\\ %m%=%{v:lua.require'fimble'.status()}\\ \\ %l,%c\\ """)
    assert s.lua("return vim.api.nvim_eval_statusline(vim.o.statusline, {}).str").find("fimble: ready") > 0
    shot = save_screenshot(s, "nvim-ghost-text")
    if shot is not None:
        assert shot.stat().st_size > 1000


def test_accept_inserts_the_suggestion(session: NvimSession) -> None:
    s = session
    suggestion = _show_suggestion(s)
    before = s.lines()
    row, col = s.cursor()
    line = before[row - 1]
    s.nvim.input("<M-l>")
    expected_line_text = line[:col] + suggestion + line[col:]
    expected = before[: row - 1] + expected_line_text.split("\n") + before[row:]
    s.wait(lambda: s.lines() == expected, "the suggestion to be inserted")
    # The cursor ends after the inserted text and we are still typing.
    inserted = suggestion.split("\n")
    end_row = row + len(inserted) - 1
    end_col = (col if len(inserted) == 1 else 0) + len(inserted[-1].encode())
    assert s.cursor() == (end_row, end_col)
    assert s.mode() == "i"
    # The old ghost text is gone (a new suggestion may already be on its way for the new position).
    for _id, mrow, mcol, _details in s.ghost_extmarks():
        assert (mrow, mcol) == (end_row - 1, end_col)


def test_accept_word_keeps_the_rest(session: NvimSession) -> None:
    s = session
    suggestion = _show_suggestion(s)
    row, col = s.cursor()
    word = s.lua("return require('fimble.ghost').next_chunk(..., 'word')", suggestion)
    s.nvim.input("<M-Right>")
    s.wait(lambda: s.cursor() != (row, col), "the cursor to move past the accepted word")
    text = "\n".join(s.lines())
    assert word in text
    if word != suggestion:
        rest = s.wait(lambda: s.suggestion(), "the rest of the suggestion to stay visible")
        assert suggestion == word + rest


def test_dismiss_clears_ghost_text(session: NvimSession) -> None:
    s = session
    _show_suggestion(s)
    before = s.lines()
    s.nvim.input("<C-]>")
    s.wait(lambda: not s.ghost_extmarks(), "the ghost text to be dismissed")
    assert s.lines() == before
    assert s.mode() == "i"


def test_typing_and_leaving_insert_mode_clear_ghost_text(session: NvimSession) -> None:
    s = session
    suggestion = _show_suggestion(s)
    # Type a character the suggestion does not start with: the old ghost text must go at once.
    char = "Z" if not suggestion.startswith("Z") else "Q"
    row, col = s.cursor()
    s.nvim.input(char)
    s.wait(lambda: s.cursor() == (row, col + 1), "the typed character")
    for _id, mrow, mcol, _details in s.ghost_extmarks():
        # Only a new suggestion, at the new cursor position, may be shown.
        assert (mrow, mcol) == (row - 1, col + 1)
    # ... and a new request follows the debounce.
    s.type_until_suggestion(list("adius)"))
    s.nvim.input("<Esc>")
    s.wait(lambda: s.mode() == "n" and not s.ghost_extmarks(), "leaving insert mode to clear the ghost text")


def test_explain_opens_floating_window(session: NvimSession) -> None:
    s = session
    s.nvim.command("4,6FimbleExplain")
    float_text = s.wait(
        lambda: s.lua(
            """
            local e = require('fimble.explain').last
            if not (e and e.done and e.win and vim.api.nvim_win_is_valid(e.win)) then return nil end
            if vim.api.nvim_win_get_config(e.win).relative == '' then return nil end
            return table.concat(vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(e.win), 0, -1, false), '\\n')
            """
        ),
        "the explanation floating window",
        timeout=180,
    )
    assert float_text.strip()
    assert "failed" not in float_text, float_text
    assert "not running" not in float_text, float_text
    ft = s.lua("return vim.bo[vim.api.nvim_win_get_buf(require('fimble.explain').last.win)].filetype")
    assert ft == "markdown"
    # It was streamed: fimble/explanation notifications filled the window before the response.
    assert s.lua("return require('fimble.explain').last.deltas or 0") > 0
    save_screenshot(s, "nvim-explain")
    # q closes it.
    s.nvim.input("q")
    s.wait(lambda: s.lua("return require('fimble.explain').last.win == nil"), "q to close the explanation")
    # Without a range: an empty range at the cursor (the server explains the enclosing definition).
    s.nvim.command("normal! 6G")
    s.nvim.command("FimbleExplain")
    second = s.wait(
        lambda: s.lua("local e = require('fimble.explain').last; return e and e.done and e.win and e.text or nil"),
        "the explanation of the code at the cursor",
        timeout=180,
    )
    assert second.strip() and "failed" not in second, second


def test_status_command_and_statusline(session: NvimSession, nvim_tiny_model: Path) -> None:
    s = session
    _show_suggestion(s)  # at least one completion: latency is known
    line = s.status()
    assert line.startswith("fimble: ready"), line
    assert len(line) <= 30
    out = s.command_output("FimbleStatus")
    assert "state:" in out and "ready" in out
    assert "model:" in out
    assert "latency:" in out
    assert "client:" in out and "initialized" in out


def test_checkhealth(session: NvimSession) -> None:
    s = session
    s.nvim.command("checkhealth fimble")
    text = "\n".join(s.lines())
    assert "--version`: fimble " in text, text
    assert "ERROR" not in text, text
    assert "model:" in text


# A project that ships a `fimble` package: run by `python -m fimble` whenever the project is its working directory
# (Python puts that first on sys.path). It leaves a marker and exits.
SHADOW = "import pathlib\npathlib.Path({marker!r}).write_text('the workspace ran code')\nraise SystemExit(7)\n"


def test_a_project_cannot_shadow_the_server(
    nvim_factory: Callable[..., NvimSession], nvim_tiny_model: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "workspace-code-ran"
    s = nvim_factory({"settings": default_settings(nvim_tiny_model)}, files={"demo.py": DEMO})
    shadow = s.workdir / "fimble"
    shadow.mkdir()
    for name in ("__init__.py", "__main__.py"):
        (shadow / name).write_text(SHADOW.format(marker=str(marker)))
    # Neovim's own working directory is the project: :checkhealth runs `python -m fimble --version` too.
    s.nvim.command("checkhealth fimble")
    health = "\n".join(s.lines())
    assert "--version`: fimble " in health, health
    assert "no per-project configuration" in health, health
    s.nvim.command("edit demo.py")
    s.wait_ready()
    assert not marker.exists(), marker.read_text()
    # The server was still given the project as its workspace.
    root = s.lua("return vim.lsp.get_clients({ name = 'fimble' })[1].config.root_dir")
    assert Path(root) == s.workdir


def test_missing_server_notifies_once_and_backs_off(
    nvim_factory: Callable[..., NvimSession], nvim_tiny_model: Path
) -> None:
    s = nvim_factory(
        {
            "cmd": ["/nonexistent/fimble", "serve"],
            "settings": default_settings(nvim_tiny_model),
            "retry": {"max_retries": 3, "base_delay_ms": 100, "max_delay_ms": 400},
        },
        files={"a.py": "x = 1\n"},
    )
    s.nvim.command("edit a.py")
    s.wait(lambda: s.lua("return require('fimble.server').retry.gave_up"), "the retries to give up")
    notes = [n for n in s.notifications() if "fimble" in str(n[0])]
    assert len(notes) == 1, notes
    assert "/nonexistent/fimble" in notes[0][0]
    assert s.status() == "fimble: failed"
    # Typing does not block or raise without a server.
    s.nvim.input("ihello<Esc>")
    s.wait(lambda: s.lines()[0].startswith("hello"), "typing to work without a server")


def test_crashing_server_is_retried_with_backoff(nvim_factory: Callable[..., NvimSession], tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)\n")

    s = nvim_factory(
        {
            "cmd": [sys.executable, str(script)],
            "retry": {"max_retries": 2, "base_delay_ms": 100, "max_delay_ms": 400},
        },
        files={"a.py": "x = 1\n"},
    )
    s.nvim.command("edit a.py")
    s.wait(
        lambda: s.lua("return require('fimble.server').retry.gave_up"),
        "the retries to give up",
        timeout=SHORT_TIMEOUT_S * 2,
    )
    assert s.lua("return require('fimble.server').retry.attempts") == 3
    notes = [n for n in s.notifications()]
    assert len(notes) == 1, notes
    assert "exited with code 3" in notes[0][0]
    # Neovim's own "Client quit with exit code" warning (once per attempt) is not shown.
    assert "quit with exit code" not in s.command_output("messages")


def test_explain_code_action_uses_the_floating_window(session: NvimSession) -> None:
    s = session
    s.nvim.command("normal! 4GV6G")
    s.lua("vim.lsp.buf.code_action({ apply = true, filter = function(a) return a.title:match('Explain') ~= nil end })")
    text = s.wait(
        lambda: s.lua("local e = require('fimble.explain').last; return e and e.done and e.win and e.text or nil"),
        "the explanation from the code action",
        timeout=180,
    )
    assert text.strip() and "failed" not in text, text


SLOW_SERVER = """
import asyncio, sys
from lsprotocol import types
from pygls.lsp.server import LanguageServer

DELAY, LOG = float(sys.argv[1]), sys.argv[2]
server = LanguageServer("slow-fimble", "0", text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
calls = 0


def log(line):
    with open(LOG, "a") as f:
        f.write(line + "\\n")


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION)
async def inline(ls, params):
    global calls
    calls += 1
    n = calls
    log(f"start {n} {params.position.line}:{params.position.character}")
    try:
        await asyncio.sleep(DELAY)
    except asyncio.CancelledError:
        log(f"cancelled {n}")
        raise
    log(f"answer {n}")
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=f"SLOW{n}")])


server.start_io()
"""


def test_slow_server_never_blocks_and_drops_stale_answers(
    nvim_factory: Callable[..., NvimSession], tmp_path: Path
) -> None:
    """A model that needs 3 s per suggestion: typing stays instant, older requests are cancelled and
    only the answer for the current text is shown."""
    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    log = tmp_path / "slow.log"
    s = nvim_factory({"cmd": [sys.executable, str(script), "3", str(log)], "debounce_ms": 20}, files={"a.py": ""})
    s.nvim.command("edit a.py")
    s.wait(lambda: s.lua("return require('fimble.server').get_client() ~= nil"), "the slow server to start")
    s.nvim.input("ix")
    s.wait(lambda: log.exists() and "start 1" in log.read_text(), "the first request")
    # While the server "generates": Neovim answers at once and typing goes on.
    t0 = time.monotonic()
    s.nvim.input("yz")
    s.wait(lambda: s.lines() == ["xyz"], "typing during generation")
    assert s.lua("return 1") == 1
    assert time.monotonic() - t0 < 2.5, "typing was blocked by the pending request"
    # Only the latest request is answered on screen, at the current cursor.
    text = s.wait_suggestion(timeout=60)
    assert s.ghost_extmarks()[0][1:3] == [0, 3]
    lines = log.read_text().splitlines()
    last = max(int(line.split()[1]) for line in lines if line.startswith("start"))
    assert text == f"SLOW{last}", lines
    assert any(line.startswith("cancelled") for line in lines), lines
