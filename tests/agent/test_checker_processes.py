"""Checker processes never outlive their check or the server, and a fix never writes outside its sandbox.

Every checker runs under a guardian (`fimble.agent.guardian`): a process that leaves the checker's group with
setsid() still dies when the check ends; when the server is killed (SIGKILL, SIGTERM) or its client closes stdin
while a checker runs, the checker's whole tree dies and the temporary worktree is removed within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import git
import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from fimble.agent.checkers import (
    SHUTTING_DOWN,
    Checker,
    Sandbox,
    SandboxError,
    run_command,
    sweep_stale_sandboxes,
)
from fimble.agent.diagnostics import Problem
from fimble.agent.fix_loop import FixRequest, run_fix
from fimble.settings import Settings
from tests.agent.conftest import RuntimeFactory, commit, worktrees
from tests.conftest import Recorder, open_doc, start_client

PY = sys.executable
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreaper and /proc are Linux's")

# A checker that starts a process which leaves its process group (setsid), writes both pids and where it runs,
# then exits at once (`quick`) or sleeps.
ESCAPING = (
    "import os, subprocess, sys, time, pathlib\n"
    "p = subprocess.Popen(['setsid', 'sleep', '300'])\n"
    "pathlib.Path(sys.argv[1]).write_text(f'{os.getpid()} {p.pid} {os.getcwd()}')\n"
    "time.sleep(0 if sys.argv[2] == 'quick' else 300)\n"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] != "Z"  # a zombie waiting for its reaper counts as dead
    except (OSError, IndexError):
        return False


def wait_for(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_pids(record: Path) -> tuple[int, int, Path]:
    checker, escapee, cwd = record.read_text().split(" ", 2)
    return int(checker), int(escapee), Path(cwd)


def test_a_setsid_escapee_dies_when_the_check_ends(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    result = run_command([PY, "-c", ESCAPING, str(record), "quick"], tmp_path, 30)
    assert result.ok, result.summary()
    checker, escapee, _ = read_pids(record)
    assert wait_for(lambda: not alive(escapee), 5) and not alive(checker)


def test_a_double_forked_daemon_dies_when_the_check_ends(tmp_path: Path) -> None:
    record = tmp_path / "pid"
    daemon = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)\n"
        "    os._exit(0)\n"
        "os.wait(); time.sleep(0.2)\n"
    )
    result = run_command([PY, "-c", daemon, str(record)], tmp_path, 30)
    assert result.ok, result.summary()
    pid = int(record.read_text())
    assert wait_for(lambda: not alive(pid), 5)


def test_a_timed_out_checker_takes_its_escapees_along(tmp_path: Path) -> None:
    record = tmp_path / "pids"
    started = time.monotonic()
    result = run_command([PY, "-c", ESCAPING, str(record), "slow"], tmp_path, 1.5)
    assert result.timed_out and time.monotonic() - started < 10
    checker, escapee, _ = read_pids(record)
    assert wait_for(lambda: not (alive(checker) or alive(escapee)), 5)


def test_escapees_of_a_sandbox_checker_die_too(repo: git.Repo, tmp_path: Path) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"a.py": "x = 1\n"}, "initial")
    record = tmp_path / "pids"
    with Sandbox(root / "a.py", "a.py", trusted=True) as box:
        result = box.run(Checker((PY, "-c", ESCAPING, str(record), "quick")), "", 30)
        assert result.ok, result.summary()
    _, escapee, cwd = read_pids(record)
    assert cwd == box.root
    assert wait_for(lambda: not alive(escapee), 5)
    assert worktrees(repo) == []


# -- paths -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rel", ["../../fimble-escape-test/x.py", "a/../../x.py", "/tmp/fimble-escape-test/x.py", "..", "", "C:/x.py"]
)
def test_a_path_out_of_the_sandbox_is_refused(rel: str) -> None:
    with Sandbox(None, rel, trusted=True) as box:
        with pytest.raises(SandboxError, match="not a path inside the project"):
            box.write("x = 1\n")
        assert not (box.root.parent.parent / "fimble-escape-test").exists()
        assert not (box.root.parent / "x.py").exists()
        assert list(box.root.rglob("*")) == []


def test_a_symlink_in_the_path_is_refused_not_followed(repo: git.Repo, tmp_path: Path) -> None:
    root = Path(repo.working_tree_dir or "")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "pkg").symlink_to(outside)  # committed: the worktree gets the link too
    commit(repo, {"real.py": "x = 1\n"}, "initial")
    repo.index.add(["pkg"])
    repo.index.commit("a link out")
    with Sandbox(root / "real.py", "real.py", trusted=True) as box:
        box.rel_path = "pkg/x.py"
        assert (box.root / "pkg").is_symlink()
        with pytest.raises(SandboxError, match="symbolic link"):
            box.write("x = 2\n")
    assert list(outside.iterdir()) == []


async def test_a_fix_for_a_path_out_of_the_workspace_fails_with_a_reason(scripted: RuntimeFactory) -> None:
    text = "x = 1\nval=fm(x)\n"
    settings = Settings(model="scripted", fix_checkers=((PY, "-c", "pass"),), fix_max_attempts=1)
    runtime, _ = scripted(["val=fn(x)"])
    request = FixRequest(
        uri="file:///ws/../../elsewhere/x.py",
        text=text,
        language_id="python",
        path="../../elsewhere/x.py",
        problem=Problem(text.index("fm"), text.index("fm") + 2, "undefined name 'fm'"),
        settings=settings,
        git_diff="",
    )
    outcome = await run_fix(runtime, request)
    assert outcome.status == "failed"
    assert "could not be checked" in outcome.message and "not a path inside the project" in outcome.message


def test_stale_sandboxes_of_a_dead_process_are_swept(repo: git.Repo, tmp_path: Path) -> None:
    """A server SIGKILLed between two checkers leaves its sandbox; the next one to make a sandbox removes it."""
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"a.py": "x = 1\n"}, "initial")
    code = (
        "import os, sys\nfrom pathlib import Path\nfrom fimble.agent.checkers import Sandbox\n"
        "box = Sandbox(Path(sys.argv[1]), 'a.py', trusted=True)\nprint(box.root, flush=True)\nos._exit(0)\n"
    )
    done = subprocess.run([PY, "-c", code, str(root / "a.py")], capture_output=True, text=True, timeout=60)
    left = Path(done.stdout.strip())
    assert left.exists() and len(worktrees(repo)) == 1, done.stderr
    assert sweep_stale_sandboxes() >= 1
    assert not left.parent.exists() and worktrees(repo) == []


def test_close_all_sandboxes_ends_running_checkers(repo: git.Repo, tmp_path: Path) -> None:
    """The server's exit path, in a process that stays alive (so the guardian is not the one cleaning up)."""
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"a.py": "x = 1\n"}, "initial")
    record = tmp_path / "pids"
    code = (
        "import json, sys, threading, time\nfrom pathlib import Path\n"
        "from fimble.agent.checkers import Checker, Sandbox, close_all_sandboxes\n"
        "file, record, script = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]\n"
        "box = Sandbox(file, 'a.py', trusted=True)\n"
        "checker = Checker((sys.executable, '-c', script, str(record), 'slow'))\n"
        "out = {}\n"
        "worker = threading.Thread(target=lambda: out.update(first=box.run(checker, '', 120)))\n"
        "worker.start()\n"
        "while not (record.exists() and record.read_text().count(' ') >= 2): time.sleep(0.05)\n"
        "started = time.monotonic(); close_all_sandboxes(); worker.join(20)\n"
        "try:\n    Sandbox(file, 'a.py', trusted=True); later = 'made'\nexcept Exception as exc:\n    later = str(exc)\n"
        "print(json.dumps({'s': time.monotonic() - started, 'first': out['first'].error, 'later': later,\n"
        "                  'root': box.root.exists()}), flush=True)\n"
        "time.sleep(2)\n"  # still alive while the test looks at the processes
    )
    proc = subprocess.Popen([PY, "-c", code, str(root / "a.py"), str(record), ESCAPING], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        result = json.loads(line)
        checker, escapee, _ = read_pids(record)
        assert proc.poll() is None  # the process is alive: close_all_sandboxes did the work, not the guardian
        assert not alive(checker) and wait_for(lambda: not alive(escapee), 5)
        assert result["s"] < 10 and result["first"] == result["later"] == SHUTTING_DOWN and not result["root"]
        assert worktrees(repo) == []
    finally:
        proc.wait(30)


# -- the server going away while a checker runs -------------------------------------------------------------------
@pytest_asyncio.fixture
async def busy_server(
    repo: git.Repo, tiny_model: Path, tmp_path: Path
) -> AsyncIterator[tuple[LanguageClient, Path, Path, asyncio.Task[Any]]]:
    """A real server whose fix is running ESCAPING (slow) in a worktree: (client, repo root, pid record, task)."""
    root = Path(repo.working_tree_dir or "")
    text = "x = 1\nval=fm(x)\n"
    commit(repo, {"calc.py": text}, "initial")
    record = tmp_path / "pids"
    options = {
        "fixCheckers": [[PY, "-c", ESCAPING, str(record), "slow"]],
        "checkerTimeoutMs": 120_000,
        "fixTimeBudgetMs": 180_000,
        "fixMaxAttempts": 1,
    }
    client, recorder = await start_client(model=tiny_model, root=root, init_options=options)
    await _until(lambda: any(s.get("state") == "ready" for s in recorder.status), recorder)
    uri = (root / "calc.py").as_uri()
    open_doc(client, uri, text)
    diagnostic = {
        "range": {"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 6}},
        "message": "undefined name 'fm'",
    }
    action = types.CodeAction(
        title="Fix with fimble", data={"fimble": "fimble.fix", "uri": uri, "version": 1, "diagnostic": diagnostic}
    )
    task = asyncio.ensure_future(client.code_action_resolve_async(action))
    await _until(lambda: record.exists() and record.read_text().count(" ") >= 2, recorder, 60)
    yield client, root, record, task
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    server = client._server
    if server is not None and server.returncode is None:
        server.kill()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(client.stop(), 10)


async def _until(check: Callable[[], bool], recorder: Recorder, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, recorder.status
        await asyncio.sleep(0.05)


def _all_gone(repo: git.Repo, record: Path) -> Callable[[], bool]:
    checker, escapee, tree = read_pids(record)

    def check() -> bool:
        return not alive(checker) and not alive(escapee) and not tree.parent.exists() and worktrees(repo) == []

    return check


async def _exited(client: LanguageClient, timeout: float) -> int | None:
    assert client._server is not None
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(client._server.wait(), timeout)
    return None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_server_killed_while_a_checker_runs(
    busy_server: tuple[LanguageClient, Path, Path, asyncio.Task[Any]], repo: git.Repo, sig: signal.Signals
) -> None:
    client, _, record, _ = busy_server
    _, _, tree = read_pids(record)
    assert tree.exists() and len(worktrees(repo)) == 1
    assert client._server is not None
    os.kill(client._server.pid, sig)
    assert await _exited(client, 15) == -sig
    gone = _all_gone(repo, record)
    assert await asyncio.to_thread(wait_for, gone, 10), (read_pids(record), worktrees(repo))


async def test_stdin_closed_while_a_checker_runs_exits_promptly(
    busy_server: tuple[LanguageClient, Path, Path, asyncio.Task[Any]], repo: git.Repo
) -> None:
    client, _, record, _ = busy_server
    assert client._server is not None and client._server.stdin is not None
    started = time.monotonic()
    client._server.stdin.close()
    code = await _exited(client, 30)  # the checker would run for 300 s, its timeout is 120 s
    assert code is not None, "the server is still running"
    assert time.monotonic() - started < 30
    assert await asyncio.to_thread(wait_for, _all_gone(repo, record), 10), (read_pids(record), worktrees(repo))
