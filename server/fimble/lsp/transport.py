"""LSP framing over a byte stream, with limits: no header or body a client sends can exhaust memory.

pygls reads `Content-Length` with a case-sensitive pattern, allocates whatever length a header announces, and reads
header lines without a bound. Here header lines and their count are capped, the header name is matched
case-insensitively (LSP headers follow HTTP's rules), and a body over the limit is read and thrown away in chunks,
so one `Content-Length: 1000000000000` costs a log line instead of the process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

# Larger than any document the editor may open and track (documents over `maxDocumentBytes` are still tracked
# for edits), far below what would hurt a laptop.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_LINE = 8192
MAX_HEADERS = 32
_SKIP_CHUNK = 1 << 20
_CONTENT_LENGTH = re.compile(rb"^content-length\s*:\s*(\S*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Frame:
    """One framed message: its body, or (body None) why it was not read."""

    body: bytes | None
    problem: str = ""


def read_frame(stream: BinaryIO, max_bytes: int = MAX_MESSAGE_BYTES) -> Frame | None:
    """The next frame from `stream` (blocking), or None at end of stream."""
    length: int | None = None
    problem = ""
    lines = 0
    started = False
    while True:
        line = stream.readline(MAX_HEADER_LINE)
        if not line:
            return None
        if not line.endswith(b"\n"):
            # Longer than any real header: drop the rest of it without holding it.
            if not _skip_line(stream):
                return None
            problem = problem or f"a header line longer than {MAX_HEADER_LINE} bytes"
            started = True
            continue
        stripped = line.strip()
        if not stripped:
            if not started:
                continue  # stray blank lines between messages
            break
        started = True
        lines += 1
        if lines > MAX_HEADERS:
            problem = problem or f"more than {MAX_HEADERS} header lines"
            continue
        match = _CONTENT_LENGTH.match(stripped)
        if match is None:
            if b":" not in stripped:
                problem = problem or f"a malformed header line {stripped[:60]!r}"
            continue  # Content-Type and unknown headers are ignored
        value = match.group(1)
        if not value.isdigit() or length is not None:
            problem = problem or f"a bad Content-Length header {stripped[:60]!r}"
            continue
        length = int(value)
    if length is None:
        return Frame(None, problem or "a message without a Content-Length header")
    if length > max_bytes:
        if not _skip(stream, length):
            return None
        return Frame(None, f"a message of {length} bytes, over the {max_bytes}-byte limit")
    body = _read_exactly(stream, length)
    if body is None:
        return None
    if problem:
        return Frame(None, problem)
    return Frame(body)


def _read_exactly(stream: BinaryIO, length: int) -> bytes | None:
    parts: list[bytes] = []
    left = length
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _skip(stream: BinaryIO, length: int) -> bool:
    left = length
    while left > 0:
        chunk = stream.read(min(left, _SKIP_CHUNK))
        if not chunk:
            return False
        left -= len(chunk)
    return True


def _skip_line(stream: BinaryIO) -> bool:
    while True:
        chunk = stream.readline(_SKIP_CHUNK)
        if not chunk:
            return False
        if chunk.endswith(b"\n"):
            return True
