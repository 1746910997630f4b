"""The llama.cpp backend and the model runtime on a tiny real GGUF: streaming, cancel, reuse, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from fimble.errors import ContextOverflowError, ModelError
from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.model.prompt_states import MIN_SAVED_TOKENS, Checkpoint, PromptStates, Snapshot, common_prefix, reach
from fimble.model.runtime import Cancelled, ModelRuntime
from fimble.settings import Settings


@pytest.fixture
def backend(tiny_model: Path) -> LlamaCppBackend:
    b = LlamaCppBackend(tiny_model, Settings(n_threads=1, n_ctx=1024))
    yield b
    b.close()


def test_generates_deterministic_text_and_counts_tokens(backend: LlamaCppBackend) -> None:
    prompt = backend.encode(["def f(x):\n    return "])
    first = backend.generate(prompt, GenerationParams(max_tokens=8), CancelToken())
    second = backend.generate(prompt, GenerationParams(max_tokens=8), CancelToken())
    assert first.text and first.text == second.text
    assert first.generated_tokens == 8 and first.stop_reason == "length"
    assert first.prompt_tokens == len(prompt)


def test_kv_cache_prefix_is_reused_across_requests(backend: LlamaCppBackend) -> None:
    base = backend.encode(["import os\n" * 20])
    backend.generate(base, GenerationParams(max_tokens=2), CancelToken())
    extended = backend.encode(["import os\n" * 20 + "x = 1\n"])
    result = backend.generate(extended, GenerationParams(max_tokens=2), CancelToken())
    shared = 0
    while shared < min(len(base), len(extended)) and base[shared] == extended[shared]:
        shared += 1
    assert result.reused_tokens >= shared - 1 > 0
    assert backend.cached_tokens[: len(extended)] == extended


def test_cancel_stops_within_one_token(backend: LlamaCppBackend) -> None:
    cancel = CancelToken()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        cancel.cancel()

    result = backend.generate(backend.encode(["x = "]), GenerationParams(max_tokens=200), cancel, on_text)
    assert result.stop_reason == "cancelled"
    assert result.generated_tokens <= 2
    assert len(pieces) == 1


def test_deadline_returns_what_was_generated(tiny_random_model: Path) -> None:
    backend = LlamaCppBackend(tiny_random_model, Settings(n_threads=1, n_ctx=2048))
    cancel = CancelToken(deadline=time.monotonic() + 0.05)
    result = backend.generate(
        backend.encode(["a"]), GenerationParams(max_tokens=900), cancel, lambda _: time.sleep(0.005)
    )
    assert result.stop_reason == "deadline"
    assert 0 < result.generated_tokens < 900
    assert result.text
    backend.close()


def test_prompt_longer_than_the_context_is_a_clear_error(backend: LlamaCppBackend) -> None:
    too_long = backend.tokenize("word " * 2000)
    with pytest.raises(ContextOverflowError, match="context window"):
        backend.generate(too_long, GenerationParams(max_tokens=4), CancelToken())
    # the backend still works afterwards
    assert backend.generate(backend.encode(["result = "]), GenerationParams(max_tokens=2), CancelToken()).text


def test_runtime_serialises_work_and_newest_request_wins(tiny_model: Path) -> None:
    runtime = ModelRuntime()
    try:
        runtime.load(Settings(model=str(tiny_model), n_threads=1, n_ctx=1024))
        started = threading.Event()
        release = threading.Event()

        def slow(backend: object) -> str:
            started.set()
            release.wait(5)
            return "slow"

        first = runtime.token_for("doc")
        running = runtime.submit(slow, first)
        started.wait(5)
        queued_token = runtime.token_for("doc")
        queued = runtime.submit(lambda b: "queued", queued_token)
        newest_token = runtime.token_for("doc")  # supersedes `queued` before it starts
        newest = runtime.submit(lambda b: "newest", newest_token)
        assert first.cancelled and queued_token.cancelled and not newest_token.cancelled
        release.set()
        assert running.result(5) == "slow"
        with pytest.raises(Cancelled):
            queued.result(5)
        assert newest.result(5) == "newest"
    finally:
        runtime.shutdown()


def test_runtime_reports_load_errors_and_recovers(tmp_path: Path, tiny_model: Path) -> None:
    runtime = ModelRuntime()
    states: list[tuple[str, str]] = []
    runtime.on_status(lambda state, message: states.append((state, message)))
    try:
        runtime.load(Settings(model=str(tmp_path / "nope.gguf"), n_threads=1))
        with pytest.raises(ModelError, match="does not exist"):
            runtime.backend_sync()
        assert states[-1][0] == "error"
        runtime.load(Settings(model=str(tiny_model), n_threads=1, n_ctx=512))
        assert runtime.backend_sync().info.name == "tiny-plain"
        assert states[-1][0] == "ready" and "tiny-plain" in states[-1][1]
    finally:
        runtime.shutdown()


async def test_requests_wait_for_a_load_in_progress(tiny_model: Path) -> None:
    runtime = ModelRuntime()
    try:
        runtime.load(Settings(model=str(tiny_model), n_threads=1, n_ctx=512))
        name = await runtime.run(lambda b: b.info.name, runtime.token_for(None))
        assert name == "tiny-plain"
        assert await asyncio.wait_for(runtime.backend(), 5) is runtime.loaded
    finally:
        runtime.shutdown()


def test_a_prompt_moved_away_from_is_restored_not_evaluated_again(tiny_random_model: Path) -> None:
    """A context snippet joins the prompt and leaves again: the second time, the old prompt's KV cache comes back
    from a snapshot, and what the model writes from it is what it wrote the first time."""
    head = "def main():\n"
    first = "    import os\n" * 40 + "    return "
    second = "    import sys\n" * 40 + "    return "
    params = GenerationParams(max_tokens=12)
    with closing(LlamaCppBackend(tiny_random_model, Settings(n_threads=1, n_ctx=2048))) as backend:
        a, b = backend.encode([head + first]), backend.encode([head + second])
        shared = common_prefix(a, b)
        assert len(a) - shared >= MIN_SAVED_TOKENS
        fresh = backend.generate(a, params, CancelToken())
        assert backend.generate(b, params, CancelToken()).reused_tokens == shared
        again = backend.generate(a, params, CancelToken())
        assert again.reused_tokens == len(a) - 1
        assert again.text == fresh.text
        # And back to the other one, from its own snapshot.
        assert backend.generate(b, params, CancelToken()).reused_tokens == len(b) - 1
    with closing(LlamaCppBackend(tiny_random_model, Settings(n_threads=1, n_ctx=2048, prompt_cache_mb=0))) as off:
        off.generate(a, params, CancelToken())
        off.generate(b, params, CancelToken())
        assert off.generate(a, params, CancelToken()).reused_tokens == shared


def test_prompt_states_keep_the_best_match_within_the_budget() -> None:
    states = PromptStates(budget_bytes=300)
    one = tuple(range(200))
    two = (*range(50), *range(1000, 1200))
    states.add(Snapshot(one, b"1" * 100))
    states.add(Snapshot(two, b"2" * 100))
    snapshot, shared = states.best([*range(150), 7], 1000)
    assert snapshot is not None and snapshot.tokens == one and shared == 150
    assert states.best([*range(150), 7], 100)[1] == 100  # never more than the caller can keep
    # A longer prompt that continues `one` makes it redundant: restoring the new one serves the same prompts.
    states.add(Snapshot((*one, *range(5000, 5100)), b"3" * 100))
    assert len(states) == 2 and states.best(list(one), 1000)[1] == 200
    # Over the budget, the least recently used goes (here `two`), and a snapshot bigger than it is not kept at all.
    states.add(Snapshot(tuple(range(7000, 7300)), b"4" * 150))
    assert states.best(list(two), 1000)[1] == 50 and states.size_bytes <= 300  # only the head `two` shares with `one`
    states.add(Snapshot(tuple(range(9000, 9400)), b"5" * 301))
    assert states.best(list(range(9000, 9400)), 1000)[0] is None


def test_a_sliding_window_snapshot_goes_back_only_to_its_checkpoints() -> None:
    """Saved sliding-window layers hold only their last window: a restored snapshot continues at its end, or
    from a checkpoint at or before the shared part, re-evaluating from there."""
    checkpoints = (Checkpoint(512, b"c" * 10), Checkpoint(1484, b"d" * 10))
    states = PromptStates(budget_bytes=1000)
    states.add(Snapshot(tuple(range(1500)), b"s" * 100, min_keep=1500, checkpoints=checkpoints))
    assert states.best([*range(1490), -1], 2000)[1] == 1484
    assert states.best([*range(1000), -1], 2000)[1] == 512
    assert states.best([*range(300), -1], 2000) == (None, 0)
    assert states.best([*range(1500), 7], 2000)[1] == 1500  # the whole snapshot: it continues at its end
    assert reach(checkpoints, 1483) == checkpoints[0] and reach(checkpoints, 100) is None


def test_generation_speed_is_unknown_from_one_token() -> None:
    """One token comes with the prompt's evaluation: a rate from it (thousands a second) would mislead the status."""
    from fimble.model.backend import GenerationResult

    assert GenerationResult("x", "eos", generated_tokens=1, generate_ms=0.28).tokens_per_second == 0.0
    assert GenerationResult("", "deadline", generated_tokens=0, generate_ms=5.0).tokens_per_second == 0.0
    assert GenerationResult("xy", "eos", generated_tokens=10, generate_ms=200.0).tokens_per_second == 50.0
