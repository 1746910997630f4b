"""A model's answer to a fix prompt, made into a candidate rewrite of the unit: the code out of its fences, the
unit's own indentation put back, and whatever it went on to write after the unit cut off. Pure text functions;
`fix_checks.py` decides whether the candidate is a fix.
"""

from __future__ import annotations

import difflib


def extract_code(raw: str) -> str:
    """The code in a model's answer: inside the first fence when the model opened one, up to a closing fence."""
    text = raw
    head = text.lstrip()
    if head.startswith("```"):
        text = head.split("\n", 1)[1] if "\n" in head else ""
    end = text.find("```")
    if end != -1:
        text = text[:end]
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip()


def _indent_of(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return ""


def reindent(candidate: str, original: str) -> str:
    """Models often return a method without its class indentation; put the unit's own indentation back."""
    want, have = _indent_of(original), _indent_of(candidate)
    if want == have:
        return candidate
    lines = candidate.split("\n")
    if not all(line.startswith(have) or not line.strip() for line in lines):
        return candidate
    return "\n".join(want + line[len(have) :] if line.strip() else line for line in lines)


def similarity(a: str, b: str) -> float:
    """How much of the code two texts share, ignoring indentation and spacing (which would make any two snippets
    of the same language look alike)."""
    a, b = _squash(a), _squash(b)
    if len(a) + len(b) > 8000:  # character matching is quadratic; lines are enough for big units
        return difflib.SequenceMatcher(None, a.split("\n"), b.split("\n"), autojunk=False).ratio()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _squash(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.split("\n") if line.strip())


_CLOSERS = (")", "]", "}", "else", "elif", "except", "finally", "catch", "end")


def trim_to_unit(candidate: str, unit: str) -> tuple[str, bool]:
    """Cut an answer that goes on past the end of the unit (models continue with the next function): the unit ends
    where its lines return to its first line's indentation as often as in the original. Returns (text, trimmed)."""

    def outdented(lines: list[str], indent: int) -> list[int]:
        return [
            i for i, line in enumerate(lines)
            if i > 0 and line.strip() and len(line) - len(line.lstrip()) <= indent
            and not line.strip().startswith(_CLOSERS)
        ]  # fmt: skip

    unit_lines = unit.split("\n")
    first = next((line for line in unit_lines if line.strip()), "")
    indent = len(first) - len(first.lstrip())
    allowed = len(outdented(unit_lines, indent))
    lines = candidate.split("\n")
    cand_first = next((line for line in lines if line.strip()), "")
    if similarity(first, cand_first) < 0.6:
        return candidate, False  # it does not start like the unit: nothing to salvage by cutting its end
    extra = outdented(lines, len(cand_first) - len(cand_first.lstrip()))
    if len(extra) <= allowed:
        return candidate, False
    return "\n".join(lines[: extra[allowed]]).rstrip(), True
