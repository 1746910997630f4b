"""The prompt's budget arithmetic (prompt/budget.py) on its own: the shares, the refund and the per-source caps
that plan_prompt applies (test_ctx_prompt.py and test_accepted_prompt.py pin the prompts they produce)."""

from __future__ import annotations

import pytest

from fimble.errors import ContextOverflowError
from fimble.prompt.budget import (
    MAX_SUFFIX_TOKENS,
    SLACK_TOKENS,
    TokenEstimator,
    context_budget,
    fits,
    prompt_budget,
    refunded_prefix_budget,
    snippet_tokens,
    source_budget,
    suffix_budget,
)


def test_the_answer_and_the_slack_come_off_the_context_window() -> None:
    assert prompt_budget(4096, 128) == 4096 - 128 - SLACK_TOKENS
    with pytest.raises(ContextOverflowError, match=r"maxTokens \(128\).*160-token"):
        prompt_budget(160, 128)
    assert fits(4096 - 128, 4096, 128) and not fits(4096 - 127, 4096, 128)


def test_the_suffix_gets_a_quarter_up_to_its_cap_and_nothing_without_a_suffix_slot() -> None:
    assert suffix_budget(1000, uses_suffix=True) == 250
    assert suffix_budget(10_000, uses_suffix=True) == MAX_SUFFIX_TOKENS
    assert suffix_budget(1000, uses_suffix=False) == 0


def test_context_fills_free_room_up_to_its_share_and_unused_room_goes_back() -> None:
    assert context_budget(1000, 750, 100) == (400, 650)  # a short file: the share caps it
    assert context_budget(1000, 750, 700) == (50, 50)  # a full window lends none of its lines
    assert context_budget(1000, 750, 900) == (0, 0)
    assert refunded_prefix_budget(750, 400, 650, 10) is None  # the window gave nothing up
    assert refunded_prefix_budget(750, 400, 100, 200) == 550
    assert refunded_prefix_budget(750, 400, 100, 350) is None  # too little back to cut again


def test_snippets_and_sources_are_measured_with_the_estimate() -> None:
    count = TokenEstimator(chars_per_token=4.0)
    assert snippet_tokens([("a.py", "x" * 35)], count) == count("a.py\n" + "x" * 35) + 4
    assert source_budget("definitions", 1000) == 500
    assert source_budget("a source without a share", 1000) == 250
