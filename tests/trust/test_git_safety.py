"""No git invocation fimble makes can run a program the workspace chose, and an untrusted workspace runs no git.

The hostile repository (conftest) names a program for every hook, driver, filter, pager, helper and transport; each
program leaves a line in a marker file. Every fimble path that runs git runs here against it, in process, through
the CLI and through the real server, and must still work (hunks, blame, callers, the checker's worktree) while the
marker file stays empty.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from fimble.agent import history
from fimble.agent.checkers import Checker, Sandbox
from fimble.agent.context import EngineContext
from fimble.context.engine import ContextEngine
from fimble.index.gitinfo import GitInfo
from fimble.trust import safe_git
from tests.conftest import Recorder, open_doc, start_client
from tests.trust.conftest import Hostile, make_hostile, plain_git

PY = sys.executable
SERVER = Path(__file__).resolve().parents[2] / "server" / "fimble"


def test_the_fixture_is_hostile_to_plain_git(hostile: Hostile) -> None:
    """Without fimble's protection the same commands run the repository's programs: the markers below can fail."""
    root = hostile.root
    plain_git(root, "diff", "HEAD")  # fsmonitor, then the filter process (which fails: it takes precedence)
    no_process = ("-c", "filter.y.process=", "-c", "filter.y.required=false")
    plain_git(root, *no_process, "diff", "HEAD")  # external diff
    plain_git(root, "hash-object", "notes.txt")  # clean filter
    plain_git(root, *no_process, "blame", "a.py")  # textconv
    plain_git(root, *no_process, "worktree", "add", "--detach", str(root.parent / "plain-wt"), "HEAD")  # smudge, hooks
    ran = " ".join(hostile.ran())
    for program in ("fsmonitor", "process", "clean-w", "extdiff", "textconv", "smudge-w", "hook post-checkout",
                    "hook reference-transaction"):  # fmt: skip
        assert program in ran


def test_override_list_covers_every_driver_the_config_defines() -> None:
    entries = [
        ("file:.git/config", "diff.x.textconv", "evil"),
        ("file:.git/hostile.inc", "filter.a.b.clean", "evil"),  # a subsection may hold dots
        ("file:.git/config", "merge.Z.driver", "evil"),  # and capitals
        ("file:.git/config", "credential.https://example.com.helper", "evil"),
        ("file:.git/config", "protocol.ext.allow", "always"),
        ("file:.git/config", "pager.log", "evil"),
        ("file:.git/config", "core.bare", "false"),
        ("file:.git/config", "filter.a.b.smudge", "evil"),
    ]
    pairs = dict(safe_git.driver_overrides(entries))
    assert pairs["diff.x.textconv"] == "" and pairs["diff.x.command"] == ""
    assert pairs["filter.a.b.clean"] == pairs["filter.a.b.smudge"] == pairs["filter.a.b.process"] == ""
    assert pairs["filter.a.b.required"] == "false"
    assert pairs["merge.Z.driver"] == ""
    assert pairs["credential.https://example.com.helper"] == ""
    assert pairs["protocol.ext.allow"] == "never"
    assert pairs["pager.log"] == "false"
    assert not any(k.startswith("core.") for k in pairs)
    parsed = safe_git.parse_config_list(b"file:.git/config\0diff.x.textconv\nevil cmd\0command line:\0core.bare\0")
    assert parsed == [("file:.git/config", "diff.x.textconv", "evil cmd"), ("command line:", "core.bare", "")]


def test_every_git_path_in_process(hostile: Hostile) -> None:
    root = hostile.root
    git = GitInfo.discover(root)
    assert git is not None and git.repo_root == root.resolve()
    assert {"a.py", "b.py", "c.py", ".gitattributes"} <= set(git.list_files() or [])
    assert git.ignored(["x.log", "a.py"]) == {"x.log"}
    assert git.head() is not None
    hunks = git.diff_hunks()
    assert any("UNCOMMITTED_MARKER" in line for h in hunks["b.py"] for line in h.lines)
    assert git.co_changes()["a.py"]["b.py"] >= 2

    engine = ContextEngine(root, cache_file=False)
    try:
        stats = engine.index_now()
        assert stats is not None and stats.source == "git" and stats.indexed >= 3
        a_text = (root / "a.py").read_text()
        callers = EngineContext(engine).callers((root / "a.py").as_uri(), a_text, "python", "helper")
        assert any("b.py" in c.path for c in callers), callers  # git grep found the caller
    finally:
        engine.close()

    buffer = (root / "a.py").read_text() + "\n# edited in the editor\n"
    assert "+# edited in the editor" in history.recent_diff(root / "a.py", buffer, trusted=True)
    commits = history.line_commits(root / "a.py", buffer, 1, 9, trusted=True)
    assert {c.subject for c in commits} == {"first: helper and its caller", "second: thrice and use_more"}
    latest = history.file_log(root / "a.py", trusted=True)[0]
    assert latest.subject == "second: thrice and use_more"

    record = "import os, sys; print(os.getcwd()); print(open(sys.argv[1]).read())"
    with Sandbox(root / "a.py", "a.py", trusted=True) as box:
        assert box.kind == "git worktree"
        assert "UNCOMMITTED_MARKER" in (box.root / "b.py").read_text()  # uncommitted edits copied
        assert (box.root / "c.py").exists()  # and untracked files
        box.write("def helper(x):\n    return x + 2\n")
        result = box.run(Checker((PY, "-c", record, "{file}")), "", 20)
        assert result.ok, result.summary()
        assert result.output.splitlines()[0] == str(box.root) and "x + 2" in result.output
        tree = box.root
    assert not tree.exists()
    assert plain_git(root, "worktree", "list").count("\n") == 1

    assert hostile.ran() == []


def test_cli_complete_runs_no_repository_program(hostile: Hostile, tiny_model: Path) -> None:
    env = {**os.environ, "FIMBLE_N_THREADS": "1", "FIMBLE_N_CTX": "2048"}
    done = subprocess.run(
        [PY, "-m", "fimble", "complete", f"{hostile.root / 'a.py'}:2:5", "--model", str(tiny_model), "--json",
         "--show-prompt"],
        cwd=hostile.root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    prompt = json.loads(done.stdout)["prompt"]
    assert "UNCOMMITTED_MARKER" in prompt  # b.py's uncommitted hunk, from git diff
    assert hostile.ran() == []


def test_untrusted_workspace_runs_no_git(hostile: Hostile, tmp_path: Path) -> None:
    """In process, with trusted=False nothing is started: a git first on PATH would record any run."""
    fake = _fake_git(tmp_path)
    code = (
        "from pathlib import Path\n"
        "from fimble.agent import history\n"
        "from fimble.agent.context import _grep\n"
        "from fimble.context.engine import ContextEngine\n"
        "from fimble.index.gitinfo import GitInfo\n"
        "import sys\n"
        "root = Path(sys.argv[1]); trusted = sys.argv[2] == 'yes'\n"
        "engine = ContextEngine(root, cache_file=False, trusted=trusted); stats = engine.index_now(); engine.close()\n"
        "print(stats.source)\n"
        "GitInfo.discover(root, trusted=trusted)\n"
        "history.recent_diff(root / 'a.py', 'x', trusted=trusted)\n"
        "history.line_commits(root / 'a.py', 'x', 1, 1, trusted=trusted)\n"
        "history.file_log(root / 'a.py', trusted=trusted)\n"
        "_grep(root, 'helper', trusted=trusted)\n"
    )
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    untrusted = subprocess.run([PY, "-c", code, str(hostile.root), "no"], env=env, capture_output=True, text=True,
                               timeout=60)  # fmt: skip
    assert untrusted.returncode == 0, untrusted.stderr
    assert untrusted.stdout.strip() == "walk"  # files listed without git
    assert not (tmp_path / "fake-git-ran").exists()
    # The same with trust does run the git first on PATH: the marker above can appear.
    trusted = subprocess.run([PY, "-c", code, str(hostile.root), "yes"], env=env, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip() == "git" and (tmp_path / "fake-git-ran").exists()
    assert hostile.ran() == []


def test_a_workspace_cannot_shadow_git(hostile: Hostile) -> None:
    """A `git` inside the workspace, with relative entries on PATH, is never the one fimble runs."""
    shadow = hostile.root / "git"
    shadow.write_text(f'#!/bin/sh\necho "shadow git $*" >> "{hostile.markers}"\n')
    shadow.chmod(0o755)
    env = {**os.environ, "PATH": f".{os.pathsep}{os.pathsep}{os.environ['PATH']}"}
    code = "from fimble.trust import safe_git; g = safe_git.executable(); print(g.path if g else '')"
    done = subprocess.run([PY, "-c", code], cwd=hostile.root, env=env, capture_output=True, text=True, timeout=30)
    path = done.stdout.strip()
    assert os.path.isabs(path) and Path(path).resolve() != shadow.resolve(), done.stderr
    assert hostile.ran() == []


def test_a_git_too_old_for_config_overrides_is_never_run(hostile: Hostile, tmp_path: Path) -> None:
    folder = tmp_path / "old-bin"
    folder.mkdir()
    old = folder / "git"
    ran = tmp_path / "old-git-ran"
    old.write_text(
        f'#!/bin/sh\nif [ "$1" = version ]; then echo "git version 2.30.9"; exit 0; fi\necho "$*" >> "{ran}"\n'
    )
    old.chmod(0o755)
    code = (
        "import logging, sys\nfrom pathlib import Path\nfrom fimble.index.gitinfo import GitInfo\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "print(GitInfo.discover(Path(sys.argv[1])), GitInfo.discover(Path(sys.argv[1])))\n"
    )
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([PY, "-c", code, str(hostile.root)], env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "None None", done.stderr
    assert done.stderr.count("older than 2.31") == 1  # one log line, however many calls
    assert not ran.exists()


def test_only_safe_git_runs_git() -> None:
    """No server module imports GitPython or spells a git command line of its own: all of it goes through
    fimble.trust.safe_git, so a new call cannot forget the protections."""
    offenders = []
    for path in SERVER.rglob("*.py"):
        if path == SERVER / "trust" / "safe_git.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "git" or a.name.startswith("git.") for a in node.names):
                offenders.append(f"{path}: import git")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "git" and node.level == 0:
                offenders.append(f"{path}: from git import")
            elif isinstance(node, ast.Call) and _runs_a_program(node) and node.args and _names_git(node.args[0]):
                offenders.append(f"{path}:{node.lineno}: runs git itself")
    assert offenders == []


_SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput", "system",
             "create_subprocess_exec", "create_subprocess_shell", "posix_spawn", "posix_spawnp", "execvp", "execlp",
             "spawnlp", "spawnvp"}  # fmt: skip


def _runs_a_program(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in _SPAWNERS


def _names_git(arg: ast.expr) -> bool:
    if isinstance(arg, ast.List | ast.Tuple) and arg.elts:
        arg = arg.elts[0]
    return isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.split(" ")[0] == "git"


def test_the_guard_above_finds_a_git_call() -> None:
    call = ast.parse("subprocess.run(['git', 'status'], cwd=root)").body[0].value  # type: ignore[attr-defined]
    assert _runs_a_program(call) and _names_git(call.args[0])
    other = ast.parse("subprocess.run([sys.executable, '-c', 'git'])").body[0].value  # type: ignore[attr-defined]
    assert not _names_git(other.args[0])


# -- through the real server -----------------------------------------------------------------------------------
RECORD_CWD = "import os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text(os.getcwd())"


async def _ready(recorder: Recorder, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not any(s.get("state") == "ready" for s in recorder.status):
        assert time.monotonic() < deadline, recorder.status
        await asyncio.sleep(0.05)


async def _session(client: LanguageClient, recorder: Recorder, root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open a.py, complete, explain lines 1-2, and ask for a fix of a diagnostic the client reports; returns the
    explanation and the fix's outcome."""
    await _ready(recorder)
    uri = (root / "a.py").as_uri()
    # The scripted tiny model answers `val=fn(x)`: a fix for this line that the checks before the checkers accept.
    text = (root / "a.py").read_text() + "\nval=fm(x)\n"
    open_doc(client, uri, text)
    row = text.count("\n") - 1
    await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=4),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    explained = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="fimble.explain",
            arguments=[
                {"uri": uri, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 2, "character": 0}}}
            ],
        )
    )
    diagnostic = {
        "range": {"start": {"line": row, "character": 4}, "end": {"line": row, "character": 6}},
        "message": "undefined name 'fm'",
        "source": "pyflakes",
    }
    action = types.CodeAction(
        title="Fix with fimble", data={"fimble": "fimble.fix", "uri": uri, "version": 1, "diagnostic": diagnostic}
    )
    resolved = await client.code_action_resolve_async(action)
    data: Any = resolved.data
    outcome = data["outcome"] if isinstance(data, dict) else data.outcome
    return _plain(explained), _plain(outcome)


