"""Prompt evaluation keeps its progress: a feed cut by the clock or by a newer request, or parted from at a
changed context passage, continues from exactly where the KV cache can take it, on a tiny model whose layers
keep only a sliding window of positions (Gemma 3's shape), as the embedded model's do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.model.prompt_states import Checkpoint, PromptStates, Snapshot, common_prefix, thin
from fimble.prompt.assemble import Snippet, Window, assemble
from fimble.settings import Settings
from fimble_dev.tiny_gguf import TinyModelSpec, write_tiny_gguf

WINDOW = 32
# Batches that are no multiple of the window, so a feed cut between them stops off the window's grid.
BATCH = 48
PARAMS = GenerationParams(max_tokens=6)


@pytest.fixture(scope="module")
def swa_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyModelSpec(name="tiny-swa", sliding_window=WINDOW, context_length=4096)
    return write_tiny_gguf(tmp_path_factory.mktemp("swa") / "tiny-swa.gguf", spec)


def _backend(path: Path, **kw: int) -> LlamaCppBackend:
    return LlamaCppBackend(path, Settings(n_threads=1, n_ctx=2048, n_batch=BATCH, **kw))


@pytest.fixture
def backend(swa_model: Path) -> Iterator[LlamaCppBackend]:
    with closing(_backend(swa_model)) as b:
        assert b._n_swa == WINDOW  # the point of these tests
        yield b


class StopWhen(CancelToken):
    """A deadline that passes when `due()` says so (checked between prompt batches, as the clock is)."""

    def __init__(self, due: Callable[[], bool]) -> None:
        super().__init__()
        self.due = due

    def expired(self) -> bool:
        return self.due()


class CancelWhen(CancelToken):
    """Cancelled (a real request arrived) when `due()` says so."""

    def __init__(self, due: Callable[[], bool]) -> None:
        super().__init__()
        self.due = due

    @property
    def cancelled(self) -> bool:
        return self.due()


def _code(name: str, lines: int) -> str:
    return "".join(f"def {name}_{i}(self, x):\n    return self.{name} * x + {i}\n\n" for i in range(lines))


def _start_of(backend: LlamaCppBackend, ids: list[int], boundaries: tuple[int, ...], text: str) -> int:
    """The boundary where the part beginning with `text` starts."""
    return next(at for at in boundaries if backend.detokenize(ids[at:]).startswith(text))


def _fresh(path: Path, prompt: list[int]) -> str:
    with closing(_backend(path)) as fresh:
        return fresh.generate(prompt, PARAMS, CancelToken()).text


def test_a_feed_cut_short_keeps_everything_it_evaluated(backend: LlamaCppBackend, swa_model: Path) -> None:
    prompt = backend.tokenize(_code("alpha", 40))[:900]
    cut = backend.generate(prompt, PARAMS, StopWhen(lambda: backend._llm.n_tokens >= 330))
    stopped = len(backend.cached_tokens)
    assert cut.stop_reason == "deadline" and 330 <= stopped < len(prompt)
    assert stopped % WINDOW  # off the window's grid: only a checkpoint where it stopped keeps all of it
    # The next request at the same place continues where the cut one stopped, and writes what a fresh context does.
    whole = backend.generate(prompt, PARAMS, CancelToken())
    assert whole.reused_tokens == stopped
    assert whole.text == _fresh(swa_model, prompt)
    # After the cache moved on to another prompt, one that parts from the first exactly where the cut feed had
    # stopped still continues from there (the checkpoint travels with the first prompt's snapshot).
    backend.generate(backend.tokenize(_code("other", 30))[:700], PARAMS, CancelToken())
    parted = prompt[:stopped] + backend.tokenize("\n\nclass Zeta:\n    pass\n")
    assert common_prefix(parted, prompt) == stopped
    again = backend.generate(parted, PARAMS, CancelToken())
    assert again.reused_tokens == stopped
    assert again.text == _fresh(swa_model, parted)


def _snippets(middle: str) -> list[Snippet]:
    return [
        Snippet("definitions", "pkg/first.py", _code("first", 6)),
        Snippet("similar", "pkg/middle.py", middle),
        Snippet("similar", "pkg/last.py", _code("last", 6)),
    ]


def test_a_changed_passage_re_evaluates_from_its_own_start(backend: LlamaCppBackend, swa_model: Path) -> None:
    """A context passage near the top changes (the similar-code source found another one): the prompt is evaluated
    again from that passage's first token, not from the last multiple of the window before it."""
    window = Window(prefix=_code("body", 8) + "    value = ", suffix="", path="pkg/mod.py", language_id="python")
    before = assemble(backend, backend.info.format, window, _snippets(_code("middle", 5)))
    after = assemble(backend, backend.info.format, window, _snippets(_code("changed", 5)))
    start = _start_of(backend, before.ids, before.boundaries, "# pkg/middle.py")
    # The passage keeps its path comment: the prompts part a few tokens into it, the checkpoint is at its start.
    assert start % WINDOW and common_prefix(before.ids, after.ids) in range(start + 1, start + 24)
    assert len(before.ids) - start > 300  # far behind the live cache's reach: only a checkpoint brings it back
    backend.generate(before.ids, GenerationParams(max_tokens=6, boundaries=before.boundaries), CancelToken())
    result = backend.generate(after.ids, GenerationParams(max_tokens=6, boundaries=after.boundaries), CancelToken())
    assert result.reused_tokens == start
    assert result.text == _fresh(swa_model, after.ids)


