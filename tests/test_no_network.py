"""The in-process backend never opens a network socket: completions, explanations, fixes with a checker and
indexing a git workspace run in a server that records every socket Python creates, connects or resolves (an audit
hook), and whose open file descriptors are matched against the kernel's TCP and UDP tables at the end (which also
catches sockets llama.cpp's C code could open, while they are open)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from tests.conftest import open_doc, server_env

# Runs in the server process before fimble is imported. AF_UNIX socket pairs are how asyncio wakes its own loop.
AUDITED_SERVER = """
import socket, sys
log = open(sys.argv[1], "a", buffering=1)
def hook(event, args):
    if event == "socket.__new__" and args[1] in (socket.AF_INET, socket.AF_INET6):
        log.write(f"{event} family={args[1]}\\n")
    elif event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"):
        log.write(f"{event} {args[1:]!r}\\n")
sys.addaudithook(hook)
from fimble.cli.main import main
sys.exit(main(["serve"]))
"""


def inet_socket_inodes(pid: int) -> set[str]:
    """Inodes of the TCP/UDP sockets in the process's network namespace, as the kernel lists them."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        inodes.update(line.split()[9] for line in lines if len(line.split()) > 9)
    return inodes


def socket_fds(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[len("socket:[") : -1])
    return out


async def audited_server(audit: Path, root: Path | None, options: dict[str, Any]) -> LanguageClient:
    """`fimble serve` with the socket audit hook writing to `audit`, initialized."""
    audit.touch()
    client: LanguageClient = make_test_lsp_client()
    client.set_configuration({}, section="fimble")
    await client.start_io(sys.executable, "-c", AUDITED_SERVER, str(audit), env=server_env())
    folders = [types.WorkspaceFolder(uri=root.as_uri(), name=root.name)] if root else None
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            root_uri=root.as_uri() if root else None,
            workspace_folders=folders,
            initialization_options=options,
        )
    )
    return client


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
async def test_serving_opens_no_network_socket(tmp_path: Path, tiny_model: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "util.py").write_text("def helper(x):\n    return x * 2\n")
    (ws / "main.py").write_text("from util import helper\n\n\ndef run(v):\n    return helper(v\n")
    git = ["git", "-C", str(ws), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (ws / "util.py").write_text("def helper(x):\n    return x * 3\n")  # an uncommitted change for the git source
    audit = tmp_path / "audit.log"
    options = {
        "model": str(tiny_model),
        "fixMaxAttempts": 1,
        "fixCheckers": [[sys.executable, "-c", "print('checked')"]],
    }
    client = await audited_server(audit, ws, options)
    uri = (ws / "main.py").as_uri()
    text = (ws / "main.py").read_text()
    open_doc(client, uri, text)
    pos = types.Position(line=4, character=17)
    await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    whole = types.Range(start=types.Position(line=3, character=0), end=pos)
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="fimble.explain", arguments=[{"uri": uri, "range": whole}])
    )
    diag = types.Diagnostic(range=types.Range(start=pos, end=pos), message="'(' was never closed", source="python")
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=pos, end=pos),
            context=types.CodeActionContext(diagnostics=[diag]),
        )
    )
    fixes = [a for a in actions or [] if isinstance(a, types.CodeAction) and a.kind == types.CodeActionKind.QuickFix]
    assert fixes, "a fix action is offered"
    await client.code_action_resolve_async(fixes[0])

    pid = client._server.pid  # type: ignore[union-attr]
    leaked = socket_fds(pid) & inet_socket_inodes(pid)
    await client.shutdown_session()
    await client.stop()
    assert not leaked, f"the server holds TCP/UDP sockets: {leaked}"
    assert audit.read_text() == "", audit.read_text()


async def test_the_audit_sees_a_remote_engine_connect(tmp_path: Path) -> None:
    """Control for the test above: the same audited server with a remote engine does record its connection."""
    audit = tmp_path / "audit.log"
    options = {"backend": "llama-server", "url": "http://127.0.0.1:9", "requestTimeoutMs": 500}
    client = await audited_server(audit, None, options)
    for _ in range(100):
        if "socket.connect" in audit.read_text():
            break
        await asyncio.sleep(0.05)
    await client.shutdown_session()
    await client.stop()
    assert "socket.connect" in audit.read_text()
