"""The LSP side of the benchmarks: `fimble serve` started as an editor starts it (a subprocess, JSON-RPC over stdio),
a client that records its `fimble/status` notifications, and the requests a replay sends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from fimble import __version__


def plain(value: Any) -> Any:
    """pygls turns unknown JSON objects into namedtuples; the report wants dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def position(text: str, offset: int) -> types.Position:
    """LSP position (UTF-16 columns) of a string offset."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    column = sum(2 if ord(c) > 0xFFFF else 1 for c in text[start:offset])
    return types.Position(line=line, character=column)


class BenchClient(LanguageClient):
    """A client for benchmarks that drive `fimble serve` over stdio: records fimble/status and showMessage."""

    def __init__(self) -> None:
        super().__init__("fimble-bench", __version__)
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.messages: list[types.ShowMessageParams] = []

    @property
    def server_pid(self) -> int | None:
        """The server's process id (with `start_server` the shell execs it, so this is fimble itself)."""
        return self._server.pid if self._server is not None else None


def make_client(init_options: dict[str, Any]) -> BenchClient:
    """A client that answers workspace/configuration with `init_options` and accepts what the server sends."""
    client = BenchClient()

    @client.feature("fimble/status")
    def on_status(ls: BenchClient, params: Any) -> None:
        ls.statuses.append((time.monotonic(), plain(params)))

    @client.feature(types.WORKSPACE_CONFIGURATION)
    def on_configuration(ls: BenchClient, params: types.ConfigurationParams) -> list[Any]:
        return [init_options for _ in params.items]

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def on_progress_create(ls: BenchClient, params: Any) -> None:
        return None

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(ls: BenchClient, params: Any) -> None:
        return None

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(ls: BenchClient, params: Any) -> None:
        return None

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(ls: BenchClient, params: types.ShowMessageParams) -> None:
        ls.messages.append(params)
        print(f"server: {params.message}", file=sys.stderr)

    return client


async def start_server(client: BenchClient, log_path: Path, env: dict[str, str]) -> None:
    """Run `python -m fimble serve` with its stderr (its log) appended to `log_path`: an unread pipe would fill up
    and stall the server. The log is only shown when a run fails; the figures come from `fimble/status`."""
    await client.start_io(
        "/bin/sh", "-c", 'exec "$@" 2>>"$0"', str(log_path), sys.executable, "-m", "fimble", "serve", env=env
    )  # fmt: skip


async def initialize(client: BenchClient, root: Path, init_options: dict[str, Any]) -> None:
    """initialize (with `root` as the workspace folder) and initialized, as an editor sends them."""
    await asyncio.wait_for(
        client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    text_document=types.TextDocumentClientCapabilities(
                        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
                        inline_completion=types.InlineCompletionClientCapabilities(),
                    ),
                    workspace=types.WorkspaceClientCapabilities(configuration=True),
                ),
                initialization_options=init_options,
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            )
        ),
        timeout=60,
    )
    client.initialized(types.InitializedParams())


async def debug_prompt(client: BenchClient, uri: str, pos: types.Position, timeout_s: float) -> dict[str, Any]:
    """The exact prompt the server would build at `pos` (`fimble/debugPrompt`), as plain JSON."""
    request = client.protocol.send_request_async(
        "fimble/debugPrompt", {"textDocument": {"uri": uri}, "position": {"line": pos.line, "character": pos.character}}
    )
    answer = plain(await asyncio.wait_for(request, timeout=timeout_s))
    return answer if isinstance(answer, dict) else {}


async def stop_server(client: BenchClient) -> None:
    """shutdown, exit and stop, each step bounded: a benchmark ends even when the server does not answer."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.shutdown_async(None), timeout=10)
        client.exit(None)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), timeout=10)


async def wait_ready(client: BenchClient, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, status in client.statuses:
            if status.get("state") == "ready" and "loaded in" in str(status.get("message", "")):
                return status
            if status.get("state") == "error":
                raise RuntimeError(f"the server could not load the model: {status.get('message')}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the model was not ready within {timeout_s:.0f} s")


def server_env() -> dict[str, str]:
    """The benchmark's environment, its log unbuffered (a server that dies leaves its last lines)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def first_item(result: Any) -> str:
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    for item in items:
        text = item.insert_text
        if isinstance(text, str):
            # Only an insertion at the cursor is modelled by the typist; a replacing item is shown, not accepted.
            if item.range is None or item.range.start == item.range.end:
                return text
            return ""
    return ""
