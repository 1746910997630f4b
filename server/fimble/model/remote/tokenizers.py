"""Token budgets without a local tokenizer.

The pipeline measures everything in tokens (`backend.tokenize`, `backend.encode`) and hands token ids to
`generate`. A remote engine offers one of two things:

- The server's own tokenizer (llama-server `/tokenize`, vLLM `/tokenize`, llama-cpp-python `/extras/tokenize`):
  exact counts. `CachedTokenizer` keeps the last answers, because the window cutter asks for the same text several
  times per keystroke and each call is a round trip.
- Nothing (Ollama's and LM Studio's OpenAI APIs): `EstimateTokenizer` makes *virtual* tokens. Text is split the way
  BPE pre-tokenizers split code (words, numbers, punctuation runs, whitespace runs) and long pieces are cut every
  `width` characters; each piece's id *is* its UTF-8 text packed into an integer, so ids decode back to the exact
  text with no table and no state. The width starts at `DEFAULT_CHARS_PER_PIECE`: on fimble's Python and
  llama.cpp's C++ (Gemma 3's tokenizer, ~3.5 characters per token) width 5 gives 1.06-1.11 estimated tokens per
  real one, and a 10% safety margin on top makes estimates err towards a shorter prompt, never an overflow. After
  every completion the width is recalibrated from the `prompt_tokens` the server reports (OpenAI `usage`, Ollama
  `prompt_eval_count`), so a model with a smaller or larger vocabulary converges within a few requests.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

# Identifier-ish runs (with one leading space, as BPE vocabularies glue it on), digit groups, punctuation runs,
# newlines with the indentation that follows, other whitespace.
_PIECES = re.compile(r" ?[^\W\d]+| ?\d{1,3}| ?[^\w\s]+|\n[ \t]*|[ \t]+|\s")
DEFAULT_CHARS_PER_PIECE = 5.0
_SAFETY = 1.1
_MIN_WIDTH, _MAX_WIDTH = 1.0, 12.0
_EMA = 0.3  # weight of the newest observation: adapts within a few completions, ignores one odd prompt


class CachedTokenizer:
    """A server tokenizer behind a small LRU cache keyed by text."""

    def __init__(self, tokenize: Callable[[str], list[int]], capacity: int = 64) -> None:
        self._tokenize = tokenize
        self._capacity = capacity
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, text: str) -> list[int]:
        if not text:
            return []
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return list(hit)
        ids = self._tokenize(text)
        with self._lock:
            self._cache[text] = list(ids)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return list(ids)


class EstimateTokenizer:
    """Virtual tokens whose count tracks the server's real tokenizer; ids decode back to the exact text.

    Text ids are non-negative (packed UTF-8 with a 0x01 lead byte so leading NULs survive); special tokens get
    negative ids from a small table, so they can never collide with text.
    """

    def __init__(self, chars_per_piece: float = DEFAULT_CHARS_PER_PIECE) -> None:
        self.base_width = chars_per_piece
        self.ratio = 1.0  # real tokens per estimated token, learned from the server's usage reports
        self.observations = 0
        self._specials: dict[str, int] = {}
        self._special_text: dict[int, str] = {}

    @property
    def width(self) -> float:
        return min(_MAX_WIDTH, max(_MIN_WIDTH, self.base_width / (self.ratio * _SAFETY)))

    def tokenize(self, text: str) -> list[int]:
        width = self.width
        ids: list[int] = []
        for m in _PIECES.finditer(text):
            piece = m.group()
            n = max(1, math.ceil(len(piece) / width))
            step = len(piece) / n
            for i in range(n):
                chunk = piece[round(i * step) : round((i + 1) * step)]
                ids.append(int.from_bytes(b"\x01" + chunk.encode("utf-8", "surrogatepass"), "big"))
        return ids

    def count(self, text: str) -> int:
        return len(self.tokenize(text))

    def special_id(self, text: str) -> int:
        tid = self._specials.get(text)
        if tid is None:
            tid = -(len(self._specials) + 1)
            self._specials[text] = tid
            self._special_text[tid] = text
        return tid

    def detokenize(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        for tid in ids:
            if tid < 0:
                out.append(self._special_text.get(tid, ""))
            elif tid > 0:
                raw = tid.to_bytes((tid.bit_length() + 7) // 8, "big")[1:]
                out.append(raw.decode("utf-8", "surrogatepass"))
        return "".join(out)

    def observe(self, estimated: int, actual: int) -> None:
        """Calibrate from a completion: we sent `estimated` virtual tokens, the server counted `actual`."""
        if estimated < 16 or actual <= 0:
            return  # tiny prompts are dominated by special tokens and BOS; they say little about text
        # The estimate ran at ratio r with the safety factor S; the ratio that would have made it `actual * S`:
        sample = self.ratio * _SAFETY * actual / estimated
        self.ratio = sample if self.observations == 0 else (1 - _EMA) * self.ratio + _EMA * sample
        self.ratio = min(8.0, max(0.125, self.ratio))
        self.observations += 1
