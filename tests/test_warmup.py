"""Idle-time model work through the real server: cut requests finished in the background, warm-up where the user is,
speculative warm-up of an accepted suggestion, and real requests never waiting behind any of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from fimble_dev.tiny_gguf import FAMILY_SPECIAL_TOKENS, SCRIPTED, TinyModelSpec, write_tiny_gguf
from tests.conftest import Recorder, inline_params, open_doc, start_client, wait_until

BIG = "file:///work/big.py"
SMALL = "file:///work/small.py"
# About 6,600 tokens for the tiny models' byte-level vocabulary: seconds of prompt evaluation on one thread, far
# more than a 100 ms budget covers.
BIG_TEXT = "".join(f"value_{i} = compute({i})\n" for i in range(300))
BIG_END = (300, 0)


@pytest.fixture(scope="session")
def long_model(models_dir: Path) -> Path:
    """The scripted model (it writes `val=fn(x)`) with an 8k context, for prompts that take seconds to evaluate."""
    spec = TinyModelSpec(name="tiny-plain-8k", script=SCRIPTED, context_length=8192)
    return write_tiny_gguf(models_dir / "tiny-plain-8k.gguf", spec)


@pytest.fixture(scope="session")
def fim_scripted_model(models_dir: Path) -> Path:
    """The scripted model with Qwen2.5-Coder's FIM tokens: the text after the cursor follows the text before it."""
    spec = TinyModelSpec(
        name="tiny-qwen-scripted",
        script=SCRIPTED,
        special_tokens=FAMILY_SPECIAL_TOKENS["qwen2.5-coder"],
        fim_token_ids=True,
    )
    return write_tiny_gguf(models_dir / "tiny-qwen-scripted.gguf", spec)


Started = tuple[LanguageClient, Recorder]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    started: list[LanguageClient] = []

    async def start(model: Path, **options: Any) -> Started:
        client, recorder = await start_client(model=model, init_options=options)
        started.append(client)
        await wait_until(lambda: any(s["state"] == "ready" for s in recorder.status))
        return client, recorder

    yield start
    for client in started:
        await client.shutdown_session()
        await client.stop()


