"""Lua unit tests of the Neovim plugin, each run by a headless `nvim --clean -l` (no server needed):

- builtin_0_12_spec.lua: the Neovim 0.12+ branch, with vim.lsp.inline_completion stubbed;
- ghost_spec.lua: the extmark ghost text (0.10/0.11) against a fake LSP client;
- server_spec.lua: where the server is started (the plugin folder, never the project) and with what;
- next_edit_spec.lua: next-edit suggestions (the extmark plan, the keys, stale answers, one undo step).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from . import conftest_nvim
from .conftest_nvim import PLUGIN_DIR

nvim_binary = conftest_nvim.nvim_binary  # fixture

pytestmark = pytest.mark.editor

SPECS = sorted(p.name for p in (PLUGIN_DIR / "tests").glob("*_spec.lua"))


def test_specs_are_found() -> None:
    assert {"builtin_0_12_spec.lua", "ghost_spec.lua", "next_edit_spec.lua", "server_spec.lua"} <= set(SPECS)


@pytest.mark.parametrize("spec", SPECS)
def test_lua_spec(nvim_binary: str, spec: str, tmp_path: Path) -> None:
    env_dirs = {f"XDG_{k}_HOME": str(tmp_path / k.lower()) for k in ("CONFIG", "DATA", "STATE", "CACHE")}
    result = subprocess.run(
        [nvim_binary, "--headless", "--clean", "-n", "-i", "NONE", "-l", str(PLUGIN_DIR / "tests" / spec)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, **env_dirs},
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "0 failure(s)" in output, output
    assert "FAIL" not in output, output
