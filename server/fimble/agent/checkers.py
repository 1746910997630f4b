"""User-configured checkers: argument lists (never a shell) run on a fix candidate inside a temporary git worktree.

The user's working tree is never written: the candidate goes into a detached worktree of HEAD (made through
`fimble.trust.safe_git`, so the repository's hooks and filters do not run) that also receives copies of the user's
uncommitted and untracked files, so tests see the same code the editor has; nothing is written outside the
sandbox's own temporary folder. Every command runs with a timeout and its output capped, under a guardian process
(`fimble.agent.guardian`) that kills everything the command started when it ends, times out, or the server goes
away: a checker that hangs, crashes, forks into the background or prints megabytes costs at most its timeout.
Untrusted workspaces run no checker at all. `close_all_sandboxes` is the server's exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from fimble.agent import guardian
from fimble.trust import safe_git
from fimble.trust.safe_git import UNTRUSTED, GitError

log = logging.getLogger(__name__)

OUTPUT_CAP = 64 * 1024  # bytes of checker output kept; the rest is read and dropped so the pipe never blocks
FEEDBACK_CHARS = 1500  # checker output fed back to the model
# Copying the user's uncommitted files into the worktree is bounded: a huge untracked folder (a virtualenv that
# .gitignore misses) must not turn a fix into a disk copy.
MAX_COPIED_FILES = 300
MAX_COPIED_BYTES = 50 * 1024 * 1024
GIT_TIMEOUT_S = 30.0
GUARDIAN_GRACE_S = 10.0  # past the checker's timeout before the server stops waiting for its guardian
T = TypeVar("T")


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


@dataclass(frozen=True)
class SandboxPaths:
    """What a guardian removes when the server dies while its checker runs."""

    folder: Path  # the fimble-check-* temporary folder
    worktree: Path | None = None  # the git worktree inside it
    repo: Path | None = None  # the repository it belongs to


# Every running checker (its guardian, or the checker itself where there is none) and every live sandbox, so that
# `close_all_sandboxes` can end them when the server exits.
_registry_lock = threading.RLock()
_running: set[subprocess.Popen[bytes]] = set()
_sandboxes: set[Sandbox] = set()
_closing = threading.Event()
SHUTTING_DOWN = "not run: fimble is shutting down"


def _kill_group(pid: int) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _guardian_argv(
    argv: Sequence[str], cwd: Path, timeout_s: float, status_fd: int, paths: SandboxPaths | None
) -> list[str]:
    # By path and isolated (-I: no PYTHON* variables, no current folder or user site on sys.path; -S: no site): it
    # needs only the standard library, and nothing in the environment or the folder can stand in for it.
    out = [sys.executable, "-I", "-S", guardian.__file__, "--parent", str(os.getpid())]
    out += ["--timeout", f"{timeout_s:.3f}", "--cwd", str(cwd), "--status-fd", str(status_fd)]
    if paths is not None:
        out += ["--sandbox", str(paths.folder)]
        if paths.worktree is not None and paths.repo is not None:
            out += ["--worktree", str(paths.worktree), "--repo", str(paths.repo)]
    return [*out, "--", *argv]


def _read_status(fd: int) -> dict[str, Any]:
    """Everything the guardian reported, merged. Non-blocking: a guardian that has not exited cannot stall us."""
    data = bytearray()
    os.set_blocking(fd, False)
    with contextlib.suppress(OSError):  # BlockingIOError included: all there is was read
        while chunk := os.read(fd, 65536):
            data.extend(chunk)
    status: dict[str, Any] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                status.update(item)
    return status


def run_command(
    args: Sequence[str],
    cwd: Path,
    timeout_s: float,
    stdin_text: str | None = None,
    cap: int = OUTPUT_CAP,
    sandbox: SandboxPaths | None = None,
) -> CommandResult:
    """Run one argument list (no shell) with a timeout and a cap on kept output. Blocking: call it from a thread.

    On POSIX the command runs under a guardian process (`fimble.agent.guardian`) that enforces the timeout and,
    when the command ends, is stopped, or the server dies, kills everything it started (on Linux including
    processes that left its process group); `sandbox` names what the guardian removes if the server dies."""
    argv = tuple(args)
    started = time.monotonic()
    if not argv:
        return CommandResult(argv, None, "", 0.0, error="empty checker command")
    if _closing.is_set():
        return CommandResult(argv, None, "", 0.0, error=SHUTTING_DOWN)
    guarded = os.name == "posix"
    status_r = status_w = -1
    launch = list(argv)
    try:
        if guarded:
            status_r, status_w = os.pipe()
            launch = _guardian_argv(argv, cwd, timeout_s, status_w, sandbox)
        proc = subprocess.Popen(
            launch,
            cwd=os.path.abspath(os.sep) if guarded else cwd,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=guarded,
            pass_fds=(status_w,) if guarded else (),
        )
    except OSError as exc:
        if status_r >= 0:
            os.close(status_r)
        reason = exc.strerror or str(exc)
        return CommandResult(argv, None, "", 0.0, error=f"could not start {launch[0]!r}: {reason}")
    finally:
        if status_w >= 0:
            os.close(status_w)  # the guardian holds the only write end: its exit ends the status
    with _registry_lock:
        _running.add(proc)

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
    status: dict[str, Any] = {}
    try:
        # The guardian keeps the timeout itself; waiting longer here is only a backstop against a broken guardian.
        proc.wait(timeout=max(0.01, timeout_s) + (GUARDIAN_GRACE_S if guarded else 0))
    except subprocess.TimeoutExpired:
        timed_out = True
        if guarded:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3)
    finally:
        if guarded:
            if proc.returncode is None:  # a guardian that did not go on SIGTERM
                _kill_group(proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            status = _read_status(status_r)
            os.close(status_r)
            if "returncode" not in status and isinstance(status.get("pid"), int):
                _kill_group(status["pid"])  # the guardian did not finish its job: end the checker's group from here
        else:
            # Also on a normal exit: background children left in the group would otherwise hold the pipe open.
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        with _registry_lock:
            _running.discard(proc)
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
    if not guarded:
        return CommandResult(argv, None if timed_out else proc.returncode, text, ms, timed_out, truncated)
    if "error" in status:
        return CommandResult(argv, None, "", ms, error=str(status["error"]))
    if status.get("killed"):
        log.info("checker %s: killed %d processes it left behind", argv[0], status["killed"])
    code = status.get("returncode")
    if timed_out or status.get("timed_out"):
        return CommandResult(argv, None, text, ms, True, truncated)
    if isinstance(code, int):
        return CommandResult(argv, code, text, ms, False, truncated)
    stopped = SHUTTING_DOWN if _closing.is_set() else "the checker was stopped before it finished"
    return CommandResult(argv, None, text, ms, truncated=truncated, error=stopped)


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


class SandboxError(Exception):
    """The candidate cannot be put into the sandbox (a path that leads out of it); the message says why."""


def _inside(root: Path, rel: str, *, make_parents: bool = False) -> Path:
    """`root / rel` for a relative path that stays inside `root`: no absolute path, no `..`, and no component that
    is a symbolic link (those could lead anywhere, and are refused rather than followed)."""
    pure = PurePosixPath(rel.replace("\\", "/") if os.name == "nt" else rel)
    parts = [p for p in pure.parts if p not in ("", ".")]
    if pure.is_absolute() or not parts or ".." in parts or re.match(r"[A-Za-z]:", parts[0]):  # C: is absolute too
        raise SandboxError(f"{rel!r} is not a path inside the project")
    path = root
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if make_parents and i < len(parts) - 1:
                path.mkdir()
            continue
        if stat.S_ISLNK(st.st_mode):
            raise SandboxError(f"{'/'.join(parts[: i + 1])} is a symbolic link; fimble does not write through one")
    return path


def _write_inside(root: Path, rel: str, data: bytes) -> None:
    path = _inside(root, rel, make_parents=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def forget_worktree(repo: Path, worktree: Path) -> None:
    """Remove a checker worktree and the repository's record of it (`git worktree remove --force` also works once
    the folder is gone). Only if that fails and the repository still lists it, `git worktree prune`, which also
    forgets other worktrees whose folders are missing. Only trusted workspaces ever get one."""

    def git(*args: str) -> str:
        return safe_git.run(args, repo, trusted=True, timeout=GIT_TIMEOUT_S)

    try:
        git("worktree", "remove", "--force", str(worktree))
        return
    except GitError as exc:
        reason = exc
    shutil.rmtree(worktree, ignore_errors=True)
    try:
        listed = f"worktree {worktree}\n" in git("worktree", "list", "--porcelain")
        if listed:
            log.info("git worktree remove %s failed (%s); pruning instead", worktree, reason)
            git("worktree", "prune")
    except GitError as exc:
        log.warning("could not remove worktree %s: %s", worktree, exc)


SANDBOX_PREFIX = "fimble-check-"
_OWNER = "owner.json"
_swept = threading.Event()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_sandboxes(tmp: Path | None = None) -> int:
    """Remove the sandboxes of fimble processes that died without cleaning up (SIGKILL between two checkers): the
    folders named `fimble-check-<pid>-*` whose pid is gone, and their worktrees. Returns how many were removed."""
    base = Path(tmp or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(base.glob(f"{SANDBOX_PREFIX}*-*"))
    except OSError:
        return 0
    for folder in entries:
        pid_text = folder.name[len(SANDBOX_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        try:
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
                continue
            owner = json.loads((folder / _OWNER).read_text("utf-8"))
        except (OSError, ValueError):
            owner = {}
        shutil.rmtree(folder, ignore_errors=True)
        repo, worktree = owner.get("repo"), owner.get("worktree")
        if isinstance(repo, str) and isinstance(worktree, str):
            forget_worktree(Path(repo), Path(worktree))
        removed += 1
    if removed:
        log.info("removed %d checker sandbox(es) left by fimble processes that died", removed)
    return removed


class Sandbox:
    """A temporary copy of the project in which checkers see the candidate: a detached git worktree of HEAD plus the
    user's uncommitted files, or (outside a repository) a temporary folder holding just the file. Always `close()`.

    Nothing is written outside its own temporary folder: the document's path is checked (`_inside`). In an untrusted
    workspace no git runs and no checker starts."""

    def __init__(self, file_path: Path | None, rel_path: str, *, trusted: bool) -> None:
        """Raises SandboxError once the server is shutting down."""
        self.rel_path = rel_path
        self.trusted = trusted
        self.kind = "temporary folder"
        if _closing.is_set():
            raise SandboxError(SHUTTING_DOWN)
        if not _swept.is_set():
            _swept.set()
            sweep_stale_sandboxes()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{SANDBOX_PREFIX}{os.getpid()}-"))
        self.root = self._tmp / "tree"
        self._repo: Path | None = None
        self.closed = False
        self._close_lock = threading.Lock()
        with _registry_lock:
            _sandboxes.add(self)
        try:
            self._make_worktree(file_path)
        except Exception as exc:  # no repository, no commit yet, git missing: checkers still get a folder
            log.info("no git worktree for checks (%s); using a plain temporary folder", exc)
            if self._repo is not None:
                forget_worktree(self._repo, self.root)
                self._repo = None
            self.kind = "temporary folder"
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True, exist_ok=True)
        if self.closed:  # close_all_sandboxes ran while the worktree was being made: remove what it missed
            self.closed = False
            self.close()

    @property
    def paths(self) -> SandboxPaths:
        return SandboxPaths(self._tmp, self.root if self._repo else None, self._repo)

    def _make_worktree(self, file_path: Path | None) -> None:
        if file_path is None:
            raise ValueError("the document is not a file on disk")
        if not self.trusted:
            raise ValueError(UNTRUSTED)
        top = safe_git.toplevel(file_path.parent, trusted=self.trusted)
        if top is None:
            raise ValueError("not in a git working tree")
        try:
            self.rel_path = file_path.resolve().relative_to(top).as_posix()
        except ValueError:
            raise ValueError("the file is outside its repository's working tree") from None
        # Written first: whoever finds this folder after a crash knows which repository to tell.
        owner = {"pid": os.getpid(), "repo": str(top), "worktree": str(self.root)}
        (self._tmp / _OWNER).write_text(json.dumps(owner), "utf-8")
        self._repo = top
        add = ["worktree", "add", "--detach", "--quiet", str(self.root), "HEAD"]
        safe_git.run(add, top, trusted=self.trusted, timeout=GIT_TIMEOUT_S)
        self.kind = "git worktree"
        self._copy_uncommitted(top)

    def _copy_uncommitted(self, top: Path) -> None:
        def ls(*args: str) -> list[str]:
            out = safe_git.run(["ls-files", *args, "-z"], top, trusted=self.trusted, timeout=GIT_TIMEOUT_S)
            return [p for p in out.split("\0") if p]

        changed = ls("-m", "-o", "--exclude-standard")
        deleted = ls("-d")
        budget = MAX_COPIED_BYTES
        for count, rel in enumerate(changed):
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
            try:
                _write_inside(self.root, rel, src.read_bytes())
            except (SandboxError, OSError) as exc:
                log.info("worktree: not copying %s: %s", rel, exc)
        for rel in deleted:
            with contextlib.suppress(SandboxError, OSError):
                _inside(self.root, rel).unlink()

    @property
    def file(self) -> Path:
        return _inside(self.root, self.rel_path)

    def write(self, text: str) -> None:
        """Put the candidate in place of the document (its own line endings kept). Raises SandboxError for a path
        that would lead out of the sandbox."""
        if self.closed:
            raise SandboxError(SHUTTING_DOWN)
        _write_inside(self.root, self.rel_path, text.encode("utf-8"))

    def run(self, checker: Checker, text: str, timeout_s: float) -> CommandResult:
        argv = checker.argv(self.rel_path, self.root)
        if not self.trusted:
            return CommandResult(tuple(argv), None, "", 0.0, error=f"checkers not run: {UNTRUSTED}")
        if self.closed:
            return CommandResult(tuple(argv), None, "", 0.0, error=SHUTTING_DOWN)
        return run_command(argv, self.root, timeout_s, stdin_text=text, sandbox=self.paths)

    def close(self) -> None:
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
            if self._repo is not None:
                forget_worktree(self._repo, self.root)
            shutil.rmtree(self._tmp, ignore_errors=True)
        with _registry_lock:
            _sandboxes.discard(self)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_all_sandboxes(wait_s: float = 3.0) -> None:
    """The server is exiting (stdin closed, SIGTERM): stop every running checker, whose guardian then kills all it
    started, and remove every live sandbox. Checkers asked for afterwards do not start."""
    _closing.set()
    with _registry_lock:
        running = list(_running)
        boxes = list(_sandboxes)
    for proc in running:
        with contextlib.suppress(OSError):
            if os.name == "posix":
                proc.terminate()  # the guardian's cue
            else:
                proc.kill()
    deadline = time.monotonic() + wait_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
    for box in boxes:
        box.close()


async def to_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """`asyncio.to_thread`, but on a daemon thread: interpreter exit (and `asyncio.run`'s executor shutdown) does
    not wait for it, so a checker still running when the client goes away cannot hold the server up until its
    timeout. `close_all_sandboxes` ends the checker itself."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, as to_thread does
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="fimble-checks", daemon=True).start()
    return await future
