"""The served model file changes under a running `fimble serve`: truncated mid-generation, rewritten in place,
replaced with os.replace. The server loads the weights into its own memory (no mmap, so no SIGBUS), notices the
change before the next request, loads the new file or says why it cannot, and keeps answering."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from fimble_dev.tiny_gguf import TinyModelSpec, write_tiny_gguf
from tests.conftest import inline_params, open_doc, start_client, wait_until


def rewrite_in_place(path: Path, data: bytes) -> None:
    """As `cp new old` does: same inode, truncated, then written."""
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(data)


async def test_model_file_changed_under_a_running_server(
    tmp_path: Path, tiny_random_model: Path, tiny_model: Path
) -> None:
    other = write_tiny_gguf(tmp_path / "other.gguf", TinyModelSpec(name="tiny-other", script=("res=go(y)",)))
    served = tmp_path / "served.gguf"
    shutil.copyfile(tiny_random_model, served)
    options = {"nCtx": 8192, "maxTokens": 3000, "timeBudgetMs": 120000}
    client, recorder = await start_client(model=served, init_options=options)
    steps = iter(range(100))

    def fresh_doc() -> str:  # a new document each time: the typed-through cache cannot answer for it
        uri = f"file:///work/step{next(steps)}.py"
        open_doc(client, uri, "x = ")
        return uri

    def states(since: int) -> list[tuple[str, str]]:
        return [(s["state"], s["message"]) for s in recorder.status[since:]]

    try:
        await wait_until(lambda: any(s["state"] == "ready" for s in recorder.status), 60)
        # 1. Truncated in place while a long generation runs: that request finishes on the weights in memory.
        uri = fresh_doc()
        mark = len(recorder.status)
        running = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(uri, 0, 4)))
        await wait_until(lambda: ("generating", "generating") in states(mark), 60)
        await asyncio.sleep(0.2)
        assert not running.done(), "the generation should still be running when the file is cut"
        os.truncate(served, served.stat().st_size // 2)
        result = await asyncio.wait_for(running, 120)
        assert isinstance(result, types.InlineCompletionList)
        generated = [s.get("generatedTokens") for s in recorder.status[mark:] if s.get("generatedTokens")]
        assert generated and generated[-1] > 10

        # 2. The next request notices the change, tries the cut file and reports why it cannot be used.
        mark = len(recorder.status)
        with pytest.raises(JsonRpcException, match="is truncated"):
            await client.text_document_inline_completion_async(inline_params(fresh_doc(), 0, 4))
        seen = states(mark)
        assert any(st == "loading" and "served.gguf changed on disk" in msg for st, msg in seen), seen
        assert any(st == "error" and "is truncated" in msg for st, msg in seen), seen
        await wait_until(lambda: any("is truncated" in m.message for m in client.messages), 60)
        # ... and stays up: requests are answered (the same error, without loading the same broken file again).
        mark = len(recorder.status)
        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                range=types.Range(start=types.Position(0, 0), end=types.Position(0, 4)),
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        assert actions is not None
        with pytest.raises(JsonRpcException, match="is truncated"):
            await client.text_document_inline_completion_async(inline_params(fresh_doc(), 0, 4))
        assert not any(st == "loading" for st, _ in states(mark))

        # 3. Rewritten in place with another model: loaded, and completions come from it. (Short answers from here
        # on: these models have a 2048-token context.)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"fimble": {"maxTokens": 64}})
        )
        rewrite_in_place(served, other.read_bytes())
        mark = len(recorder.status)
        result = await client.text_document_inline_completion_async(inline_params(fresh_doc(), 0, 4))
        assert isinstance(result, types.InlineCompletionList)
        assert any(st == "ready" and "tiny-other" in msg and "loaded in" in msg for st, msg in states(mark))
        assert recorder.status[-1]["model"] == "tiny-other"

        # 4. Replaced with os.replace (a new inode, same size and maybe the same mtime as before): loaded too.
        staged = tmp_path / "staged.gguf"
        shutil.copyfile(tiny_model, staged)
        os.replace(staged, served)
        mark = len(recorder.status)
        result = await client.text_document_inline_completion_async(inline_params(fresh_doc(), 0, 4))
        assert result.items and result.items[0].insert_text
        assert any(st == "ready" and "tiny-plain" in msg for st, msg in states(mark))
        assert recorder.status[-1]["model"] == "tiny-plain"
    finally:
        await client.shutdown_session()
        await client.stop()
