"""The prompt's token budget, in one place: how the context window is shared out, how text is cut to fit a share,
and how tokens are counted where the tokenizer is too slow to ask.

The model's context holds the prompt and the answer (`maxTokens`); the prompt gets the rest less a little slack.
Where the format shows text after the cursor, that text gets a quarter of the prompt (at most 512 tokens); the
text before the cursor gets what remains. Context snippets first take the room the cursor window leaves free (a
short file, or the lines the window's start gave up to its grid), up to CONTEXT_SHARE of the prompt, and take lines
of the window itself only up to WINDOW_LOAN_SHARE; what the sources leave unused goes back to the window. Each
source is capped at its own share of the context budget (SOURCE_SHARE; the caps overlap, the merge keeps the best
within the total).

Cutting fits text to a budget at line boundaries with the real tokenizer; sources size dozens of candidates per
keystroke with a calibrated estimate instead (TokenEstimator), and the pipeline drops the last snippets if the
assembled prompt still overflows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from fimble.errors import ContextOverflowError
from fimble.model.backend import ModelBackend

# Room kept free in the context window besides the answer, for special tokens and tokenizer boundary effects.
SLACK_TOKENS = 16
# The text after the cursor gets a quarter of the prompt budget, up to this.
MAX_SUFFIX_TOKENS = 512
# Most of the prompt budget the context sources may fill, as a share.
CONTEXT_SHARE = 0.4
# How much of the window's own room context may take, as a share of the prompt budget. Context first fills the room
# the cursor window leaves free (a short file, the space before the window's start moved to its line grid); it
# takes lines of the window only up to this share, since lines of the file itself before the cursor were measured
# to be worth more than cross-file context in their place (`fimble eval --suite repo`).
WINDOW_LOAN_SHARE = 0.0
# Below this, no context source is asked (nothing useful fits).
MIN_CONTEXT_TOKENS = 16
# Unused context budget beyond this goes back to the window (less is not worth cutting the window again for).
MIN_REFUND_TOKENS = 64
# Tokens a snippet costs besides its path and text (separators, the file header's special tokens).
SNIPPET_OVERHEAD_TOKENS = 4
# Each source's cap as a share of the context budget (they overlap; the merge keeps the best within the total).
SOURCE_SHARE = {"scope": 0.25, "definitions": 0.5, "similar": 0.3, "ring": 0.35, "git": 0.25}
DEFAULT_SOURCE_SHARE = 0.25


# -- shares ------------------------------------------------------------------------------------------------------
def prompt_budget(n_ctx: int, max_tokens: int) -> int:
    """Tokens the prompt may take; ContextOverflowError when the answer leaves no useful room for one."""
    budget = n_ctx - max_tokens - SLACK_TOKENS
    if budget <= 32:
        raise ContextOverflowError(
            f"maxTokens ({max_tokens}) leaves no room for a prompt in a {n_ctx}-token "
            "context; lower maxTokens or raise nCtx."
        )
    return budget


def fits(prompt_tokens: int, n_ctx: int, max_tokens: int) -> bool:
    """Whether an assembled prompt leaves room for the answer (the slack is for estimates, not for this check)."""
    return prompt_tokens <= n_ctx - max_tokens


def suffix_budget(budget: int, uses_suffix: bool) -> int:
    return min(budget // 4, MAX_SUFFIX_TOKENS) if uses_suffix else 0


def context_budget(budget: int, window_budget: int, prefix_tokens: int) -> tuple[int, int]:
    """(tokens the context sources may fill, tokens of it the window left free). When the first is larger, the
    window's prefix is cut again to `window_budget - context`."""
    free = max(0, window_budget - prefix_tokens)
    return min(int(budget * CONTEXT_SHARE), free + int(budget * WINDOW_LOAN_SHARE)), free


def snippet_tokens(snippets: Iterable[tuple[str, str]], count: Callable[[str], int]) -> int:
    """Estimated tokens of (path, text) snippets as the prompt shows them."""
    return sum(count(f"{path}\n{text}") + SNIPPET_OVERHEAD_TOKENS for path, text in snippets)


def refunded_prefix_budget(window_budget: int, context: int, free: int, used: int) -> int | None:
    """The prefix budget once the sources used `used` of `context` tokens: None when the window keeps its cut (it
    lent nothing, or too little came back to be worth another cut)."""
    if context > free and context - used > MIN_REFUND_TOKENS:
        return window_budget - used
    return None


def source_budget(name: str, context: int) -> int:
    """One source's cap within the context budget."""
    return int(context * SOURCE_SHARE.get(name, DEFAULT_SOURCE_SHARE))


# -- cutting text to a budget ------------------------------------------------------------------------------------
# Cheap upper bound used before tokenizing: no tokenizer packs more than ~8 characters into a token on code.
_MAX_CHARS_PER_TOKEN = 8

