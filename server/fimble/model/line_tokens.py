"""Tokenizing code line by line, with a memo of each line's tokens.

Every keystroke's prompt is cut to a token budget and then encoded, and consecutive prompts share all but a line or
two, so tokenizing whole windows afresh (milliseconds for a few thousand tokens) is mostly repeated work. Text is
split before the indentation of each non-blank line; for tokenizers whose pre-tokenizer never merges across that
point (Gemma's, and the GPT-style regex BPEs of the code models) the lines' tokens concatenate to exactly the
tokens of the whole text. That is checked once per model on a probe text; a tokenizer that fails the check (an SPM
vocabulary that prefixes a space to every call, say) is always called on the whole text.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections.abc import Callable

# After a newline (or a run of blank lines), before the indentation of the next non-blank line.
_LINE_START = re.compile(r"(?<=\n)(?=[ \t]*\S)")
# Shorter texts go to the tokenizer directly: splitting would cost more than it saves.
_MIN_SPLIT_CHARS = 512
# The memo holds lines up to this many characters in all, then starts over. A prompt is at most n_ctx tokens (about
# 16K characters at 4096), so this keeps the lines of some thirty prompts: switching among open files still hits.
# Typing makes a new line per keystroke, which is why the bound is in characters (long lines would otherwise grow
# it without end). A memoised character costs about 5 bytes (the line, its ids as 32-bit ints, the dict entry):
# the memo plateaus near 2.5 MB.
MAX_MEMO_CHARS = 500_000
# Longer lines (minified code, data) are tokenized every time: each keystroke on one makes another near-copy, and
# a memo of them would spend its whole budget on a few keystrokes.
MAX_MEMO_LINE = 2_000
_PROBE = (
    'import os\n\n\nclass Point:\n    """A point."""\n\n    def __init__(self, x: int, y: int) -> None:\n'
    "        self.x = x  # café ünïcode\n    \n\t\tself.y = y\n\n    def norm(self):\n        return (\n"
    "            self.x ** 2 + self.y ** 2\n        ) ** 0.5\n\n\nfunction f(a) {\n  if (a) {\n    return 1;\n"
    "  }\n}\n    \n  \n  x = [1, 2,\n       3]\n"
)


class LineTokenMemo:
    """`tokenize` with the same answers as the wrapped tokenizer, served from per-line memos when that is exact."""

    def __init__(self, tokenize: Callable[[str], list[int]], max_chars: int = MAX_MEMO_CHARS) -> None:
        self._tokenize = tokenize
        self._max_chars = max_chars
        self._memo: dict[str, array[int]] = {}
        self._chars = 0  # characters of the memoised lines
        self._lock = threading.Lock()  # the model worker and the event loop (calibration) may both tokenize
        self.exact = self._by_lines(_PROBE) == tokenize(_PROBE)
        if not self.exact:
            self._memo.clear()
            self._chars = 0

    def tokenize(self, text: str) -> list[int]:
        if not self.exact or len(text) < _MIN_SPLIT_CHARS:
            return self._tokenize(text)
        return self._by_lines(text)

    def _by_lines(self, text: str) -> list[int]:
        out: list[int] = []
        memo = self._memo
        for line in _LINE_START.split(text):
            if len(line) > MAX_MEMO_LINE:
                out.extend(self._tokenize(line))
                continue
            ids = memo.get(line)
            if ids is None:
                ids = array("i", self._tokenize(line))
                with self._lock:
                    if self._chars + len(line) > self._max_chars:
                        memo.clear()  # cheaper than LRU bookkeeping; the next prompt refills it in a few ms
                        self._chars = 0
                    if line not in memo:
                        self._chars += len(line)
                    memo[line] = ids
            out.extend(ids)
        return out

    @property
    def chars(self) -> int:
        """Characters of the lines memoised now (at most `max_chars`)."""
        return self._chars
