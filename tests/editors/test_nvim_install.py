"""End-to-end: the Neovim plugin installs its own server (issue #18), in a real headless Neovim with an empty data
folder, no fimble and (at first) no Python on $PATH, and the user's pip.conf pointing at a local wheel folder.

- `:FimbleInstall` builds this checkout into a venv under stdpath('data')/fimble, then the server starts from it and
  ghost text shows (the default model, prepared by the install);
- the bad inputs: no Python, pip failing, a cancel, a second :FimbleInstall while one runs; then lazy.nvim's
  `build` hook (emulated: its coroutine, resumed until done), with fake tiny packages so it is quick.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from . import conftest_nvim
from .conftest_nvim import NvimSession, save_screenshot
from .fake_packages import fake_wheelhouse, write_fake_fimble
from .test_vscode_install_e2e import SYSTEM_PYTHON, path_without_python
from .wheelhouse import build_wheelhouse, clean_env, pip_config

nvim_binary = conftest_nvim.nvim_binary
nvim_factory = conftest_nvim.nvim_factory

pytestmark = [pytest.mark.editor, pytest.mark.timeout(1500)]

DEMO = 'import math\n\n\ndef area(radius):\n    """Area of a circle."""\n    return math.pi * radius * radius\n'
TYPING = ["\ndef circumference(radius):\n", "return 2 * ", *"math.pi * radius", *" # ok"]

# Records the plugin's install events (User FimbleInstall) and notifications, as the user would have seen them.
WATCH = """
_G.fimble_install_events = {}
vim.api.nvim_create_autocmd('User', { pattern = 'FimbleInstall', callback = function(args)
  table.insert(_G.fimble_install_events, args.data)
end })
"""


@pytest.fixture
def new_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A machine as a new user has it: no fimble and no Python on $PATH, no pip settings of this machine's; the
    user's pip.conf (XDG_CONFIG_HOME/pip/pip.conf, which nvim_factory's XDG_CONFIG_HOME points at)."""
    kept = clean_env(dict(os.environ))
    for key in [k for k in os.environ if k not in kept]:
        monkeypatch.delenv(key)
    bin_dir = path_without_python(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "no-system-config"))
    pip_conf = tmp_path / "config" / "pip" / "pip.conf"
    pip_conf.parent.mkdir(parents=True)
    return {"bin": bin_dir, "pip_conf": pip_conf, "data": tmp_path / "data" / "nvim" / "fimble"}


def notes(s: NvimSession) -> list[str]:
    return [str(n[0]) for n in s.notifications() if "fimble" in str(n[0])]


def run_install(s: NvimSession, command: str, timeout: float) -> dict[str, object]:
    """Runs :FimbleInstall (or :FimbleUpdate) and waits for its outcome."""
    s.lua("require('fimble.install').last = nil")
    s.nvim.command(command)
    return dict(
        s.wait(
            lambda: s.lua("local i = require('fimble.install'); return (not i.running) and i.last or nil"),
            f"{command} to finish",
            timeout,
        )
    )


def venvs(data: Path) -> list[str]:
    return sorted(p.name for p in data.glob("venv-*"))


def test_fimble_install_then_ghost_text(nvim_factory: Callable[..., NvimSession], new_user: dict[str, Path]) -> None:
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.skip(f"{SYSTEM_PYTHON} is not there")
    wheelhouse = build_wheelhouse(SYSTEM_PYTHON)
    new_user["pip_conf"].write_text(pip_config(wheelhouse))
    s = nvim_factory(
        {
            "cmd": None,
            "settings": {"maxTokens": 16, "temperature": 0, "contextSources": [], "nThreads": 2},
            "debounce_ms": 30,
            "ghost_text": "extmarks",
        },
        files={"demo.py": DEMO},
    )
    s.lua(WATCH)
    s.nvim.command("edit demo.py")
    # Not installed: one message saying how, and the statusline says so; nothing is retried.
    s.wait(lambda: s.status() == "fimble: not installed", "the not-installed state")
    (told,) = notes(s)
    assert ":FimbleInstall" in told, told
    # No Python yet: one clear message, nothing created.
    outcome = run_install(s, "FimbleInstall", 60)
    assert outcome["kind"] == "error" and "needs Python 3.11 or newer" in str(outcome["message"]), outcome
    assert not venvs(new_user["data"])
    (new_user["bin"] / "python3").symlink_to(SYSTEM_PYTHON)

    outcome = run_install(s, "FimbleInstall", 900)
    assert outcome["kind"] == "done", (outcome, (new_user["data"] / "install.log").read_text()[-4000:])
    events = s.lua("return _G.fimble_install_events")
    steps = [e.get("step") for e in events if e.get("state") == "step"]
    assert steps[:2] == ["venv", "packages"] and steps[-3:] == ["install", "verify", "model"], steps
    percents = [e["percent"] for e in events if "percent" in e]
    assert percents == sorted(percents), percents
    assert any("installed" in n and "starting it" in n for n in notes(s)), notes(s)
    current = json.loads((new_user["data"] / "current.json").read_text())
    assert venvs(new_user["data"]) == [current["venv"]]
    assert current["source_id"].startswith("checkout:")
    # The server starts from the venv by itself; the ghost text comes from the model the install prepared.
    s.wait_ready()
    cmd = s.lua("return require('fimble.server').command()")
    assert cmd[0] == current["python"] and cmd[1:6] == ["-I", "-u", "-m", "fimble", "serve"], cmd
    assert s.lua("return require('fimble.server').command_source") == "installed"
    s.nvim.input("Go")
    suggestion = s.type_until_suggestion(TYPING, timeout=240)
    assert suggestion.strip()
    save_screenshot(s, "nvim-install-ghost-text")
    s.nvim.input("<Esc>")
    # :checkhealth fimble reports the install.
    s.nvim.command("checkhealth fimble")
    health = "\n".join(s.lines())
    assert re.search(r"fimble \S+ installed in .*venv-", health), health
    assert "--version`: fimble " in health, health
    # :FimbleInstall again: nothing to do. :FimbleUpdate reinstalls beside it, the server restarts from the new
    # venv, and the old venv goes once that server is up.
    s.nvim.command("FimbleInstall")
    s.wait(lambda: any("installed already" in n for n in notes(s)), "the already-installed message")
    outcome = run_install(s, "FimbleUpdate", 900)
    assert outcome["kind"] == "done", outcome
    updated = json.loads((new_user["data"] / "current.json").read_text())
    assert updated["venv"] != current["venv"] and updated["previous"] == current["venv"]
    s.wait_ready()
    s.wait(lambda: venvs(new_user["data"]) == [updated["venv"]], "the previous venv to be removed", 60)


