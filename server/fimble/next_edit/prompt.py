"""A next-edit prompt: the format's template filled with the region, the file around it, the recent edits and
context passages, cut to the model's context window (context first, then the oldest edits, then the file around the
region; the region itself is never cut)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fimble.agent.prompts import fence_for
from fimble.model.backend import ModelBackend
from fimble.next_edit.edit_formats import NextEditFormat, with_newline
from fimble.next_edit.recent_edits import Hunk
from fimble.next_edit.region import Region, surrounding
from fimble.prompt.assemble import Snippet
from fimble.prompt.formats import Piece, Special

SURROUND_LINES = 20  # lines of the file shown above and below the region, at most


@dataclass(frozen=True)
class NextEditPrompt:
    format: str
    ids: list[int]
    pieces: list[Piece]
    hunks: int  # recent edits that fit
    passages: int  # context passages that fit

    def text(self) -> str:
        return "".join(p.text if isinstance(p, Special) else p for p in self.pieces)


def _diff_lines(before: str, after: str) -> str:
    return "".join(f"-{line}" for line in with_newline(before).splitlines(keepends=True)) + "".join(
        f"+{line}" for line in with_newline(after).splitlines(keepends=True)
    )


def render_hunk(fmt: NextEditFormat, hunk: Hunk) -> list[Piece]:
    old_count = hunk.before.count("\n") or (1 if hunk.before else 0)
    new_count = hunk.after.count("\n") or (1 if hunk.after else 0)
    return fmt.render(
        fmt.hunk,
        path=hunk.path,
        before=with_newline(hunk.before),
        after=with_newline(hunk.after),
        diff=_diff_lines(hunk.before, hunk.after),
        old_start=str(hunk.start_line + 1),
        new_start=str(hunk.start_line + 1),
        old_count=str(old_count),
        new_count=str(new_count),
    )


def original_region(region: Region, path: str, hunks: Sequence[Hunk]) -> str:
    """The region as it was before the user's last edit, when that edit lies inside it (Sweep shows both)."""
    if not hunks:
        return region.text
    last = hunks[-1]
    if last.path != path:
        return region.text
    after_lines = last.after.count("\n")
    lines = region.text.splitlines(keepends=True)
    at = last.start_line - region.first_line
    if at < 0 or at + after_lines > len(lines):
        return region.text
    if "".join(lines[at : at + after_lines]) != last.after:
        return region.text
    return "".join(lines[:at]) + last.before + "".join(lines[at + after_lines :])


def _pieces(
    fmt: NextEditFormat,
    region: Region,
    cursor: int,
    path: str,
    language_id: str,
    around: tuple[str, str],
    hunks: Sequence[Hunk],
    passages: Sequence[Snippet],
    original: str,
) -> list[Piece]:
    above, below = around
    region_text = with_newline(region.text)
    at = max(0, min(cursor - region.start, len(region.text)))
    history: list[Piece] = [piece for hunk in hunks for piece in render_hunk(fmt, hunk)]
    context: list[Piece] = [
        piece for p in passages for piece in fmt.render(fmt.passage, path=p.path, content=with_newline(p.text))
    ]
    slots = {
        "path": path,
        "fence": fence_for(language_id),
        "above": above,
        "region": region_text,
        "below": with_newline(below) if below else "",
        "original": with_newline(original),
        "region_before_cursor": region.text[:at],
        "region_after_cursor": region_text[at:],
        "first_line": str(region.first_line + 1),
        "last_line": str(region.last_line + 1),
        "start_of_file": fmt.start_of_file if region.start - len(above) == 0 else "",
    }
    return fmt.render(fmt.prompt, **slots, history=history, context=context)


def build_prompt(
    backend: ModelBackend,
    fmt: NextEditFormat,
    *,
    text: str,
    region: Region,
    cursor: int,
    path: str,
    language_id: str,
    hunks: Sequence[Hunk],
    passages: Sequence[Snippet],
    budget_tokens: int,
) -> NextEditPrompt | None:
    """The prompt within `budget_tokens`, or None when even the region and its instructions do not fit."""
    original = original_region(region, path, hunks)
    kept_hunks, kept_passages = list(hunks), list(passages)
    surround = SURROUND_LINES
    encode: Callable[[list[Piece]], list[int]] = lambda pieces: backend.encode(pieces, fmt.add_bos)  # noqa: E731
    while True:
        around = surrounding(text, region, surround)
        pieces = _pieces(fmt, region, cursor, path, language_id, around, kept_hunks, kept_passages, original)
        ids = encode(pieces)
        if len(ids) <= budget_tokens:
            return NextEditPrompt(fmt.name, ids, pieces, len(kept_hunks), len(kept_passages))
        if kept_passages:
            kept_passages.pop()  # the lowest ranked
        elif len(kept_hunks) > 1:
            kept_hunks.pop(0)  # the oldest; the last edit is what the next one follows
        elif surround > 0:
            surround //= 2
        elif kept_hunks:
            kept_hunks.pop(0)
        else:
            return None
