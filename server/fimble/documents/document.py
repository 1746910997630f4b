"""One open document and the position arithmetic LSP needs (UTF-16 columns) over it.

Edits are applied incrementally and reported as `TextEdit` with byte offsets and (row, byte column) points,
which is exactly what tree-sitter's `Tree.edit` needs to re-parse incrementally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fimble.errors import DocumentError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class TextEdit:
    """An applied edit in the coordinates tree-sitter uses (UTF-8 bytes; points are (row, byte column))."""

    start_byte: int
    old_end_byte: int
    new_end_byte: int
    start_point: tuple[int, int]
    old_end_point: tuple[int, int]
    new_end_point: tuple[int, int]


# LSP position encodings: how many code units one character counts for.
UTF16, UTF8, UTF32 = "utf-16", "utf-8", "utf-32"


def _units(ch: str, encoding: str) -> int:
    if encoding == UTF8:
        return len(ch.encode("utf-8", "surrogatepass"))
    if encoding == UTF32:
        return 1
    return 2 if ord(ch) > 0xFFFF else 1


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def units_len(text: str, encoding: str = UTF16) -> int:
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return utf16_len(text)


def utf16_to_index(line: str, character: int, encoding: str = UTF16) -> int:
    """Python index in `line` of a column counted in `encoding` code units; ValueError past the end of the line or
    inside a character."""
    if line.isascii() or encoding == UTF32:
        if character > len(line):
            raise ValueError(f"column {character} is past the end of the line ({len(line)} characters)")
        return character
    units = 0
    for index, ch in enumerate(line):
        if units >= character:
            if units > character:
                raise ValueError("column splits a surrogate pair" if encoding == UTF16 else "column splits a character")
            return index
        units += _units(ch, encoding)
    if units == character:
        return len(line)
    raise ValueError(f"column {character} is past the end of the line ({units} {encoding} units)")


def index_to_utf16(line: str, index: int, encoding: str = UTF16) -> int:
    return units_len(line[:index], encoding)


def split_lines(text: str) -> list[str]:
    """Lines without their terminators; '\\r\\n', '\\r' and '\\n' all end a line, as LSP says."""
    lines: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n" or ch == "\r":
            lines.append(text[start:i])
            if ch == "\r" and i + 1 < n and text[i + 1] == "\n":
                i += 1
            start = i + 1
        i += 1
    lines.append(text[start:])
    return lines


LineStarts = npt.NDArray[np.int64]


def line_starts(text: str, start: int = 0, end: int | None = None) -> list[int]:
    """String indexes where a line starts after a line break within text[start:end] (the first line's 0 is not
    included)."""
    return [m.end() for m in _LINE_BREAK.finditer(text, start, len(text) if end is None else end)]


# UTF-8 byte offsets, which tree-sitter counts in. str.isascii is O(1) in CPython, so ASCII text (most code) never
# copies a prefix to count its bytes. "surrogatepass" matches how texts are encoded for parsing: a lone surrogate from
# a client's broken UTF-16 costs three bytes instead of an exception.
def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of a string index."""
    return index if text.isascii() else utf8_len(text[:index])


