"""Scores and summary statistics shared by the quality harness and the latency benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute), two-row dynamic programming: lines are short."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(prediction: str, target: str) -> float:
    """1 - normalised Levenshtein distance on stripped text, as in CodeXGLUE / RepoBench line completion."""
    p, t = prediction.strip(), target.strip()
    if not p and not t:
        return 1.0
    return 1.0 - levenshtein(p, t) / max(len(p), len(t))


def exact_match(prediction: str, target: str) -> bool:
    return prediction.strip() == target.strip()


def first_line(text: str) -> str:
    """The first line with content: a suggestion that opens with a newline still completes the next line."""
    for line in text.split("\n"):
        if line.strip():
            return line
    return ""


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def rounded(value: float, digits: int = 1) -> float | None:
    """JSON has no NaN: missing figures become null."""
    return None if math.isnan(value) else round(value, digits)