def test_a_cancelled_warm_up_leaves_its_boundaries(backend: LlamaCppBackend, swa_model: Path) -> None:
    """The warm-up is cancelled by a real request whose context differs from the second passage on: it continues
    from that passage's start, which the warm-up had passed."""
    window = Window(prefix=_code("body", 8) + "    value = ", suffix="", path="pkg/mod.py", language_id="python")
    warm = assemble(backend, backend.info.format, window, _snippets(_code("middle", 5)))
    real = assemble(backend, backend.info.format, window, _snippets(_code("changed", 5)))
    start = _start_of(backend, warm.ids, warm.boundaries, "# pkg/middle.py")
    cancel = CancelWhen(lambda: backend._llm.n_tokens >= len(warm.ids) - 100)
    evaluated = backend.warm(warm.ids, cancel, warm.boundaries)
    assert start + 300 < evaluated < len(warm.ids)
    result = backend.generate(real.ids, GenerationParams(max_tokens=6, boundaries=real.boundaries), CancelToken())
    assert result.reused_tokens == start
    assert result.text == _fresh(swa_model, real.ids)


def test_boundaries_sit_on_each_part(
    tiny_fim_model: Path, swa_model: Path, family_model: Callable[[str], Path]
) -> None:
    """Each context part, the current file's header and the text before the cursor begin at a boundary: with
    file-separator tokens (Qwen2.5-Coder), suffix first (StarCoder: context as comments, the suffix before the
    prefix), and prefix-only (context as code)."""
    window = Window(
        prefix="\n    def go(self):\n        return ", suffix=" 1\n", path="pkg/mod.py", language_id="python"
    )
    snippets = [Snippet("definitions", "pkg/a.py", _code("a", 2)), Snippet("similar", "pkg/b.py", _code("b", 2))]
    for path in (tiny_fim_model, family_model("starcoder"), swa_model):
        with closing(LlamaCppBackend(path, Settings(n_threads=1, n_ctx=2048))) as b:
            prompt = assemble(b, b.info.format, window, snippets, repo="proj")
            texts = [b.detokenize(prompt.ids[at:]) for at in (0, *prompt.boundaries)]  # the first part starts it
            for snip in snippets:
                assert any(t.lstrip("#/ ").startswith(snip.path) for t in texts), (b.info.format.name, texts)
            assert any(t.startswith(window.prefix.lstrip("\n")) or t.startswith(window.prefix) for t in texts)
            if b.info.format.name == "starcoder":  # suffix first: where the suffix begins too
                assert any(t.startswith(window.suffix) for t in texts)
            assert sum(p.tokens for p in prompt.parts) == len(prompt.ids)


