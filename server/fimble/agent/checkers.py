"""User-configured checkers: argument lists (never a shell) run on a fix candidate inside a temporary git worktree.

The user's working tree is never written: the candidate goes into a detached worktree of HEAD (made with GitPython)
that also receives copies of the user's uncommitted and untracked files, so tests see the same code the editor has.
Every command runs with a timeout, in its own process group (so a test runner's children die with it), and with its
output capped: a checker that hangs, crashes or prints megabytes costs at most its timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

log = logging.getLogger(__name__)

OUTPUT_CAP = 64 * 1024  # bytes of checker output kept; the rest is read and dropped so the pipe never blocks
FEEDBACK_CHARS = 1500  # checker output fed back to the model
# Copying the user's uncommitted files into the worktree is bounded: a huge untracked folder (a virtualenv that
# .gitignore misses) must not turn a fix into a disk copy.
MAX_COPIED_FILES = 300
MAX_COPIED_BYTES = 50 * 1024 * 1024
GIT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int | None  # None: it could not start, or was killed on timeout
    output: str
    ms: float
    timed_out: bool = False
    truncated: bool = False
    error: str | None = None  # why it could not run at all

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None

    def summary(self) -> str:
        """Readable verdict plus the (shortened) output, for the model's next attempt and for the user."""
        if self.error:
            return self.error
        head = f"timed out after {self.ms / 1000:.1f} s" if self.timed_out else f"exit code {self.returncode}"
        out = self.output.strip()
        if len(out) > FEEDBACK_CHARS:
            out = out[: FEEDBACK_CHARS // 2] + "\n...\n" + out[-FEEDBACK_CHARS // 2 :]
        return f"{head}\n{out}" if out else head


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def run_command(
    args: Sequence[str],
    cwd: Path,
    timeout_s: float,
    stdin_text: str | None = None,
    cap: int = OUTPUT_CAP,
) -> CommandResult:
    """Run one argument list (no shell) with a timeout and a cap on kept output. Blocking: call it from a thread."""
    argv = tuple(args)
    started = time.monotonic()
    if not argv:
        return CommandResult(argv, None, "", 0.0, error="empty checker command")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=os.name == "posix",
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return CommandResult(argv, None, "", 0.0, error=f"could not start {argv[0]!r}: {reason}")

    kept = bytearray()
    total = 0

    def pump() -> None:
        nonlocal total
        assert proc.stdout is not None
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return
            total += len(chunk)
            room = cap - len(kept)
            if room > 0:
                kept.extend(chunk[:room])

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write((stdin_text or "").encode("utf-8"))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # a checker that does not read stdin may exit before we finish writing

    reader = threading.Thread(target=pump, name="fimble-checker-out", daemon=True)
    reader.start()
    writer = None
    if stdin_text is not None:
        writer = threading.Thread(target=feed, name="fimble-checker-in", daemon=True)
        writer.start()
    timed_out = False
    try:
        proc.wait(timeout=max(0.01, timeout_s))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Also on a normal exit: background children left in the group would otherwise hold the pipe open.
        _kill_group(proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    reader.join(timeout=2)
    if writer is not None:
        writer.join(timeout=1)
    with contextlib.suppress(OSError):
        if proc.stdout is not None:
            proc.stdout.close()
    ms = (time.monotonic() - started) * 1000
    text = bytes(kept).decode("utf-8", errors="replace")
    truncated = total > len(kept)
    if truncated:
        text += f"\n[... {total - len(kept)} more bytes of output dropped]"
    return CommandResult(argv, None if timed_out else proc.returncode, text, ms, timed_out, truncated)


@dataclass(frozen=True)
class Checker:
    args: tuple[str, ...]

    @property
    def label(self) -> str:
        """'ruff check', 'pytest -q': the program's name and its first words, for 'verified by ...'."""
        words = [PurePosixPath(self.args[0]).name] if self.args else []
        for arg in self.args[1:3]:
            if arg.startswith("-") or "{" in arg or "/" in arg or "." in arg:
                break
            words.append(arg)
        return " ".join(words)

    def argv(self, file: str, root: Path) -> list[str]:
        return [a.replace("{file}", file).replace("{root}", str(root)) for a in self.args]


def checkers_from_settings(lists: Sequence[Sequence[str]]) -> list[Checker]:
    return [Checker(tuple(str(a) for a in args)) for args in lists if args]


class Sandbox:
    """A temporary copy of the project in which checkers see the candidate: a detached git worktree of HEAD plus the
    user's uncommitted files, or (outside a repository) a temporary folder holding just the file. Always `close()`."""

    def __init__(self, file_path: Path | None, rel_path: str) -> None:
        self.rel_path = rel_path
        self.kind = "temporary folder"
        self._tmp = Path(tempfile.mkdtemp(prefix="fimble-check-"))
        self.root = self._tmp / "tree"
        self._repo: git.Repo | None = None
        self.closed = False
        try:
            self._make_worktree(file_path)
        except Exception as exc:  # no repository, no commit yet, git missing: checkers still get a folder
            log.info("no git worktree for checks (%s); using a plain temporary folder", exc)
            self._repo = None
            self.root.mkdir(parents=True, exist_ok=True)

    def _make_worktree(self, file_path: Path | None) -> None:
        if file_path is None:
            raise ValueError("the document is not a file on disk")
        repo = git.Repo(file_path.parent, search_parent_directories=True)
        top = Path(repo.working_tree_dir or "")
        try:
            self.rel_path = file_path.resolve().relative_to(top.resolve()).as_posix()
        except ValueError:
            repo.close()
            raise ValueError("the file is outside its repository's working tree") from None
        repo.git.worktree("add", "--detach", "--quiet", str(self.root), "HEAD", kill_after_timeout=GIT_TIMEOUT_S)
        self._repo = repo
        self.kind = "git worktree"
        self._copy_uncommitted(repo, top)

    def _copy_uncommitted(self, repo: git.Repo, top: Path) -> None:
        git_cmd = repo.git
        changed = git_cmd.ls_files("-m", "-o", "--exclude-standard", "-z", kill_after_timeout=GIT_TIMEOUT_S)
        deleted = git_cmd.ls_files("-d", "-z", kill_after_timeout=GIT_TIMEOUT_S)
        budget = MAX_COPIED_BYTES
        for count, rel in enumerate(p for p in changed.split("\0") if p):
            if count >= MAX_COPIED_FILES:
                log.info("worktree: stopped copying uncommitted files after %d", MAX_COPIED_FILES)
                break
            src = top / rel
            if src.is_symlink() or not src.is_file():
                continue
            size = src.stat().st_size
            if size > budget:
                continue
            budget -= size
            dst = self.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        for rel in (p for p in deleted.split("\0") if p):
            with contextlib.suppress(OSError):
                (self.root / rel).unlink()

    @property
    def file(self) -> Path:
        return self.root / self.rel_path

    def write(self, text: str) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.file, "w", encoding="utf-8", newline="") as fh:  # keep the document's own line endings
            fh.write(text)

    def run(self, checker: Checker, text: str, timeout_s: float) -> CommandResult:
        return run_command(checker.argv(self.rel_path, self.root), self.root, timeout_s, stdin_text=text)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        repo = self._repo
        if repo is not None:
            try:
                repo.git.worktree("remove", "--force", str(self.root), kill_after_timeout=GIT_TIMEOUT_S)
            except Exception as exc:
                log.warning("could not remove worktree %s: %s", self.root, exc)
        shutil.rmtree(self._tmp, ignore_errors=True)
        if repo is not None:
            with contextlib.suppress(Exception):
                repo.git.worktree("prune", kill_after_timeout=GIT_TIMEOUT_S)  # forget it even if remove failed
            repo.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
