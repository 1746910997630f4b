"""The prompt predicted for the request after an accept (speculative warm-up) is the one that request builds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fimble.completion.filters import Suggestion
from fimble.completion.pipeline import CompletionRequest, accepted_prompt, plan_prompt
from fimble.context.engine import ContextEngine
from fimble.documents import DocumentStore
from fimble.model.backend import ModelBackend
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.settings import Settings

URI = "file:///work/shapes.py"
# A source with nothing to say here (no repository): the engine still snaps the window to the syntax tree, and the
# prompt is the window alone (which snippets the sources propose after an accept is theirs to decide).
SETTINGS = Settings(context_sources=("git",), max_tokens=16, n_ctx=1024, n_threads=1)


def module_text() -> str:
    """A long class with text after the cursor too: the window is cut, and snapped, at both ends."""
    methods = "".join(
        f"    def area_{i}(self, scale: float) -> float:\n        value = self.width * scale + {i}\n"
        f"        return value\n\n"
        for i in range(80)
    )
    return f"import math\n\n\nclass Shape:\n    def __init__(self, width: float) -> None:\n        self.width = width\n\n{methods}"


@pytest.fixture
def backend(tiny_fim_model: Path) -> Iterator[ModelBackend]:
    model = LlamaCppBackend(tiny_fim_model, SETTINGS)
    yield model
    model.close()


@pytest.mark.parametrize(
    ("marker", "suggestion", "window_moves"),
    [
        ("value = self.width * scale + 40\n", Suggestion("        extra = math.sqrt(value)\n"), False),
        ("return value\n\n    def area_41", Suggestion("_old"), False),
        ("def area_60(self, scale: float)", Suggestion(" -> float:", replace_suffix=10), False),
        # so many lines that the window's start moves on to a later grid line, and is snapped there
        (
            "value = self.width * scale + 20\n",
            Suggestion("".join(f"        v{i} = value * {i}\n" for i in range(40))),
            True,
        ),
    ],
)
def test_the_accepted_prompt_is_the_prompt_built_after_the_accept(
    backend: ModelBackend, marker: str, suggestion: Suggestion, window_moves: bool
) -> None:
    store = DocumentStore()
    engine = ContextEngine(None, cache_file=False)
    engine.attach(store)
    doc = store.open(URI, module_text(), 1, "python")
    offset = doc.text.index(marker) + len(marker)

    def request(text: str, at: int) -> CompletionRequest:
        return CompletionRequest(
            text=text, offset=at, language_id="python", path="shapes.py", settings=SETTINGS, uri=URI, context=engine
        )

    _, layout = plan_prompt(backend, request(doc.text, offset))
    assert layout.snap is not None and layout.cut[0] > 0 and layout.cut[1] < len(doc.text)  # cut at both ends
    predicted = accepted_prompt(backend, request(doc.text, offset), suggestion, layout)
    line, column = doc.position_at(offset)
    end = doc.position_at(offset + suggestion.replace_suffix)
    store.change(URI, 2, [(suggestion.text, (line, column), end)])
    after, moved = plan_prompt(backend, request(doc.text, offset + len(suggestion.text)))
    assert (moved.cut[0] > layout.cut[0]) == window_moves
    assert predicted.text() == after.text()
    assert predicted.ids == after.ids
    engine.close()
