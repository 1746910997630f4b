"""Whether a model's rewrite of the editable region is worth showing, and the minimal edits it amounts to.

Shown edits are checked edits, as fixes are: a rewrite that changes nothing, is not an edit of the region (noise,
another part of the file, the region repeated), rewrites all of it, undoes what the user just did, or adds a syntax
error (tree-sitter, and Python's own compiler for Python) is dropped with the reason. Blocking (parsing the whole
document twice): runs on the model worker, after generation.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import tree_sitter

from fimble.agent.diagnostics import python_compile_error
from fimble.agent.edits import Replacement, apply_replacements, word_replacements, words
from fimble.languages import grammar_name, is_python
from fimble.next_edit.region import Region, too_large
from fimble.syntax.error_nodes import count_errors
from fimble.syntax.grammars import get_parser

MIN_SIMILARITY = 0.5  # below this the answer is not an edit of the region
WHOLE_REGION_MIN_LINES = 3  # a one- or two-line region may well change on every line
_NAME = re.compile(r"[A-Za-z_]\w*")
MAX_ADDED_LINES = 12  # a next edit adds a statement or two, not a page
SHIFT_LINES = 3  # this many of the region's neighbours copied at one end: the model wrote a shifted window


@dataclass(frozen=True)
class Checked:
    replacements: list[Replacement]  # against the document's text; empty: `reason` says why
    reason: str = ""
    new_text: str = ""


def refusal(text: str, language_id: str, path: str, region: Region) -> str:
    """Why no next edit is asked of the model for this document and place (empty when one is)."""
    if "\0" in text:
        return "the document is binary"
    if grammar_name(language_id, path) is None:
        return f"no grammar for {language_id or 'this language'}: an edit could not be checked"
    return too_large(region)


def _ran_past(text: str, region: Region, rewritten: str) -> bool:
    """Whether the rewrite holds, near its end, the lines that follow the region in the file (or, near its start,
    those before it): the model lost its place and wrote the window shifted, which a diff would show as a deletion
    at one end and a copy of the neighbours at the other."""
    new_lines = rewritten.split("\n")
    below = [line for line in text[region.end :].split("\n")[: SHIFT_LINES + 1] if line.strip()][:SHIFT_LINES]
    if len(below) == SHIFT_LINES and _has_run(new_lines[-MAX_ADDED_LINES:], below):
        return True
    above = [line for line in text[: region.start].split("\n")[-SHIFT_LINES - 2 :] if line.strip()][-SHIFT_LINES:]
    return len(above) == SHIFT_LINES and _has_run(new_lines[:MAX_ADDED_LINES], above)


def _has_run(lines: list[str], run: list[str]) -> bool:
    return any(lines[i : i + len(run)] == run for i in range(len(lines) - len(run) + 1))


def _names(text: str) -> set[str]:
    return set(_NAME.findall(text))


def changed_names(before: str, after: str) -> frozenset[str]:
    """The names an edit took away or brought in (a rename's old and new name, an added field's name)."""
    old, new = _names(before), _names(after)
    return frozenset(old ^ new)


def _kept_lines(old: str, new: str) -> int:
    kept = set(new.split("\n"))
    return sum(1 for line in old.split("\n") if line.strip() and line in kept)


def check_rewrite(
    text: str,
    language_id: str,
    path: str,
    region: Region,
    rewritten: str | None,
    original: str | None = None,
    old_tree: tree_sitter.Tree | None = None,
    follows: frozenset[str] | None = None,
) -> Checked:
    """The edits that turn `region` into `rewritten`, offset into `text`, if the rewrite passes every check."""
    if rewritten is None:
        return Checked([], "the model's answer was cut off before the region ended")
    old = region.text
    if rewritten == old:
        return Checked([], "the model wrote the region unchanged")
    if rewritten.count("\n") > old.count("\n") + MAX_ADDED_LINES or _ran_past(text, region, rewritten):
        return Checked([], "the model wrote more than the region (it repeated it or went on past it)")
    if word_similarity(old, rewritten) < MIN_SIMILARITY:
        return Checked([], "the model's answer is not an edit of the region (it shares too little with it)")
    if old.count("\n") >= WHOLE_REGION_MIN_LINES and _kept_lines(old, rewritten) == 0:
        return Checked([], "the model rewrote every line of the region")
    if original is not None and original != old and rewritten == original:
        return Checked([], "the edit would undo the user's last edit")
    local = word_replacements(old, rewritten)
    if follows is not None and not any((_names(old[r.start : r.end]) | _names(r.text)) & follows for r in local):
        return Checked([], "the edit does not follow the user's recent edits")
    reps = shifted(local, region.start)
    new_text = apply_replacements(text, reps)
    reason = added_syntax_error(text, new_text, reps, language_id, path, old_tree)
    if reason:
        return Checked([], reason)
    return Checked(reps, "", new_text)


def word_similarity(a: str, b: str) -> float:
    """How much of their words and symbols two texts share, spacing ignored: a character match would cost tens of
    milliseconds on a region that changed in many places."""
    x = [w for w in words(a) if not w.isspace()]
    y = [w for w in words(b) if not w.isspace()]
    return difflib.SequenceMatcher(None, x, y, autojunk=False).ratio()


def _edit_tree(tree: tree_sitter.Tree, text: str, reps: Sequence[Replacement]) -> None:
    """Tell `tree` (of `text`) about the replacements, last first, so each one's coordinates are those of `text`."""
    base = min(r.start for r in reps)
    base_row = text.count("\n", 0, base)
    base_byte = len(text[:base].encode("utf-8", "surrogatepass"))

    def point(offset: int) -> tuple[int, int]:
        """tree-sitter's (row, byte column) of a string offset at or after `base`."""
        line_start = text.rfind("\n", 0, offset) + 1
        return base_row + text.count("\n", base, offset), len(text[line_start:offset].encode("utf-8", "surrogatepass"))

    for rep in sorted(reps, key=lambda r: r.start, reverse=True):
        start_byte = base_byte + len(text[base : rep.start].encode("utf-8", "surrogatepass"))
        old_end_byte = start_byte + len(text[rep.start : rep.end].encode("utf-8", "surrogatepass"))
        new_end_byte = start_byte + len(rep.text.encode("utf-8", "surrogatepass"))
        start = point(rep.start)
        tree.edit(
            start_byte=start_byte,
            old_end_byte=old_end_byte,
            new_end_byte=new_end_byte,
            start_point=start,
            old_end_point=point(rep.end),
            new_end_point=_end_point(start, rep.text),
        )