async def stats(client: LanguageClient) -> dict[str, Any]:
    answer = await client.protocol.send_request_async("fimble/stats", {})
    return _plain(answer)


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def warm_up(client: LanguageClient, timeout: float = 60.0, **expected: Any) -> dict[str, Any]:
    """The latest warm-up matching `expected` (kind, state, ...), once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        recent = (await stats(client)).get("warmUps") or []
        for record in reversed(recent):
            if all(record.get(k) == v for k, v in expected.items()):
                return dict(record)
        if time.monotonic() > deadline:
            raise AssertionError(f"no warm-up {expected} among {recent}")
        await asyncio.sleep(0.02)


async def ask(client: LanguageClient, recorder: Recorder, uri: str, line: int, character: int, invoked: bool = False
              ) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """An inline completion request: the first item's text and the request's final fimble/status."""
    before = len(recorder.status)
    params = inline_params(uri, line, character)
    if invoked:
        params.context = types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)
    result = await client.text_document_inline_completion_async(params)
    await wait_until(lambda: any(s["state"] == "ready" for s in recorder.status[before:]))
    status = [s for s in recorder.status[before:] if s["state"] == "ready"][-1]
    text = result.items[0].insert_text if result.items else ""
    return str(text), status


def insert(client: LanguageClient, uri: str, version: int, at: tuple[int, int], text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(*at), end=types.Position(*at)), text=text
                )
            ],
        )
    )


async def test_a_cut_request_is_finished_in_idle_time(serve: Callable[..., Awaitable[Started]], long_model: Path
                                                      ) -> None:  # fmt: skip
    client, recorder = await serve(long_model, nCtx=8192, timeBudgetMs=100)
    open_doc(client, BIG, BIG_TEXT)
    text, first = await ask(client, recorder, BIG, *BIG_END)
    assert text == "" and "time budget" in first["emptyReason"]
    assert first["reusedTokens"] < first["promptTokens"] // 2  # the clock cut its prompt early
    await warm_up(client, kind="continue", state="done")
    # Asked there again, the answer finished in the background comes from the typed-through cache ...
    text, second = await ask(client, recorder, BIG, *BIG_END)
    assert text == "val=fn(x)" and second["cached"] is True
    # ... and the cut prompt was evaluated whole (a manual trigger goes past the cache to the model).
    _, third = await ask(client, recorder, BIG, *BIG_END, invoked=True)
    assert third["promptTokens"] == first["promptTokens"] and third["reusedTokens"] >= first["promptTokens"] - 1


async def test_the_second_request_in_one_place_finishes_what_the_first_began(
    serve: Callable[..., Awaitable[Started]], long_model: Path
) -> None:
    """A model slower than its budget: the first request is cut, the next one at the same place (sent at once, no
    idle time between) takes over its prompt and answers with the whole suggestion, whatever the budget; nothing
    evaluated is lost on the way."""
    client, recorder = await serve(long_model, nCtx=8192, timeBudgetMs=100)
    open_doc(client, BIG, BIG_TEXT)
    text, first = await ask(client, recorder, BIG, *BIG_END)
    assert text == "" and "time budget" in first["emptyReason"]
    text, second = await ask(client, recorder, BIG, *BIG_END)
    assert text == "val=fn(x)" and second.get("cached") is not True
    assert second["reusedTokens"] > first["reusedTokens"]  # it went on from where the cut left the prompt
    assert second["promptTokens"] == first["promptTokens"]
    # Somewhere else the budget holds again.
    open_doc(client, SMALL, BIG_TEXT.replace("value_", "other_"))
    text, third = await ask(client, recorder, SMALL, *BIG_END)
    assert text == "" and "time budget" in third["emptyReason"]


async def test_a_request_waits_for_at_most_one_batch_of_a_warm_up(
    serve: Callable[..., Awaitable[Started]], long_model: Path
) -> None:
    client, recorder = await serve(long_model, nCtx=8192, timeBudgetMs=100)
    open_doc(client, SMALL, "import os\n\nvalue = ")
    open_doc(client, BIG, BIG_TEXT)
    _, first = await ask(client, recorder, BIG, *BIG_END)
    remaining = first["promptTokens"] - first["reusedTokens"]
    await warm_up(client, kind="continue", state="running")
    # A budget the small document's request (with the big one as context) will not run out of.
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"fimble": {"nCtx": 8192, "timeBudgetMs": 30000}})
    )
    text, other = await ask(client, recorder, SMALL, 2, 8)
    assert text == "val=fn(x)"
    stopped = await warm_up(client, kind="continue", state="stopped")
    assert stopped["tokens"] < remaining  # the request did not wait for the rest of the warm-up
    assert other["queueMs"] < 2000  # one batch of 128 tokens: milliseconds (generous for a loaded machine)


async def test_warm_up_goes_where_the_user_is(serve: Callable[..., Awaitable[Started]], tiny_model: Path) -> None:
    client, recorder = await serve(tiny_model)
    open_doc(client, BIG, BIG_TEXT)
    # Nothing is known about a document just opened: the top of the file, not the end.
    opened = await warm_up(client, kind="open", uri=BIG, state="done")
    assert opened["offset"] == 0
    open_doc(client, SMALL, "import os\n")
    await warm_up(client, kind="open", uri=SMALL, state="done")
    # Back in the big file, the user edits line 40: the prompt there is prepared, far from the file's end.
    insert(client, BIG, 2, (40, 0), "y = ")
    cursor = BIG_TEXT.index("value_40") + 4
    await warm_up(client, kind="edit", uri=BIG, offset=cursor, state="done")
    _, status = await ask(client, recorder, BIG, 40, 4)
    assert status["promptTokens"] > 500 and status["reusedTokens"] >= status["promptTokens"] - 2


async def test_a_new_model_is_warmed_at_the_last_request(serve: Callable[..., Awaitable[Started]], tiny_model: Path
                                                         ) -> None:  # fmt: skip
    client, recorder = await serve(tiny_model)
    text = BIG_TEXT.replace("value_40 = compute(40)\n", "value_40 = \n")
    open_doc(client, BIG, text)
    await ask(client, recorder, BIG, 40, 11)
    loads = sum(1 for s in recorder.status if s["state"] == "loading")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"fimble": {"nCtx": 2304}}))
    await wait_until(lambda: sum(1 for s in recorder.status if s["state"] == "loading") > loads)
    await warm_up(client, kind="open", uri=BIG, offset=text.index("value_40") + 11, state="done")
    _, status = await ask(client, recorder, BIG, 40, 11, invoked=True)  # past the typed-through cache
    assert status["promptTokens"] > 500 and status["reusedTokens"] >= status["promptTokens"] - 2


async def test_a_shown_suggestion_is_prepared_for_its_accept(
    serve: Callable[..., Awaitable[Started]], fim_scripted_model: Path
) -> None:
    client, recorder = await serve(fim_scripted_model)
    text = "def f(x):\n    y = \n" + "".join(f"    z{i} = y + {i}\n" for i in range(40)) + "    return y\n"
    open_doc(client, BIG, text)
    shown, _ = await ask(client, recorder, BIG, 1, 8)
    assert shown == "val=fn(x)"
    await warm_up(client, kind="accept", uri=BIG, offset=text.index("y = ") + 4 + len(shown), state="done")
    insert(client, BIG, 2, (1, 8), shown)  # accepted
    # The accept's edit finds its prompt evaluated: the text after the cursor comes after the accepted text in a
    # FIM prompt, and without the speculative warm-up all of it would be evaluated again now.
    edit = await warm_up(client, kind="edit", uri=BIG, offset=text.index("y = ") + 4 + len(shown), state="done")
    assert edit["tokens"] <= 2
    _, after = await ask(client, recorder, BIG, 1, 8 + len(shown))
    assert after["reusedTokens"] >= after["promptTokens"] - 2
