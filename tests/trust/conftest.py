"""A hostile repository: its .git/config (and the files it includes), its .gitattributes and its hooks name a
program for everything git can run. Each program only appends its name to a marker file, so a test can tell whether
any of them ran."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Every hook git knows (githooks(5)), plus fsmonitor's.
HOOKS = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit", "prepare-commit-msg",
    "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge", "pre-push", "pre-receive", "update",
    "proc-receive", "post-receive", "post-update", "reference-transaction", "push-to-checkout", "pre-auto-gc",
    "post-rewrite", "sendemail-validate", "fsmonitor-watchman", "p4-changelist", "p4-prepare-changelist",
    "p4-post-changelist", "p4-pre-submit", "post-index-change",
)  # fmt: skip

A_PY = "def helper(x):\n    return x + 1\n\n\ndef twice(x):\n    return helper(helper(x))\n"
B_PY = "from a import helper\n\n\ndef use(y):\n    return helper(y) * 2\n"


@dataclass
class Hostile:
    root: Path
    markers: Path  # the file every repository program appends to

    def ran(self) -> list[str]:
        return self.markers.read_text().splitlines() if self.markers.exists() else []


def plain_git(root: Path, *args: str) -> str:
    """The test's own git, unprotected: used to build the repository before it turns hostile, and to show that it
    is hostile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="T",
               GIT_COMMITTER_EMAIL="t@example.com")  # fmt: skip
    done = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    return done.stdout


def make_hostile(base: Path) -> Hostile:
    root = base / "ws"
    root.mkdir(parents=True)
    markers = base / "ran.txt"
    evil = base / "evil.sh"
    # Reads nothing: a filter process waiting for its handshake would otherwise wait for git, and git for it.
    evil.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> "{markers}"\nexit 0\n')
    evil.chmod(0o755)

    plain_git(root, "init", "-q", "-b", "main")
    (root / "a.py").write_text(A_PY)
    (root / "b.py").write_text(B_PY)
    (root / ".gitignore").write_text("*.log\n")
    # filter y has a process (which takes precedence over its clean/smudge), filter w only clean and smudge.
    (root / ".gitattributes").write_text("* diff=x filter=y merge=z\n*.txt filter=w\n")
    (root / "notes.txt").write_text("notes\n")
    plain_git(root, "add", "-A")
    plain_git(root, "commit", "-q", "-m", "first: helper and its caller")
    (root / "a.py").write_text(A_PY + "\n\ndef thrice(x):\n    return helper(twice(x))\n")
    (root / "b.py").write_text(B_PY + "\n\ndef use_more(y):\n    return use(y) + 1\n")
    plain_git(root, "commit", "-q", "-am", "second: thrice and use_more")
    # Uncommitted: an edit, and an untracked file.
    (root / "b.py").write_text(B_PY + "\n\ndef use_more(y):\n    return use(y) + 1  # UNCOMMITTED_MARKER\n")
    (root / "c.py").write_text("from b import use\n\nprint(use(1))\n")

    hooks_dir = base / "hooks"
    hooks_dir.mkdir()
    for folder in (root / ".git" / "hooks", hooks_dir):
        folder.mkdir(exist_ok=True)
        for name in HOOKS:
            hook = folder / name
            hook.write_text(f'#!/bin/sh\necho "hook {name}" >> "{markers}"\nexit 0\n')
            hook.chmod(0o755)

    # Half of it in .git/config, half in included files: both must count.
    (root / ".git" / "hostile.inc").write_text(
        f'[core]\n\tfsmonitor = "{evil} fsmonitor"\n'
        f'[filter "y"]\n\tclean = "{evil} clean"\n\tsmudge = "{evil} smudge"\n\tprocess = "{evil} process"\n'
        "\trequired = true\n"
    )
    (root / ".git" / "hostile-if.inc").write_text(f'[merge "z"]\n\tdriver = "{evil} merge %O %A %B"\n')
    with (root / ".git" / "config").open("a") as fh:
        fh.write(
            f"[include]\n\tpath = hostile.inc\n"
            f'[includeIf "gitdir:{root}/"]\n\tpath = hostile-if.inc\n'
            f'[core]\n\thooksPath = {hooks_dir}\n\tpager = "{evil} pager"\n\tsshCommand = "{evil} ssh"\n'
            f'\taskPass = "{evil} askpass"\n\teditor = "{evil} editor"\n'
            f'[filter "w"]\n\tclean = "{evil} clean-w"\n\tsmudge = "{evil} smudge-w"\n'
            f'[diff "x"]\n\ttextconv = "{evil} textconv"\n\tcommand = "{evil} extdiff"\n'
            f'[diff]\n\texternal = "{evil} external"\n'
            f'[credential]\n\thelper = "!{evil} credential"\n'
            f'[pager]\n\tlog = "{evil} pager-log"\n\tblame = "{evil} pager-blame"\n'
            f'[gpg]\n\tprogram = "{evil} gpg"\n[log]\n\tshowSignature = true\n'
            f'[protocol "ext"]\n\tallow = always\n'
            f'[remote "origin"]\n\turl = "ext::{evil} remote"\n\tpromisor = true\n'
        )
    return Hostile(root, markers)


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    return make_hostile(tmp_path)
