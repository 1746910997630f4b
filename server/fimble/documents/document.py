"""One open document and the position arithmetic LSP needs (UTF-16 columns) over it.

Edits are applied incrementally and reported as `TextEdit` with byte offsets and (row, byte column) points,
which is exactly what tree-sitter's `Tree.edit` needs to re-parse incrementally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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


@dataclass
class Document:
    uri: str
    text: str
    version: int | None = None
    language_id: str = "plaintext"
    encoding: str = UTF16  # the position encoding negotiated with the client
    _line_starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._index_lines()

    # -- positions ---------------------------------------------------------------------------------------
    def _index_lines(self) -> None:
        # re.finditer runs in C: a 6,000-line file re-indexes in well under a millisecond on each keystroke.
        self._line_starts = [0, *(m.end() for m in _LINE_BREAK.finditer(self.text))]

    @property
    def line_count(self) -> int:
        return len(self._line_starts)

    def line(self, row: int) -> str:
        if not 0 <= row < self.line_count:
            raise DocumentError(f"Line {row} is outside the document ({self.line_count} lines).")
        start = self._line_starts[row]
        end = self._line_starts[row + 1] if row + 1 < self.line_count else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def offset_at(self, line: int, character: int) -> int:
        """String index of an LSP position; DocumentError when it lies outside the document."""
        if line < 0 or character < 0:
            raise DocumentError(f"Position {line}:{character} is negative.")
        if line >= self.line_count:
            raise DocumentError(f"Line {line} is past the end of the document ({self.line_count} lines).")
        text = self.line(line)
        try:
            return self._line_starts[line] + utf16_to_index(text, character, self.encoding)
        except ValueError as exc:
            raise DocumentError(f"Position {line}:{character} is invalid: {exc}.") from exc

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP (line, character in the negotiated encoding) of a string index."""
        import bisect

        offset = max(0, min(offset, len(self.text)))
        row = bisect.bisect_right(self._line_starts, offset) - 1
        start = self._line_starts[row]
        return row, index_to_utf16(self.text[start:offset], offset - start, self.encoding)

    def point_at(self, offset: int) -> tuple[int, int]:
        """tree-sitter point (row, UTF-8 byte column) of a string index."""
        import bisect

        row = bisect.bisect_right(self._line_starts, offset) - 1
        start = self._line_starts[row]
        return row, len(self.text[start:offset].encode("utf-8"))

    def byte_offset(self, offset: int) -> int:
        return len(self.text[:offset].encode("utf-8"))

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
        old_end_byte = start_byte + len(self.text[begin:finish].encode("utf-8"))
        start_point = self.point_at(begin)
        old_end_point = self.point_at(finish)
        self.text = self.text[:begin] + text + self.text[finish:]
        self._index_lines()
        new_end = begin + len(text)
        return TextEdit(
            start_byte=start_byte,
            old_end_byte=old_end_byte,
            new_end_byte=start_byte + len(text.encode("utf-8")),
            start_point=start_point,
            old_end_point=old_end_point,
            new_end_point=self.point_at(new_end),
        )
