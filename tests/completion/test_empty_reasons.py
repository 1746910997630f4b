"""An empty answer says why, and a suggestion the clock cut is never shown mid-line (nor cached as whole)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fimble.completion.filters import (
    DEFAULT_FILTERS,
    FilterContext,
    Suggestion,
    apply_filters,
    run_filters,
    why_dropped,
)
from fimble.completion.pipeline import CompletionRequest, complete, whole_lines
from fimble.model.backend import CancelToken
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.settings import Settings
from tests.conftest import server_env


def ctx(prefix: str, suffix: str = "") -> FilterContext:
    return FilterContext(prefix=prefix, suffix=suffix, language_id="python", path="a.py")


def test_the_filter_that_emptied_a_suggestion_is_named() -> None:
    # A line break right after a half-typed word: the scope filter cuts it all away, and drop_empty then drops
    # what is left. The reason names the scope filter, which is what happened.
    got = run_filters(Suggestion("\n    return items"), ctx("def f(items):\n    total = su", "\n"), DEFAULT_FILTERS)
    assert got.suggestion is None and got.dropped_by == "limit_to_scope"
    assert "past the end of the current block" in why_dropped(got)
    nothing = run_filters(Suggestion(""), ctx("x = "), DEFAULT_FILTERS)
    assert why_dropped(nothing) == "the model wrote nothing"
    kept = run_filters(Suggestion("    return s * 2"), ctx("def f(s):\n"), DEFAULT_FILTERS)
    assert kept.suggestion is not None and kept.dropped_by == ""


def test_whole_lines_keeps_only_finished_lines() -> None:
    assert whole_lines("a = 1\nb = fo") == "a = 1\n"
    assert whole_lines("b = fo") == ""
    assert whole_lines("x\ny\n") == "x\ny\n"


class ExpiresAfter(CancelToken):
    """A clock that runs out after `checks` looks at it: the generation loop looks once per token, so the cut
    falls at a known place without depending on how fast this machine is."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    def expired(self) -> bool:
        self.checks -= 1
        return self.checks < 0


@pytest.fixture(scope="module")
def backend(tiny_random_model: Path) -> LlamaCppBackend:
    return LlamaCppBackend(tiny_random_model, Settings(n_ctx=1024, n_threads=1))


def request(text: str) -> CompletionRequest:
    return CompletionRequest(
        text=text,
        offset=len(text),
        language_id="python",
        path="a.py",
        settings=Settings(max_tokens=40, context_sources=()),
    )


def test_a_generation_cut_by_the_clock_shows_whole_lines_only(backend: LlamaCppBackend) -> None:
    text = "def f(x):\n"
    filter_ctx = ctx(text)
    mid_line_cuts = 0
    for checks in range(2, 40, 3):
        cut = complete(backend, request(text), ExpiresAfter(checks))
        raw = cut.generation.text
        assert cut.generation.stop_reason == "deadline" and cut.cut_by_clock
        # What is shown is what the filters make of the finished lines: the line being written is left out.
        expected = apply_filters(Suggestion(whole_lines(raw)), filter_ctx, DEFAULT_FILTERS)
        assert cut.text == (expected.text if expected else "")
        if raw[len(whole_lines(raw)) :].strip():
            mid_line_cuts += 1
        if not cut.text:
            assert cut.empty_reason
    assert mid_line_cuts > 0, "no cut fell mid-line: the test did not exercise the trimming"
    before = complete(backend, request(text), ExpiresAfter(0))
    assert before.text == "" and before.empty_reason == "the time budget ran out before the model wrote anything"


def test_the_cli_says_why_nothing_is_shown(tmp_path: Path, tiny_random_model: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text("def f(x):\n    ")
    result = subprocess.run(
        [sys.executable, "-m", "fimble", "complete", f"{path}:2:5", "--model", str(tiny_random_model),
         "--time-budget-ms", "1", "--context", "none"],
        capture_output=True, text=True, timeout=300, env=server_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert "fimble: no suggestion: the time budget ran out" in result.stderr
