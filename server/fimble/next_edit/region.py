"""The editable region: the whole lines around the cursor a next-edit model may rewrite, and the text around them.

A fixed number of lines (Sweep's models were trained on 21) rather than a syntactic unit: the model then knows how
much to write back, and a misplaced end marker, the usual failure of region formats, cannot cost more than the window.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REGION_CHARS = 6000  # minified code, a data file: lines too long to rewrite token by token in time
MAX_LINE_CHARS = 1000


@dataclass(frozen=True)
class Region:
    start: int  # string offsets in the document: start of the first line ...
    end: int  # ... and just after the last line's newline (or the end of the text)
    first_line: int  # 0-based
    last_line: int  # inclusive
    text: str

    def contains(self, offset: int) -> bool:
        return self.start <= offset <= self.end


def _line_starts(text: str) -> list[int]:
    starts = [0]
    pos = text.find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return starts


def editable_region(text: str, offset: int, lines: int) -> Region:
    """`lines` whole lines around the offset's line (more above than below by at most one), shifted to stay inside
    the document."""
    starts = _line_starts(text)
    n_lines = len(starts) if not text.endswith("\n") else len(starts) - 1
    n_lines = max(1, n_lines)
    row = min(text.count("\n", 0, max(0, min(offset, len(text)))), n_lines - 1)
    above = (lines - 1) // 2
    first = max(0, row - above)
    last = min(n_lines - 1, first + lines - 1)
    first = max(0, last - lines + 1)
    start = starts[first]
    end = starts[last + 1] if last + 1 < len(starts) else len(text)
    return Region(start, end, first, last, text[start:end])


def surrounding(text: str, region: Region, max_lines: int) -> tuple[str, str]:
    """At most `max_lines` whole lines before and after the region: where it sits in the file."""
    above_start = region.start
    for _ in range(max_lines):
        if above_start == 0:
            break
        above_start = text.rfind("\n", 0, above_start - 1) + 1
    below_end = region.end
    for _ in range(max_lines):
        if below_end >= len(text):
            break
        nl = text.find("\n", below_end)
        below_end = len(text) if nl == -1 else nl + 1
    return text[above_start : region.start], text[region.end : below_end]


def too_large(region: Region) -> str:
    """Why the region cannot be rewritten (empty when it can)."""
    if len(region.text) > MAX_REGION_CHARS:
        return f"the region around the cursor is {len(region.text):,} characters (over {MAX_REGION_CHARS:,})"
    if any(len(line) > MAX_LINE_CHARS for line in region.text.split("\n")):
        return f"a line near the cursor is over {MAX_LINE_CHARS:,} characters"
    return ""