def test_fimble_install_bad_input_and_the_lazy_build_hook(
    nvim_factory: Callable[..., NvimSession], new_user: dict[str, Path], tmp_path: Path
) -> None:
    wheel = write_fake_fimble(tmp_path / "dist")
    (new_user["bin"] / "python3").symlink_to(SYSTEM_PYTHON if Path(SYSTEM_PYTHON).is_file() else sys.executable)
    empty = tmp_path / "empty-wheels"
    empty.mkdir()
    new_user["pip_conf"].write_text(pip_config(empty))
    s = nvim_factory({"cmd": None, "enabled": False}, files={"a.py": "x = 1\n"})
    s.lua(WATCH)

    # pip failing (the wheel folder lacks what fimble needs): one message naming the fix; nothing kept.
    outcome = run_install(s, f"FimbleInstall {wheel}", 180)
    assert outcome["kind"] == "error" and outcome["code"] == "package-missing", outcome
    errors = [n for n in notes(s) if "pip found no" in n]
    assert len(errors) == 1 and "PIP_FIND_LINKS" in errors[0] and "install.log" in errors[0], notes(s)
    assert (new_user["data"] / "install.log").is_file(), "the log is kept"
    assert not venvs(new_user["data"]) and not (new_user["data"] / "current.json").exists()
    s.nvim.command("checkhealth fimble")
    health = "\n".join(s.lines())
    assert "the last install failed: pip found no" in health, health

    # A cancel while llama.cpp "compiles"; a second :FimbleInstall meanwhile is refused.
    slow = fake_wheelhouse(tmp_path / "slow-wheels", llama="sdist")
    new_user["pip_conf"].write_text(pip_config(slow))
    s.lua("vim.env.FAKE_BUILD_STEPS = '400'; vim.env.FAKE_BUILD_DELAY = '0.5'")
    s.lua("require('fimble.install').last = nil")
    s.nvim.command(f"FimbleInstall {wheel}")
    s.wait(
        lambda: s.lua("local r = require('fimble.install').running; return r and r.step == 'build'"),
        "the llama.cpp build",
        180,
    )
    assert s.lua("return require('fimble').status()").startswith("fimble: installing")
    s.nvim.command(f"FimbleInstall {wheel}")
    assert any("being installed already" in n for n in notes(s)), notes(s)
    s.nvim.command("FimbleInstallCancel")
    outcome = dict(s.wait(lambda: s.lua("return require('fimble.install').last"), "the cancel", 60))
    assert outcome["kind"] == "cancelled", outcome
    assert any("cancelled; nothing of it was kept" in n for n in notes(s)), notes(s)
    assert not venvs(new_user["data"])

    # lazy.nvim's build hook: it runs build() in a coroutine and shows what it yields.
    new_user["pip_conf"].write_text(pip_config(fake_wheelhouse(tmp_path / "good-wheels")))
    messages = s.lua(
        """
        local wheel = ...
        local msgs = {}
        local co = coroutine.create(function() return require('fimble.install').build({ source = wheel }) end)
        while coroutine.status(co) ~= 'dead' do
          local ok, msg = coroutine.resume(co)
          assert(ok, msg)
          if msg then table.insert(msgs, msg) end
        end
        return msgs
        """,
        str(wheel),
    )
    assert any(re.match(r"fimble: installing \d+% - ", m) for m in messages), messages
    current = json.loads((new_user["data"] / "current.json").read_text())
    assert venvs(new_user["data"]) == [current["venv"]]
    assert s.lua("return require('fimble.server').command()")[0] == current["python"]
    # A failing build() raises, so lazy.nvim marks the build failed.
    new_user["pip_conf"].write_text(pip_config(empty))
    failed = s.lua(
        "local ok, err = pcall(require('fimble.install').build, { source = ... }); return { ok, err }", str(wheel)
    )
    assert failed[0] is False and "pip found no" in failed[1], failed
    assert json.loads((new_user["data"] / "current.json").read_text())["venv"] == current["venv"], "the old one stays"
