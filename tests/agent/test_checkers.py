"""Checker commands (argument lists, timeouts, output caps) and the temporary worktree they run in."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import git

from fimble.agent.checkers import Checker, Sandbox, run_command
from tests.agent.conftest import commit, worktrees

PY = sys.executable


def test_exit_code_and_output(tmp_path: Path) -> None:
    ok = run_command([PY, "-c", "print('fine')"], tmp_path, 10)
    assert ok.ok and ok.output.strip() == "fine"
    bad = run_command([PY, "-c", "import sys; print('E1 broken'); sys.exit(3)"], tmp_path, 10)
    assert not bad.ok and bad.returncode == 3 and "E1 broken" in bad.summary()


def test_stdin_gets_the_candidate(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import sys; print(sys.stdin.read().upper())"], tmp_path, 10, stdin_text="abc")
    assert result.output.strip() == "ABC"


def test_hanging_checker_times_out_and_its_children_die(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    result = run_command([PY, "-c", script], tmp_path, 1.0)
    assert time.monotonic() - started < 8
    assert result.timed_out and not result.ok and "timed out after" in result.summary()
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its reaper counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_megabytes_of_output_are_capped(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import sys; sys.stdout.write('x' * 20_000_000)"], tmp_path, 30, cap=1000)
    assert result.returncode == 0 and result.truncated
    assert len(result.output) < 2000 and "more bytes of output dropped" in result.output
    assert len(result.summary()) < 2000


def test_missing_program_is_reported(tmp_path: Path) -> None:
    result = run_command(["definitely-not-a-program-xyz"], tmp_path, 5)
    assert not result.ok and result.error and "could not start" in result.error


def test_no_shell_is_involved(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import sys; print(sys.argv[1])", "$(touch pwned); `x`"], tmp_path, 10)
    assert result.output.strip() == "$(touch pwned); `x`"
    assert not (tmp_path / "pwned").exists()


def test_checker_label_and_placeholders(tmp_path: Path) -> None:
    ruff = Checker(("ruff", "check", "--stdin-filename", "{file}", "-"))
    assert ruff.label == "ruff check"
    assert ruff.argv("src/a.py", tmp_path) == ["ruff", "check", "--stdin-filename", "src/a.py", "-"]
    assert Checker(("/usr/bin/python3", "-m", "pytest")).label == "python3"


def test_worktree_has_candidate_and_uncommitted_files_and_is_removed(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"pkg/a.py": "A = 1\n", "pkg/gone.py": "G = 1\n"}, "initial")
    (root / "pkg/a.py").write_text("A = 2\n")
    (root / "pkg/new.py").write_text("N = 1\n")
    (root / "pkg/gone.py").unlink()
    with Sandbox(root / "pkg/a.py", "a.py", trusted=True) as box:
        assert box.kind == "git worktree" and box.rel_path == "pkg/a.py"
        assert (box.root / "pkg/new.py").read_text() == "N = 1\n"
        assert not (box.root / "pkg/gone.py").exists()
        box.write("A = 3\r\n")
        assert (box.root / "pkg/a.py").read_bytes() == b"A = 3\r\n"
        assert len(worktrees(repo)) == 1
        tmp_root = box.root
    assert worktrees(repo) == []
    assert not tmp_root.exists()
    assert (root / "pkg/a.py").read_text() == "A = 2\n"


def test_worktree_removed_even_when_checker_fails(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"a.py": "x = 1\n"}, "initial")
    try:
        with Sandbox(root / "a.py", "a.py", trusted=True) as box:
            box.run(Checker((PY, "-c", "raise SystemExit(1)")), "", 5)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert worktrees(repo) == []


def test_outside_a_repository_a_plain_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "loose.py").write_text("x = 1\n")
    with Sandbox(tmp_path / "loose.py", "loose.py", trusted=True) as box:
        assert box.kind == "temporary folder"
        box.write("x = 2\n")
        result = box.run(Checker((PY, "-c", "import sys; print(open(sys.argv[1]).read())", "{file}")), "", 10)
        assert result.output.strip() == "x = 2"
        folder = box.root
    assert not folder.exists()


def test_repository_without_commits_falls_back(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    (root / "a.py").write_text("x = 1\n")
    with Sandbox(root / "a.py", "a.py", trusted=True) as box:
        assert box.kind == "temporary folder"
    assert worktrees(repo) == []
