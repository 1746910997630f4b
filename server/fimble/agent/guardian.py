"""The checker guardian: runs one checker command and makes sure nothing it started outlives it.

The server starts this small process instead of the checker itself (see `checkers.run_command`), as
`python -I -S .../fimble/agent/guardian.py OPTIONS -- COMMAND...` (by path and isolated: it needs only the standard
library, so it starts in a fraction of the time `-m fimble...` takes, and nothing in the environment or the current
folder can put other code in its place; `python -m fimble.agent.guardian` works too). It

- runs the checker in a process group of its own, with the server's pipes as its stdin and stdout;
- on Linux is a child subreaper (PR_SET_CHILD_SUBREAPER), so every orphan the checker leaves, including processes
  that called setsid() to leave the group, is reparented to it and can be found through /proc and killed;
- learns when the server dies, SIGKILL included: PR_SET_PDEATHSIG, plus polling getppid(), because the death
  signal also fires when the server *thread* that started it exits, and is not available outside Linux;
- when the checker exits, runs past its timeout, is stopped (SIGTERM: the server is closing) or the server dies,
  kills the checker's group and then every remaining descendant until none is left. When the server died it also
  removes the checker's temporary worktree, since no one else will.

Elsewhere than Linux the group kill is all there is (a process that calls setsid() escapes it).

It tells the server what happened on a separate pipe (`--status-fd`), one JSON object a line: {"pid": N} when the
checker started, then {"returncode": N, "timed_out": bool, "killed": N} or {"error": "..."}.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DEATH_SIGNAL = signal.SIGUSR1  # kept apart from SIGTERM, which the server sends on purpose
POLL_S = 0.25  # how often the parent is checked when no signal wakes the loop
KILL_BUDGET_S = 5.0  # a fork bomb cannot keep the guardian busy for longer


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """Live direct children of `pid`, from /proc/*/stat (Linux)."""
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid and not fields[0].startswith(b"Z"):
            out.append(int(name))
    return out


def _reap() -> list[tuple[int, int]]:
    """Collect every exited child (as subreaper, orphans too): (pid, wait status)."""
    done: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append((pid, status))


def kill_tree(group: int, linux: bool) -> int:
    """Kill the checker's process group, then (Linux) every descendant left, until none remains. Returns how many
    processes outside the group had to be killed one by one."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)
    _reap()
    if not linux:
        return 0
    own_group = os.getpgrp()
    killed = 0
    deadline = time.monotonic() + KILL_BUDGET_S
    while time.monotonic() < deadline:
        left = children(os.getpid())
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                pgid = os.getpgid(pid)
                if pgid != own_group:
                    os.killpg(pgid, signal.SIGKILL)  # an escapee's own group goes with it
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.01)  # let the kernel reparent the killed processes' children to us
        _reap()
    return killed


def remove_sandbox(sandbox: str, worktree: str | None, repo: str | None) -> None:
    """The server is gone: remove its temporary tree and the repository's record of the worktree."""
    shutil.rmtree(sandbox, ignore_errors=True)
    if repo is None or worktree is None:
        return
    # The fimble this file belongs to, whatever the environment says (the guardian runs isolated).
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if package_root not in sys.path:
        sys.path.insert(0, package_root)
    from pathlib import Path

    from fimble.agent.checkers import forget_worktree

    forget_worktree(Path(repo), Path(worktree))


def _status(fd: int, **fields: object) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (json.dumps(fields) + "\n").encode())


OPTIONS = ("--parent", "--timeout", "--cwd", "--status-fd", "--sandbox", "--worktree", "--repo")


def parse_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """`--option value` pairs up to `--`, then the command. (No argparse: it would double the start-up time.)"""
    options: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] not in OPTIONS or i + 1 >= len(argv):
            raise SystemExit(f"fimble guardian: unexpected argument {argv[i]!r}")
        options[argv[i][2:]] = argv[i + 1]
        i += 2
    missing = [o for o in OPTIONS[:4] if o[2:] not in options]
    if missing:
        raise SystemExit(f"fimble guardian: missing {', '.join(missing)}")
    return options, argv[i + 1 :]


def main(argv: list[str] | None = None) -> int:
    options, command = parse_args(sys.argv[1:] if argv is None else argv)
    parent = int(options["parent"])
    timeout = float(options["timeout"])
    status_fd = int(options["status-fd"])
    sandbox = options.get("sandbox")
    linux = sys.platform.startswith("linux")

    # Signals only wake the loop below (through the wakeup fd); the loop decides what they mean.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    stop = False

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_stop)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(DEATH_SIGNAL, lambda signum, frame: None)  # the loop checks getppid() itself
    if linux:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        _prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL)

    def orphaned() -> bool:
        return os.getppid() != parent

    def cleanup_if_orphaned() -> None:
        if orphaned() and sandbox:
            remove_sandbox(sandbox, options.get("worktree"), options.get("repo"))

    if orphaned():  # the server died before the death signal was armed
        cleanup_if_orphaned()
        return 0
    try:
        child = subprocess.Popen(command, cwd=options["cwd"], start_new_session=True)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        _status(status_fd, error=f"could not start {command[0] if command else ''!r}: {reason}")
        return 0
    _status(status_fd, pid=child.pid)
    # Only the checker keeps the server's pipes from here on: their end is the end of the checker's output.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    deadline = time.monotonic() + max(0.01, timeout)
    child_status: int | None = None
    timed_out = False
    while True:
        for pid, wait_status in _reap():
            if pid == child.pid:
                child_status = wait_status
        if child_status is not None or stop or orphaned():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        with contextlib.suppress(InterruptedError):
            select.select([wake_r], [], [], min(POLL_S, remaining))
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(wake_r, 4096)
    child.returncode = 0  # reaped here, not by Popen: keep it from waiting again
    killed = kill_tree(child.pid, linux)
    if child_status is not None:
        returncode = os.waitstatus_to_exitcode(child_status)
        _status(status_fd, returncode=returncode, timed_out=False, killed=killed)
    else:
        _status(status_fd, returncode=None, timed_out=timed_out, killed=killed)
    cleanup_if_orphaned()
    return 0


if __name__ == "__main__":
    sys.exit(main())
