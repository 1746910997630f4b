"""Typed-through cache: answer from recent suggestions while the user types what they show, without the model.

An entry remembers the document text around the cursor when a suggestion was made. A later request whose prefix
extends that prefix by characters the suggestion starts with (the user typed what the ghost text showed), with the
same text after the cursor, gets the rest of the suggestion at once. Requests that return to an earlier cursor
state (backspace, retyping) match the entry made there.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from fimble.completion.filters import Suggestion

# Only the tail of the prefix is compared character by character; the rest is checked by length and hash, which
# keeps a lookup in microseconds on large files.
_TAIL = 2048


@dataclass(frozen=True)
class _Key:
    uri: str
    head_len: int
    head_hash: int
    suffix_hash: int


@dataclass(frozen=True)
class _Entry:
    key: _Key
    tail: str  # the last characters of the prefix
    suggestions: tuple[Suggestion, ...]


def _key(uri: str, prefix: str, suffix: str) -> tuple[_Key, str]:
    cut = max(0, len(prefix) - _TAIL)
    return _Key(uri, cut, hash(prefix[:cut]), hash(suffix)), prefix[cut:]


class CompletionCache:
    def __init__(self, capacity: int = 128) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[_Key, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def put(self, uri: str, prefix: str, suffix: str, suggestions: list[Suggestion]) -> None:
        if not suggestions:
            return
        key, tail = _key(uri, prefix, suffix)
        with self._lock:
            self._entries[(key, tail)] = _Entry(key, tail, tuple(suggestions))
            self._entries.move_to_end((key, tail))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def lookup(self, uri: str, prefix: str, suffix: str) -> list[Suggestion] | None:
        """Suggestions still valid at this cursor, or None."""
        suffix_hash = hash(suffix)
        head_hashes: dict[int, int] = {}
        with self._lock:
            for (key, tail), entry in reversed(self._entries.items()):
                if key.uri != uri or key.suffix_hash != suffix_hash:
                    continue
                stored_len = key.head_len + len(tail)
                if len(prefix) < stored_len:
                    continue
                if key.head_len not in head_hashes:
                    head_hashes[key.head_len] = hash(prefix[: key.head_len])
                if head_hashes[key.head_len] != key.head_hash:
                    continue
                if prefix[key.head_len : stored_len] != tail:
                    continue
                typed = prefix[stored_len:]
                rest = [
                    Suggestion(text=s.text[len(typed) :], replace_suffix=s.replace_suffix)
                    for s in entry.suggestions
                    if s.text.startswith(typed) and len(s.text) > len(typed)
                ]
                if rest:
                    self._entries.move_to_end((key, tail))
                    self.hits += 1
                    return rest
            self.misses += 1
            return None

    def forget(self, uri: str) -> None:
        with self._lock:
            for k in [k for k in self._entries if k[0].uri == uri]:
                del self._entries[k]
