"""The generation stop check: generation ends as soon as the suggestion is whole, not at maxTokens."""

from __future__ import annotations

from fimble.completion.filters import FilterContext
from fimble.completion.pipeline import completion_done


def feed(ctx: FilterContext, text: str) -> str:
    """The text generated when the stop check first says done (fed one character at a time)."""
    done = completion_done(ctx)
    for i in range(1, len(text) + 1):
        if done(text[:i]):
            return text[:i]
    return text


def test_mid_line_stops_at_the_end_of_the_line() -> None:
    ctx = FilterContext(prefix="total = compute(", suffix="x)\nprint(total)\n", language_id="python")
    assert feed(ctx, "a, b\nprint(1)\nprint(2)") == "a, b\n"


def test_block_stops_when_the_generated_code_leaves_the_scope() -> None:
    ctx = FilterContext(prefix="def area(r):\n    ", suffix="\n", language_id="python")
    out = feed(ctx, "pi = 3.14\n    return pi * r * r\n\ndef other():\n    pass\n")
    assert out == "pi = 3.14\n    return pi * r * r\n\ndef other():\n"


def test_block_inside_scope_runs_on() -> None:
    ctx = FilterContext(prefix="def f(x):\n    ", suffix="\n", language_id="python")
    text = "y = x\n    z = y\n    return z"
    assert feed(ctx, text) == text


def test_half_typed_statement_stops_at_the_next_statement() -> None:
    ctx = FilterContext(prefix="def f(items):\n    total = su", suffix="\n", language_id="python")
    assert feed(ctx, "m(items)\n    count = len(items)\n    return 1") == "m(items)\n    count = len(items)\n"


def test_line_break_after_a_half_typed_word_stops_at_once() -> None:
    ctx = FilterContext(prefix="def f(items):\n    total = su", suffix="\n", language_id="python")
    assert feed(ctx, "\n    return items\n    more") == "\n"
