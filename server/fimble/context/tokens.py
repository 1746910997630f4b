"""Token counts without the tokenizer: sources size dozens of candidates per keystroke, and llama.cpp's tokenizer
costs tens of microseconds per call plus a trip through the model thread. The ratio of characters per token is
measured once per model on real text and applied with a safety margin; the pipeline tokenizes the final prompt
exactly and drops the last snippets if the estimate was short."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fimble.context.source_types import ContextResult
from fimble.model.backend import ModelBackend
from fimble.prompt.assemble import Prompt, PromptPart

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


def label_parts(prompt: Prompt, context: ContextResult, window_ms: float) -> None:
    """Give each prompt part the time its source took; sources that contributed nothing get an empty part saying
    why, so --show-prompt and fimble/debugPrompt account for every source."""
    seen: set[str] = set()
    for part in prompt.parts:
        if part.source == "cursor window":
            part.ms = window_ms
        elif part.source not in seen and part.source in context.timings_ms:
            part.ms = context.timings_ms[part.source]
        seen.add(part.source)
    missing = [
        PromptPart(name, 0, ms, text="(syntax tree update)" if name == "syntax" else f"({context.notes.get(name, '')})")
        for name, ms in context.timings_ms.items()
        if name not in seen
    ]
    missing += [
        PromptPart(name, 0, 0.0, text=f"({note})")
        for name, note in context.notes.items()
        if name not in seen and name not in context.timings_ms
    ]
    at = next((i for i, p in enumerate(prompt.parts) if p.source == "cursor window"), len(prompt.parts))
    prompt.parts[at:at] = missing