def _end_point(start: tuple[int, int], inserted: str) -> tuple[int, int]:
    row, col = start
    if "\n" not in inserted:
        return row, col + len(inserted.encode("utf-8", "surrogatepass"))
    tail = inserted[inserted.rfind("\n") + 1 :]
    return row + inserted.count("\n"), len(tail.encode("utf-8", "surrogatepass"))


def _unit_around(tree: tree_sitter.Tree, src: bytes, first_byte: int, last_byte: int) -> tuple[int, int]:
    """Byte span of a unit Python can compile alone that holds [first_byte, last_byte]: the innermost function
    (with its decorators) from the start of its line, else the top-level statements there."""
    node: tree_sitter.Node | None = tree.root_node.descendant_for_byte_range(first_byte, last_byte)
    while node is not None and node.type != "function_definition":
        node = node.parent
    if node is not None:
        if node.parent is not None and node.parent.type == "decorated_definition":
            node = node.parent
        return src.rfind(b"\n", 0, node.start_byte) + 1, node.end_byte
    start, end = first_byte, last_byte
    for child in tree.root_node.children:
        if child.end_byte >= first_byte and child.start_byte <= last_byte:
            start, end = min(start, child.start_byte), max(end, child.end_byte)
    return start, end


def _compiles(unit: bytes) -> bool:
    return python_compile_error(textwrap.dedent(unit.decode("utf-8", "surrogatepass"))) is None


def added_syntax_error(
    old_text: str,
    new_text: str,
    reps: Sequence[Replacement],
    language_id: str,
    path: str,
    old_tree: tree_sitter.Tree | None = None,
) -> str:
    """Why `new_text` (`old_text` with `reps` made) is syntactically worse (empty when it is not). The new tree is an
    incremental re-parse of the old one (the document's own tree when the caller has it), and Python compiles only
    the top-level statements the edit touches: milliseconds on a 5,000-line file, not a parse and a compile of it
    twice."""
    parser = get_parser(language_id, path)
    if parser is None:
        return ""
    if old_tree is None:
        old_tree = parser.parse(old_text.encode("utf-8", "surrogatepass"))
    edited = old_tree.copy()
    _edit_tree(edited, old_text, reps)
    new_src = new_text.encode("utf-8", "surrogatepass")
    new_tree = parser.parse(new_src, edited)
    before, after = count_errors(old_tree), count_errors(new_tree)
    if after.nodes > before.nodes or (after.nodes == before.nodes and after.error_bytes > before.error_bytes):
        return "the edit adds a syntax error (tree-sitter)"
    if not is_python(language_id, path) or not reps:
        return ""
    first = len(new_text[: min(r.start for r in reps)].encode("utf-8", "surrogatepass"))
    delta = len(new_src) - len(old_text.encode("utf-8", "surrogatepass"))
    last_old = len(old_text[: max(r.end for r in reps)].encode("utf-8", "surrogatepass"))
    start, end = _unit_around(new_tree, new_src, first, max(first, last_old + delta))
    if _compiles(new_src[start:end]):
        return ""
    if _compiles(old_text.encode("utf-8", "surrogatepass")[start : end - delta]):
        return "the edit adds a syntax error (Python's compiler)"
    return ""


def shifted(reps: Sequence[Replacement], by: int) -> list[Replacement]:
    return [Replacement(r.start + by, r.end + by, r.text) for r in reps]
