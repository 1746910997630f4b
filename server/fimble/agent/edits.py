"""A rewrite as the smallest edits that produce it, wrapped in a versioned TextDocumentEdit.

Small hunks rather than one whole-unit replacement keep the user's cursor, folds and breakpoints where they were,
and make the preview in the editor show just what changed. The document version in the edit makes the client refuse
it if the text changed after the fix was computed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lsprotocol import types

from fimble.documents.document import Document


@dataclass(frozen=True)
class Replacement:
    start: int  # string indices into the original text
    end: int
    text: str


def _trim(old: str, new: str, start: int) -> Replacement | None:
    """One hunk with its common prefix and suffix removed."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new[len(new) - 1 - suffix]:
        suffix += 1
    if prefix == len(old) == len(new):
        return None
    return Replacement(start + prefix, start + len(old) - suffix, new[prefix : len(new) - suffix])


def minimal_replacements(old: str, new: str) -> list[Replacement]:
    """Non-overlapping replacements, in order, that turn `old` into `new`: line hunks trimmed to the characters."""
    if old == new:
        return []
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    offsets = [0]
    for line in old_lines:
        offsets.append(offsets[-1] + len(line))
    out: list[Replacement] = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        rep = _trim("".join(old_lines[i1:i2]), "".join(new_lines[j1:j2]), offsets[i1])
        if rep is not None:
            out.append(rep)
    return out


_WORDS = re.compile(r"\w+|\s+|[^\w\s]")


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def word_replacements(old: str, new: str) -> list[Replacement]:
    """Like `minimal_replacements`, but each changed line is split further at word boundaries, so that renaming a
    word used twice on a line is two small replacements, not one covering the text between them."""
    out: list[Replacement] = []
    for rep in minimal_replacements(old, new):
        # Widen to whole words first: the character trim may have split one ("radius" -> "r" keeps the "r").
        start, end = rep.start, rep.end
        while start > 0 and _is_word(old[start - 1]):
            start -= 1
        while end < len(old) and _is_word(old[end]):
            end += 1
        text = old[start : rep.start] + rep.text + old[rep.end : end]
        a, b = _WORDS.findall(old[start:end]), _WORDS.findall(text)
        offsets = [start]
        for token in a:
            offsets.append(offsets[-1] + len(token))
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag != "equal":
                out.append(Replacement(offsets[i1], offsets[i2], "".join(b[j1:j2])))
    return out


def apply_replacements(text: str, reps: Sequence[Replacement]) -> str:
    """Apply replacements given against the original text (as LSP applies a TextDocumentEdit's edits)."""
    out: list[str] = []
    pos = 0
    for rep in sorted(reps, key=lambda r: r.start):
        if rep.start < pos:
            raise ValueError("overlapping replacements")
        out.append(text[pos : rep.start])
        out.append(rep.text)
        pos = rep.end
    out.append(text[pos:])
    return "".join(out)


def text_edits(doc: Document, reps: Sequence[Replacement]) -> list[types.TextEdit]:
    edits = []
    for rep in reps:
        (sl, sc), (el, ec) = doc.position_at(rep.start), doc.position_at(rep.end)
        edits.append(
            types.TextEdit(
                range=types.Range(
                    start=types.Position(line=sl, character=sc), end=types.Position(line=el, character=ec)
                ),
                new_text=rep.text,
            )
        )
    return edits


def workspace_edit(doc: Document, new_text: str) -> types.WorkspaceEdit:
    """A WorkspaceEdit turning `doc` (at its current version) into `new_text`, as one versioned TextDocumentEdit."""
    reps = minimal_replacements(doc.text, new_text)
    change = types.TextDocumentEdit(
        text_document=types.OptionalVersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
        edits=list(text_edits(doc, reps)),
    )
    return types.WorkspaceEdit(document_changes=[change])