def test_checkpoints_are_thinned_where_they_add_least_reach() -> None:
    points = [Checkpoint(p, b"x") for p in (32, 40, 100, 300, 310, 600)]
    # 32 saves 32 tokens for prompts parting in [32, 40); 300 saves 200 in [300, 310): they are worth least.
    assert [c.position for c in thin(points, 4)] == [40, 100, 310, 600]
    assert [c.position for c in thin(points, 1)] == [600]  # the newest always stays
    # Checkpoints on the window's grid go before those placed where prompts part (a boundary, a stop point).
    grid = [Checkpoint(p, b"x", placed=False) for p in (512, 1024, 1536)]
    placed = [Checkpoint(p, b"x") for p in (520, 700, 1530, 1984)]
    assert [c.position for c in thin(grid + placed, 5)] == [520, 700, 1024, 1530, 1984]


def test_a_longer_sliding_window_snapshot_replaces_an_older_one_only_if_it_reaches_back() -> None:
    """A snapshot that continues an older prompt makes the older one redundant only where it can be taken back to
    the older one's end: sliding-window layers go back only through checkpoints."""
    older = Snapshot(tuple(range(600)), b"o", min_keep=600)
    states = PromptStates(budget_bytes=1000)
    states.add(older)
    states.add(Snapshot(tuple(range(1200)), b"n", min_keep=1200, checkpoints=(Checkpoint(256, b"c"),)))
    assert states.best(list(range(600)), 1000)[1] == 600  # the older one is still there
    states.add(Snapshot(tuple(range(1300)), b"m", min_keep=1300, checkpoints=(Checkpoint(590, b"c"),)))
    assert len(states) == 2  # the newest reaches back to 590: the older one (and the 1200 one? no: 590 < 1072) go


@pytest.mark.default_model
def test_the_embedded_model_keeps_a_cut_feed_and_parts_at_a_changed_passage() -> None:
    """Gemma 3 270M (sliding window 512): a request cut by the clock, then the same request again, reuses every
    token the first evaluated; a prompt whose second context passage changed continues from that passage's start.
    Both write what a fresh context writes."""
    from fimble.model.resolve import default_model_path

    path = default_model_path()
    settings = Settings(n_threads=2)
    window = Window(prefix=_code("body", 60) + "    value = ", suffix="", path="pkg/mod.py", language_id="python")
    with closing(LlamaCppBackend(path, settings)) as backend:
        assert backend._n_swa == 512
        before = assemble(backend, backend.info.format, window, _snippets(_code("middle", 12)))
        after = assemble(backend, backend.info.format, window, _snippets(_code("changed", 12)))
        start = _start_of(backend, before.ids, before.boundaries, "# pkg/middle.py")
        assert start % 512 and len(before.ids) - start > 1100  # out of the live cache's reach
        params = GenerationParams(max_tokens=8, boundaries=before.boundaries)
        cut = backend.generate(before.ids, params, StopWhen(lambda: backend._llm.n_tokens > start))
        stopped = len(backend.cached_tokens)
        assert cut.stop_reason == "deadline" and stopped % 512
        whole = backend.generate(before.ids, params, CancelToken())
        assert whole.reused_tokens == stopped
        parted = backend.generate(after.ids, GenerationParams(max_tokens=8, boundaries=after.boundaries), CancelToken())
        assert parted.reused_tokens == start
    # What the model writes is what a fresh context writes (restored cells and other batch sizes move logits by
    # rounding only).
    for prompt, result in ((before.ids, whole), (after.ids, parted)):
        with closing(LlamaCppBackend(path, settings)) as fresh:
            assert fresh.generate(prompt, GenerationParams(max_tokens=8), CancelToken()).text == result.text
