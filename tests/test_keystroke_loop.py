"""The keystroke loop end to end: typed-through cache, manual trigger candidates, status reporting (warm-ups:
test_warmup.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import get_args

from lsprotocol import types
from pytest_lsp import LanguageClient

from fimble.completion.cache import CompletionCache
from fimble.completion.filters import Suggestion
from fimble.model.backend import StopReason
from tests.conftest import Recorder, open_doc
from tests.test_lsp_server import inline_params, wait_until

URI = "file:///work/loop.py"


def test_cache_serves_typed_through_text_and_backspace() -> None:
    cache = CompletionCache(capacity=4)
    cache.put("u", "x = ", "\n", [Suggestion("compute(1)")])
    assert cache.lookup("u", "x = comp", "\n") == [Suggestion("ute(1)")]
    assert cache.lookup("u", "x = ", "\n") == [Suggestion("compute(1)")]  # backspaced to where it was made
    assert cache.lookup("u", "x = compute(1)", "\n") is None  # fully typed: nothing left to show
    assert cache.lookup("u", "x = cat", "\n") is None  # typed something else
    assert cache.lookup("u", "x = comp", "\nmore") is None  # text after the cursor changed
    assert cache.lookup("other", "x = comp", "\n") is None
    for i in range(5):
        cache.put("u", f"y{i} = ", "", [Suggestion("1")])
    assert cache.lookup("u", "x = comp", "\n") is None  # evicted (LRU)


def test_cache_compares_long_prefixes_exactly() -> None:
    cache = CompletionCache()
    head = "a = 1\n" * 2000
    cache.put("u", head + "x = ", "", [Suggestion("foo()")])
    assert cache.lookup("u", head + "x = fo", "") == [Suggestion("o()")]
    changed = "b" + head[1:]
    assert cache.lookup("u", changed + "x = fo", "") is None


async def test_typing_what_the_suggestion_shows_hits_the_cache(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, recorder = lsp
    open_doc(client, URI, "value = ")
    first = await client.text_document_inline_completion_async(inline_params(URI, 0, 8))
    text = first.items[0].insert_text
    assert isinstance(text, str) and len(text) >= 2
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(0, 8), end=types.Position(0, 8)), text=text[0]
                )
            ],
        )
    )
    second = await client.text_document_inline_completion_async(inline_params(URI, 0, 9))
    assert second.items[0].insert_text == text[1:]
    await wait_until(lambda: any(s.get("cached") is True for s in recorder.status))


async def test_manual_trigger_returns_several_distinct_candidates(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, _ = lsp
    open_doc(client, URI, "def handler(event):\n    ")
    params = inline_params(URI, 1, 4)
    params.context = types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)
    result = await client.text_document_inline_completion_async(params)
    texts = [item.insert_text for item in result.items]
    assert len(texts) >= 2 and len(set(texts)) == len(texts)


async def test_status_reports_tokens_and_reuse(lsp: tuple[LanguageClient, Recorder]) -> None:
    client, recorder = lsp
    open_doc(client, URI, "import os\nimport sys\n\n\ndef main():\n    path = \n")
    await client.text_document_inline_completion_async(inline_params(URI, 5, 11))
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(5, 11), end=types.Position(5, 11)), text="zz"
                )
            ],
        )
    )
    await client.text_document_inline_completion_async(inline_params(URI, 5, 13))
    await asyncio.sleep(0.1)
    done = [s for s in recorder.status if s.get("cached") is False]
    assert len(done) >= 2
    assert done[-1]["promptTokens"] > 0 and done[-1]["reusedTokens"] > 0
    assert done[-1]["serverMs"] >= 0
    # what the benchmarks read instead of the server's log: why generation stopped, and the time of each phase
    assert done[-1]["stopReason"] in get_args(StopReason)
    phases = done[-1]["timingsMs"]._asdict()  # a JSON object arrives as a namedtuple
    assert {"prompt_build", "prompt_eval", "generate", "filters", "alternatives", "total", "queue"} <= set(phases)
    assert phases["total"] >= phases["prompt_eval"] + phases["generate"] - 0.2  # each rounded to 0.1 ms


def test_prefix_window_start_moves_in_steps_so_the_kv_cache_survives_typing(tiny_random_model: Path) -> None:
    from fimble.model.llama_cpp_backend import LlamaCppBackend
    from fimble.prompt.budget import PREFIX_GRID_LINES, cut_prefix
    from fimble.settings import Settings

    backend = LlamaCppBackend(tiny_random_model, Settings(n_threads=1, n_ctx=2048))
    try:
        starts = set()
        for n in range(600, 640):  # the user types 40 more lines into a file larger than the window
            full = "".join(f"value_{i} = compute({i})\n" for i in range(n))
            prefix = cut_prefix(backend, full, 1500)
            start = full.count("\n", 0, len(full) - len(prefix))
            assert start % PREFIX_GRID_LINES == 0
            starts.add(start)
        assert len(starts) <= 40 // PREFIX_GRID_LINES + 2  # instead of 40 different starts
    finally:
        backend.close()


def test_log_likelihood_is_the_sum_of_next_token_log_probabilities(tiny_random_model: Path) -> None:
    import math

    from fimble.model.backend import CancelToken, GenerationParams
    from fimble.model.llama_cpp_backend import LlamaCppBackend
    from fimble.settings import Settings

    backend = LlamaCppBackend(tiny_random_model, Settings(n_threads=1, n_ctx=512))
    try:
        prompt = backend.encode(["def add(a, b):\n    return"])
        tail = backend.tokenize(" a + b\n")
        whole = backend.log_likelihood(prompt, tail)
        assert math.isfinite(whole) and whole < 0
        # chain rule: scoring token by token, each after the ones before, adds up to the same number
        parts = sum(backend.log_likelihood(prompt + tail[:i], tail[i : i + 1]) for i in range(len(tail)))
        assert math.isclose(whole, parts, rel_tol=1e-3, abs_tol=1e-3)
        # the greedy token is at least as likely as any other, and scoring leaves generation working
        greedy = backend.generate(prompt, GenerationParams(max_tokens=1), CancelToken())
        first = backend.tokenize(greedy.text)[:1] if greedy.text else []
        if first:
            assert backend.log_likelihood(prompt, first) >= backend.log_likelihood(prompt, tail[:1]) - 1e-6
        assert backend.log_likelihood(prompt, []) == 0.0
    finally:
        backend.close()
