"""The cursor window: prefix and suffix around the cursor, cut to a token budget at line boundaries."""

from __future__ import annotations

from fimble.model.backend import ModelBackend

# Cheap upper bound used before tokenizing: no tokenizer packs more than ~8 characters into a token on code.
_MAX_CHARS_PER_TOKEN = 8


def cut_prefix(backend: ModelBackend, text: str, budget: int) -> str:
    """The longest tail of `text` that fits `budget` tokens, starting at a line start when it must be cut."""
    if budget <= 0:
        return ""
    text = text[-budget * _MAX_CHARS_PER_TOKEN :] if len(text) > budget * _MAX_CHARS_PER_TOKEN else text
    while text and len(backend.tokenize(text)) > budget:
        n = len(backend.tokenize(text))
        # drop roughly the excess share of lines in one step, then at least one line
        lines = text.split("\n")
        drop = max(1, int(len(lines) * (n - budget) / n))
        if len(lines) <= 1:
            return text[len(text) - budget :]  # one enormous line: keep its tail
        text = "\n".join(lines[drop:])
    return text


def cut_suffix(backend: ModelBackend, text: str, budget: int) -> str:
    """The longest head of `text` that fits `budget` tokens, ending at a line end when it must be cut."""
    if budget <= 0:
        return ""
    text = text[: budget * _MAX_CHARS_PER_TOKEN]
    while text and len(backend.tokenize(text)) > budget:
        n = len(backend.tokenize(text))
        lines = text.split("\n")
        keep = min(len(lines) - 1, int(len(lines) * budget / n))
        if len(lines) <= 1:
            return text[:budget]
        text = "\n".join(lines[:keep])
    return text