# When the prefix must be cut, its first line is a multiple of this many lines into the document: as the user
# types on, the window's start (and so the KV cache for everything after it) stays put for a while instead of
# moving, and forcing a full re-evaluation, with every new line.
PREFIX_GRID_LINES = 16


def cut_prefix(backend: ModelBackend, text: str, budget: int) -> str:
    """The longest tail of `text` that fits `budget` tokens, starting at a line start when it must be cut."""
    if budget <= 0:
        return ""
    full = text
    if len(text) > budget * _MAX_CHARS_PER_TOKEN:
        text = text[-budget * _MAX_CHARS_PER_TOKEN :]
        if "\n" in text:
            text = text[text.index("\n") + 1 :]
    text = _fit_tail(backend, text, budget)
    if len(text) < len(full) and "\n" in text:
        start_line = full.count("\n", 0, len(full) - len(text))
        extra = -start_line % PREFIX_GRID_LINES
        lines = text.split("\n")
        if 0 < extra <= len(lines) // 2:  # never give up more than half the window for the alignment
            text = "\n".join(lines[extra:])
    return text


def _fit_tail(backend: ModelBackend, text: str, budget: int) -> str:
    while text and (n := len(backend.tokenize(text))) > budget:
        # drop roughly the excess share of lines in one step, then at least one line
        lines = text.split("\n")
        drop = max(1, int(len(lines) * (n - budget) / n))
        if len(lines) <= 1:
            return _tail_at_space(text, budget)  # one enormous line
        text = "\n".join(lines[drop:])
    return text


def cut_suffix(backend: ModelBackend, text: str, budget: int) -> str:
    """The longest head of `text` that fits `budget` tokens, ending at a line end when it must be cut."""
    if budget <= 0:
        return ""
    text = text[: budget * _MAX_CHARS_PER_TOKEN]
    while text and (n := len(backend.tokenize(text))) > budget:
        lines = text.split("\n")
        keep = min(len(lines) - 1, int(len(lines) * budget / n))
        if len(lines) <= 1:
            return _head_at_space(text, budget)
        text = "\n".join(lines[:keep])
    return text


def _tail_at_space(text: str, budget: int) -> str:
    """A tail of one very long line of at most `budget` characters (a token is at least one), starting after
    whitespace or punctuation so no identifier is cut in two."""
    tail = text[len(text) - budget :]
    for i, ch in enumerate(tail[: min(len(tail), 200)]):
        if not (ch.isalnum() or ch == "_"):
            return tail[i:]
    return tail


def _head_at_space(text: str, budget: int) -> str:
    head = text[:budget]
    for i in range(len(head) - 1, max(-1, len(head) - 200), -1):
        if not (head[i].isalnum() or head[i] == "_"):
            return head[: i + 1]
    return head


# -- counting without the tokenizer ------------------------------------------------------------------------------
# llama.cpp's tokenizer costs tens of microseconds per call plus a trip through the model thread, and the sources
# size dozens of candidates per keystroke: the ratio of characters per token is measured once per model on real
# text and applied with a safety margin.
DEFAULT_CHARS_PER_TOKEN = 3.0  # code in BPE vocabularies runs 3.2-4 chars/token; err towards over-counting
_SAFETY = 0.9


class TokenEstimator:
    def __init__(self, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN, per_line: float = 0.0) -> None:
        self.chars_per_token = max(0.5, chars_per_token)
        self.per_line = per_line  # extra tokens per line, e.g. comment markers when context renders as comments

    def __call__(self, text: str) -> int:
        extra = int(text.count("\n") * self.per_line) if self.per_line else 0
        return int(len(text) / self.chars_per_token) + 1 + extra


def calibrate(tokenize: Callable[[str], Sequence[int]], sample: str, max_chars: int = 4000) -> float:
    """Characters per token of `sample` under `tokenize`, shaded down so estimates err high."""
    sample = sample[-max_chars:]
    if len(sample) < 200:
        return DEFAULT_CHARS_PER_TOKEN
    n = len(tokenize(sample))
    if n <= 0:
        return DEFAULT_CHARS_PER_TOKEN
    return min(6.0, max(0.8, len(sample) / n * _SAFETY))


_ratios: dict[tuple[int, str], float] = {}


def token_counter(backend: ModelBackend, sample: str, per_line: float = 0.0) -> TokenEstimator:
    """An estimator calibrated once per loaded model on `sample` (the first request's text)."""
    key = (id(backend), backend.info.path)
    ratio = _ratios.get(key)
    if ratio is None:
        ratio = calibrate(backend.tokenize, sample)
        if len(_ratios) > 16:
            _ratios.clear()
        _ratios[key] = ratio
    return TokenEstimator(ratio, per_line)
