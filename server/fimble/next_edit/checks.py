"""Whether a model's rewrite of the editable region is worth showing, and the minimal edits it amounts to.

Shown edits are checked edits, as fixes are: a rewrite that changes nothing, is not an edit of the region (noise,
another part of the file, the region repeated), rewrites all of it, undoes what the user just did, or adds a syntax
error (tree-sitter, and Python's own compiler for Python) is dropped with the reason. Blocking (parsing the whole
document twice): runs on the model worker, after generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fimble.agent.diagnostics import parse, python_compile_error
from fimble.agent.edits import Replacement, apply_replacements, word_replacements
from fimble.agent.fix_answer import similarity
from fimble.languages import grammar_name, is_python
from fimble.next_edit.region import Region, too_large
from fimble.syntax.error_nodes import count_errors

MIN_SIMILARITY = 0.5  # below this the answer is not an edit of the region
WHOLE_REGION_MIN_LINES = 3  # a one- or two-line region may well change on every line


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
) -> Checked:
    """The edits that turn `region` into `rewritten`, offset into `text`, if the rewrite passes every check."""
    if rewritten is None:
        return Checked([], "the model's answer was cut off before the region ended")
    old = region.text
    if rewritten == old:
        return Checked([], "the model wrote the region unchanged")
    if rewritten.count("\n") > 2 * old.count("\n") + 10:
        return Checked([], "the model wrote more than the region (it repeated it or went on past it)")
    if similarity(old, rewritten) < MIN_SIMILARITY:
        return Checked([], "the model's answer is not an edit of the region (it shares too little with it)")
    if old.count("\n") >= WHOLE_REGION_MIN_LINES and _kept_lines(old, rewritten) == 0:
        return Checked([], "the model rewrote every line of the region")
    if original is not None and original != old and rewritten == original:
        return Checked([], "the edit would undo the user's last edit")
    local = word_replacements(old, rewritten)
    reps = shifted(local, region.start)
    new_text = apply_replacements(text, reps)
    reason = added_syntax_error(text, new_text, language_id, path)
    if reason:
        return Checked([], reason)
    return Checked(reps, "", new_text)


def added_syntax_error(old_text: str, new_text: str, language_id: str, path: str) -> str:
    """Why `new_text` is syntactically worse than `old_text` (empty when it is not)."""
    before = count_errors(parse(old_text, language_id, path))
    after = count_errors(parse(new_text, language_id, path))
    if after.nodes > before.nodes or (after.nodes == before.nodes and after.error_bytes > before.error_bytes):
        return "the edit adds a syntax error (tree-sitter)"
    if is_python(language_id, path) and python_compile_error(new_text) and not python_compile_error(old_text):
        return "the edit adds a syntax error (Python's compiler)"
    return ""


def shifted(reps: Sequence[Replacement], by: int) -> list[Replacement]:
    return [Replacement(r.start + by, r.end + by, r.text) for r in reps]
