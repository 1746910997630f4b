"""How often names occur in a document (`str.count`), kept from one keystroke to the next.

The definitions source asks, for each of a file's imported names, whether the file uses it: a substring count over
the whole text. On a 5,000-line file with 150 imports that is 30 ms per keystroke. Between keystrokes the text
changes in one small region, so each count is carried over and only that region is counted again: exactly the same
numbers for a fraction of a millisecond.
"""

from __future__ import annotations

import functools

# Names kept at most; past it the counts start afresh (a file's imports are a few hundred names).
MAX_NAMES = 4096


class Mentions:
    """`count(text, name)` == `text.count(name)` and `occurs(text, name)` == `name in text`, served from what the
    previous text held where they can be."""

    def __init__(self) -> None:
        self._text = ""
        self._all: dict[str, int] = {}  # every occurrence, overlapping ones too: exact to carry over any edit

    def count(self, text: str, name: str) -> int:
        if overlaps_itself(name):
            return text.count(name)  # str.count skips overlapping matches; rare in names (`__all__`)
        return self._occurrences(text, name)

    def occurs(self, text: str, name: str) -> bool:
        return self._occurrences(text, name) > 0

    def _occurrences(self, text: str, name: str) -> int:
        if text is not self._text:
            self._rebase(text)
        n = self._all.get(name)
        if n is None:
            if len(self._all) >= MAX_NAMES:
                self._all.clear()
            n = self._all[name] = occurrences(text, name)
        return n

    def _rebase(self, text: str) -> None:
        old = self._text
        self._text = text
        if not self._all:
            return
        start = common_prefix(old, text)
        tail = common_suffix(old, text, min(len(old), len(text)) - start)
        old_end, new_end = len(old) - tail, len(text) - tail
        if (old_end - start) + (new_end - start) > len(text) // 2:
            self._all.clear()  # another text, or most of it changed: count afresh when asked
            return
        for name, n in self._all.items():
            # A match that no edit touched lies wholly before `start` or after the end: only those reaching into
            # the changed region differ, and they start within len(name) - 1 characters before it.
            reach = len(name) - 1
            lo = max(0, start - reach)
            self._all[name] = (
                n + occurrences(text, name, lo, new_end + reach) - occurrences(old, name, lo, old_end + reach)
            )


def occurrences(text: str, name: str, start: int = 0, end: int | None = None) -> int:
    """Every occurrence of `name` in `text[start:end]`, overlapping ones too."""
    end = len(text) if end is None else min(end, len(text))
    if not overlaps_itself(name):
        return text.count(name, start, end)
    n, at = 0, text.find(name, start, end)
    while at != -1:
        n += 1
        at = text.find(name, at + 1, end)
    return n


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of `a` and `b` (by halving: slices compare in C)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo], a[:hi + 1] != b[:hi + 1]
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: str, b: str, most: int) -> int:
    """Length of the longest common suffix of `a` and `b`, at most `most`."""
    lo, hi = 0, max(0, most)
    if hi and a[len(a) - hi :] == b[len(b) - hi :]:
        return hi
    while lo < hi:  # invariant: the last lo characters agree, the last hi + 1 do not
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid : len(a) - lo] == b[len(b) - mid : len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@functools.lru_cache(maxsize=MAX_NAMES)
def overlaps_itself(name: str) -> bool:
    """Whether two occurrences of `name` can overlap (a proper prefix is also a suffix, as in `__all__`)."""
    return any(name[:i] == name[len(name) - i :] for i in range(1, len(name)))
