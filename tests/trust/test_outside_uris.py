"""URIs that lead outside the workspace (`..` segments, percent-encoded or not, symlinked files and directories)
through a real `fimble serve`: elsewhere's files never reach the index, its persisted cache or a prompt, and a fix
with a checker for such a document is checked inside its own sandbox, never written over the file elsewhere."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import git
import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from tests.conftest import open_doc, server_env, start_client, wait_until

SECRET = "ELSEWHERE"  # in every file outside the workspace, and in nothing inside it
ELSEWHERE_PY = f'def elsewhere_secret({SECRET}_ARG):\n    return "{SECRET}_DISK_BODY"\n'
APP = "from pkg.inside import inside_helper\n\n\ndef run():\n    inside_helper(1)\n    elsewhere_secret(2)\n    late_helper(3)\n    value = \n"
BROKEN = "import os\n\n\ndef add(a, b)\n    return a + b\n\n\nprint(add(1, 2))\n"
FIXED_UNIT = "def add(a, b):\n    return a + b"


def make_layout(tmp_path: Path) -> tuple[Path, Path]:
    """tmp/ws, a git repository, and tmp/elsewhere beside it; ws holds symlinks to elsewhere (a file, a folder)."""
    ws, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    (ws / "pkg").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "x.py").write_text(ELSEWHERE_PY)
    (elsewhere / "victim.py").write_text(f"# {SECRET}: the user's file outside the workspace\n")
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "pkg" / "inside.py").write_text("def inside_helper(inside_arg):\n    return inside_arg\n")
    (ws / "app.py").write_text(APP)
    (ws / "link.py").symlink_to(elsewhere / "x.py")
    (ws / "linkdir").symlink_to(elsewhere, target_is_directory=True)
    repo = git.Repo.init(ws)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test").set_value("user", "email", "test@example.com")
    repo.index.add(["pkg/__init__.py", "pkg/inside.py", "app.py", "link.py", "linkdir"])
    repo.index.commit("initial")
    repo.close()
    return ws, elsewhere


def escaping_uris(ws: Path, target: Path) -> list[str]:
    """URIs under ws that lead to `target` outside it: lexically through ws/.. (plain and percent-encoded), deep
    enough that the same relative path, joined under any other folder, also climbs to the root and back down to
    `target`; and through ws's symlinks."""
    up = "/".join([".."] * 40)
    down = target.relative_to("/").as_posix()
    return [
        f"{ws.as_uri()}/pkg/{up}/{down}",
        f"{ws.as_uri()}/pkg/{up.replace('..', '%2e%2e')}/{down}",
        f"{ws.as_uri()}/pkg/{up.replace('..', '%2E%2e').replace('/', '%2F')}%2F{down}",
    ]


def changed(*uris: str) -> types.DidChangeWatchedFilesParams:
    return types.DidChangeWatchedFilesParams(
        changes=[types.FileEvent(uri=u, type=types.FileChangeType.Changed) for u in uris]
    )


def saved(uri: str) -> types.DidSaveTextDocumentParams:
    return types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))