def _plain(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else obj._asdict()


def _options(checker_out: Path, trusted: bool) -> dict[str, Any]:
    return {
        "fixCheckers": [[PY, "-c", RECORD_CWD, str(checker_out)]],
        "fixMaxAttempts": 2,
        "fixAllowUnverified": False,
        "workspaceTrusted": trusted,
    }


async def test_server_runs_no_repository_program(hostile: Hostile, tiny_model: Path, tmp_path: Path) -> None:
    checker_out = tmp_path / "checker-cwd.txt"
    client, recorder = await start_client(model=tiny_model, root=hostile.root, init_options=_options(checker_out, True))
    try:
        explained, fixed = await _session(client, recorder, hostile.root)
    finally:
        await client.shutdown_session()
        await client.stop()
    markdown = explained["markdown"]
    assert "first: helper and its caller" in markdown  # blame found the commit
    assert "callers in a.py (this file), b.py" in markdown  # git grep found the callers
    assert fixed["status"] == "verified" and fixed["verifiedBy"][-1] == Path(PY).name, fixed
    assert "caller" in markdown and "b.py" in markdown  # git grep found the callers
    assert checker_out.exists(), fixed  # the checker ran ...
    cwd = Path(checker_out.read_text())
    assert cwd.name == "tree" and cwd.parent.name.startswith("fimble-check-")  # ... in a temporary worktree
    assert not cwd.exists()
    assert plain_git(hostile.root, "worktree", "list").count("\n") == 1
    assert hostile.ran() == []


async def test_untrusted_server_runs_no_git_and_no_checker(tiny_model: Path, tmp_path: Path) -> None:
    hostile = make_hostile(tmp_path / "repo")
    fake = _fake_git(tmp_path)
    checker_out = tmp_path / "checker-cwd.txt"
    client, recorder = await start_client(
        model=tiny_model,
        root=hostile.root,
        init_options=_options(checker_out, False),
        env={"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        explained, fixed = await _session(client, recorder, hostile.root)
    finally:
        await client.shutdown_session()
        await client.stop()
    assert "first: helper" not in explained["markdown"] and "callers" not in explained["markdown"]  # no blame, grep
    assert not checker_out.exists()
    # The same candidate as in the trusted run reaches the checkers, and the outcome says why they did not run.
    assert fixed["status"] == "failed" and "checkers not run: the workspace is not trusted" in fixed["message"], fixed
    assert not (tmp_path / "fake-git-ran").exists()
    assert hostile.ran() == []


def _fake_git(base: Path) -> Path:
    """A `git` that records that it ran, then runs the real one."""
    real = safe_git.executable()
    assert real is not None
    folder = base / "fake-bin"
    folder.mkdir()
    fake = folder / "git"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{base / "fake-git-ran"}"\nexec "{real.path}" "$@"\n')
    fake.chmod(0o755)
    return fake


pytestmark = pytest.mark.timeout(300)