class ByteMap:
    """UTF-8 byte offsets <-> string indices for one text, for code that maps many tree nodes back to the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._ascii = text.isascii()
        self._data = b"" if self._ascii else text.encode("utf-8", "surrogatepass")

    def to_index(self, byte: int) -> int:
        if self._ascii:
            return byte
        head = self._data[:byte]
        try:
            return len(head.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:  # a byte inside a character: count the whole characters before it
            return len(head.decode("utf-8", errors="ignore"))

    def to_byte(self, index: int) -> int:
        return byte_offset(self.text, index)


@dataclass
class Document:
    uri: str
    text: str
    version: int | None = None
    language_id: str = "plaintext"
    encoding: str = UTF16  # the position encoding negotiated with the client
    # Where each line starts, as a numpy array: an edit shifts the lines after it with one vectorised add, so a
    # keystroke in a 20 MB document costs about a millisecond here instead of re-scanning the text (a quarter of a
    # second), and the index takes 8 bytes a line instead of a Python int's 36.
    _line_starts: LineStarts = field(default_factory=lambda: np.zeros(1, dtype=np.int64), repr=False, compare=False)
    size_bytes: int = 0  # UTF-8 length of `text`, kept up to date by edits (the size limit compares it)

    def __post_init__(self) -> None:
        self._line_starts = np.array([0, *line_starts(self.text)], dtype=np.int64)
        self.size_bytes = utf8_len(self.text)

    # -- positions ---------------------------------------------------------------------------------------
    @property
    def line_count(self) -> int:
        return len(self._line_starts)

    def _row_of(self, offset: int) -> int:
        return int(np.searchsorted(self._line_starts, offset, side="right")) - 1

    def line(self, row: int) -> str:
        if not 0 <= row < self.line_count:
            raise DocumentError(f"Line {row} is outside the document ({self.line_count} lines).")
        start = int(self._line_starts[row])
        end = int(self._line_starts[row + 1]) if row + 1 < self.line_count else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def offset_at(self, line: int, character: int) -> int:
        """String index of an LSP position; DocumentError when it lies outside the document."""
        if line < 0 or character < 0:
            raise DocumentError(f"Position {line}:{character} is negative.")
        if line >= self.line_count:
            raise DocumentError(f"Line {line} is past the end of the document ({self.line_count} lines).")
        text = self.line(line)
        try:
            return int(self._line_starts[line]) + utf16_to_index(text, character, self.encoding)
        except ValueError as exc:
            raise DocumentError(f"Position {line}:{character} is invalid: {exc}.") from exc

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP (line, character in the negotiated encoding) of a string index."""
        offset = max(0, min(offset, len(self.text)))
        row = self._row_of(offset)
        start = int(self._line_starts[row])
        return row, index_to_utf16(self.text[start:offset], offset - start, self.encoding)

    def point_at(self, offset: int) -> tuple[int, int]:
        """tree-sitter point (row, UTF-8 byte column) of a string index."""
        row = self._row_of(offset)
        start = int(self._line_starts[row])
        return row, utf8_len(self.text[start:offset])

    def byte_offset(self, offset: int) -> int:
        return byte_offset(self.text, offset)

    def whole_edit(self) -> TextEdit:
        """The edit that brings an empty document to this one, for listeners that start afresh (as on open)."""
        end = len(self.text)
        return TextEdit(0, 0, self.size_bytes, (0, 0), (0, 0), self.point_at(end))

    # -- edits -------------------------------------------------------------------------------------------
    def apply_change(
        self, text: str, start: tuple[int, int] | None = None, end: tuple[int, int] | None = None
    ) -> TextEdit:
        """Apply one LSP content change (whole-document when `start` is None)."""
        if start is None or end is None:
            begin, finish = 0, len(self.text)
        else:
            begin = self.offset_at(*start)
            finish = self.offset_at(*end)
            if finish < begin:
                raise DocumentError(f"Edit range {start}-{end} ends before it starts.")
        start_byte = self.byte_offset(begin)
        removed_bytes = utf8_len(self.text[begin:finish])
        start_point = self.point_at(begin)
        old_end_point = self.point_at(finish)
        self._index_edit(begin, finish, text)
        self.size_bytes += utf8_len(text) - removed_bytes
        new_end = begin + len(text)
        return TextEdit(
            start_byte=start_byte,
            old_end_byte=start_byte + removed_bytes,
            new_end_byte=start_byte + utf8_len(text),
            start_point=start_point,
            old_end_point=old_end_point,
            new_end_point=self.point_at(new_end),
        )

    def _index_edit(self, begin: int, finish: int, new: str) -> None:
        """Replace text[begin:finish] by `new` and update the line index around the edit only.

        The line breaks are found again from the start of the line before the edit to the start of the line after
        it: one line of margin on each side, because a '\r' and a '\n' meeting across the edit's ends make one
        break where there were two (or the other way round). Lines after that window only move by the edit's
        length."""
        starts = self._line_starts
        old_len = len(self.text)
        self.text = self.text[:begin] + new + self.text[finish:]
        delta = len(new) - (finish - begin)
        first = max(0, self._row_of(begin) - 1)
        after = self._row_of(finish) + 1  # the first line that starts after the edit
        tail = starts[after:] + delta if after < len(starts) else starts[:0]
        window_end = int(starts[after]) + delta if after < len(starts) else old_len + delta
        found = [
            s
            for s in line_starts(self.text, int(starts[first]), window_end)
            # a break ending at the window's end starts the tail's first line, already counted there
            if s < window_end or after >= len(starts)
        ]
        self._line_starts = np.concatenate((starts[: first + 1], np.array(found, dtype=np.int64), tail))