async def test_outside_uris_never_reach_the_index_its_cache_or_a_prompt(tiny_fim_model: Path, tmp_path: Path) -> None:
    ws, elsewhere = make_layout(tmp_path)
    cache = tmp_path / "cache"
    client, _ = await start_client(model=tiny_fim_model, root=ws, env={"FIMBLE_CACHE_DIR": str(cache)})
    try:
        app = (ws / "app.py").as_uri()
        open_doc(client, app, APP)

        async def prompt(uri: str, line: int, character: int) -> str:
            result = await client.protocol.send_request_async(
                "fimble/debugPrompt",
                {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
            )
            return str(result.prompt)

        await wait_until(lambda: any(str(t).startswith("fimble-index-") for t in client.progress_reports), 60)
        outside = [
            *escaping_uris(ws, elsewhere / "x.py"),
            f"{ws.as_uri()}/link.py",
            f"{ws.as_uri()}/linkdir/x.py",
            f"{ws.as_uri()}/pkg/../linkdir/x.py",
        ]
        for i, uri in enumerate(outside):
            open_doc(client, uri, f"editor_text_{i} = {i}\n")  # what the editor sent may be used; the disk never
            client.text_document_did_save(saved(uri))
        client.workspace_did_change_watched_files(changed(*outside))
        # A file created inside after them: once it is in the prompt, the notifications before it were handled.
        (ws / "pkg" / "late.py").write_text("def late_helper(late_arg):\n    return late_arg\n")
        client.workspace_did_change_watched_files(changed((ws / "pkg" / "late.py").as_uri()))
        text = ""
        for _ in range(200):
            text = await prompt(app, 7, 12)
            if "def late_helper(late_arg)" in text:
                break
            await asyncio.sleep(0.1)
        assert "def late_helper(late_arg)" in text and "def inside_helper(inside_arg)" in text
        assert SECRET not in text
        for uri in outside:
            own = await prompt(uri, 0, 0)
            assert SECRET not in own and "../" not in own and "%2e" not in own.lower()
    finally:
        await client.shutdown_session()
        await client.stop()
    saved_index = [json.loads(p.read_text()) for p in (cache / "index").glob("*.json")]
    assert saved_index, "the index is persisted when the server exits"
    files = saved_index[0]["files"]
    assert "pkg/late.py" in files
    assert all(".." not in rel and not rel.startswith("link") for rel in files), sorted(files)
    assert SECRET not in json.dumps(saved_index)
    assert (elsewhere / "x.py").read_text() == ELSEWHERE_PY


CHECKER = """
import json, os, sys
file, root, log = sys.argv[1:4]
with open(log, "a") as fh:
    fh.write(json.dumps({"file": file, "root": root, "cwd": os.getcwd(),
                         "real": os.path.realpath(os.path.join(root, file)),
                         "text": open(os.path.join(root, file)).read()}) + "\\n")
"""


def tree(folder: Path, skip: set[Path]) -> dict[str, float]:
    return {str(p): p.lstat().st_mtime for p in folder.rglob("*") if not any(p == s or s in p.parents for s in skip)}


@pytest.mark.timeout(180)
async def test_a_fix_for_an_outside_uri_is_checked_in_its_sandbox_only(tmp_path: Path) -> None:
    ws, elsewhere = make_layout(tmp_path)
    victim = elsewhere / "victim.py"
    original = victim.read_text()
    checker, log = tmp_path / "checker.py", tmp_path / "checks.jsonl"
    checker.write_text(CHECKER)
    options = {
        "model": "scripted",
        "fixMaxAttempts": 1,
        "fixCheckers": [[sys.executable, str(checker), "{file}", "{root}", str(log)]],
    }
    lsp = make_test_lsp_client()
    explanations: list[Any] = []
    lsp.feature("fimble/explanation")(lambda ls, params: explanations.append(params))
    lsp.set_configuration({}, section="fimble")
    server = Path(__file__).with_name("scripted_server.py")
    await lsp.start_io(sys.executable, str(server), FIXED_UNIT, env=server_env(FIMBLE_CACHE_DIR=str(tmp_path / "c")))
    await lsp.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            initialization_options=options,
            root_uri=ws.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=ws.as_uri(), name="ws")],
        )
    )
    # git refreshes its own index's stat data when the workspace is indexed: not a file of the user's
    unwatched = {tmp_path / "c", log, ws / ".git"}
    before = tree(tmp_path, unwatched)
    try:
        for version, uri in enumerate(escaping_uris(ws, victim), 1):
            await fix_once(lsp, uri, version)
            result = await lsp.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    command="fimble.explain",
                    arguments=[
                        {
                            "uri": uri,
                            "range": {"start": {"line": 3, "character": 0}, "end": {"line": 4, "character": 0}},
                        }
                    ],
                )
            )
            markdown = result["markdown"] if isinstance(result, dict) else result.markdown
            assert "outside the workspace folders: served from the editor's text alone" in markdown
    finally:
        await lsp.shutdown_session()
        await lsp.stop()
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 3
    for run in runs:
        root = os.path.realpath(run["root"])
        assert run["file"] == "victim.py" and os.path.realpath(run["cwd"]) == root
        assert run["real"] == os.path.join(root, "victim.py")
        assert not Path(root).is_relative_to(tmp_path) and not Path(root).exists()  # its own tree, removed after
        assert run["text"] == BROKEN.replace("def add(a, b)\n", "def add(a, b):\n")
    assert victim.read_text() == original
    assert tree(tmp_path, unwatched) == before  # nothing written anywhere else under tmp


async def fix_once(lsp: LanguageClient, uri: str, version: int) -> None:
    lsp.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=BROKEN)
        )
    )
    await wait_until(lambda: bool(lsp.diagnostics.get(uri)), 60)
    diag = lsp.diagnostics[uri][0]
    actions = await lsp.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=diag.range,
            context=types.CodeActionContext(diagnostics=[diag]),
        )
    )
    fix = next(a for a in actions or [] if isinstance(a, types.CodeAction) and a.kind == types.CodeActionKind.QuickFix)
    resolved = await lsp.code_action_resolve_async(fix)
    outcome = resolved.data["outcome"]
    assert outcome["status"] == "verified", outcome
    assert "outside the workspace folders" in outcome["message"]
    assert resolved.edit is not None


async def test_workspace_folders_follow_did_change_workspace_folders(tiny_fim_model: Path, tmp_path: Path) -> None:
    ws, other = tmp_path / "ws", tmp_path / "other"
    (ws).mkdir()
    (other / "sub").mkdir(parents=True)
    uri = (other / "sub" / "b.py").as_uri()
    client, _ = await start_client(model=tiny_fim_model, root=ws, env={"FIMBLE_CACHE_DIR": str(tmp_path / "cache")})
    try:
        open_doc(client, uri, "def b():\n    return 1\n")

        async def named() -> str:
            result = await client.protocol.send_request_async(
                "fimble/debugPrompt", {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 4}}
            )
            prompt = str(result.prompt)
            return "sub/b.py" if "sub/b.py" in prompt else "b.py" if "b.py" in prompt else prompt

        assert await named() == "b.py"  # outside the one folder: the file name alone
        folder = types.WorkspaceFolder(uri=other.as_uri(), name="other")
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(event=types.WorkspaceFoldersChangeEvent(added=[folder], removed=[]))
        )
        await wait_until_async(named, "sub/b.py")
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(event=types.WorkspaceFoldersChangeEvent(added=[], removed=[folder]))
        )
        await wait_until_async(named, "b.py")
    finally:
        await client.shutdown_session()
        await client.stop()


async def wait_until_async(get: Callable[[], Any], expected: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := await get()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"still {got!r}, expected {expected!r}")
        await asyncio.sleep(0.05)
