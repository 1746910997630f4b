"""Code actions offered by the agent, built without touching the model.

Listing actions is cheap and happens on every cursor move, so it only describes what *could* be done; each action
carries in `data` the document version and the diagnostic it is about, and the model runs only on codeAction/resolve
(or on the `fimble.fix` / `fimble.explain` commands) once the user picks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lsprotocol import types

from fimble.agent.diagnostics import SOURCE, Problem
from fimble.documents.document import Document
from fimble.errors import DocumentError
from fimble.lsp.convert import structure, unstructure

FIX_DATA = "fimble.fix"
EXPLAIN_COMMAND = "fimble.explain"
FIX_COMMAND = "fimble.fix"
MAX_FIX_ACTIONS = 5


def to_range(doc: Document, start: int, end: int) -> types.Range:
    (sl, sc), (el, ec) = doc.position_at(start), doc.position_at(end)
    return types.Range(start=types.Position(line=sl, character=sc), end=types.Position(line=el, character=ec))


def to_diagnostic(doc: Document, problem: Problem) -> types.Diagnostic:
    return types.Diagnostic(
        range=to_range(doc, problem.start, problem.end),
        message=problem.message,
        severity=types.DiagnosticSeverity.Error,
        source=problem.source or SOURCE,
        code=problem.code or None,
    )


def problem_of(doc: Document, diag: types.Diagnostic) -> Problem:
    """A client's diagnostic in document offsets; DocumentError when its range is not in the document."""
    r = diag.range
    start = doc.offset_at(r.start.line, r.start.character)
    end = doc.offset_at(r.end.line, r.end.character)
    if end < start:
        raise DocumentError("The diagnostic's range ends before it starts.")
    return Problem(start, end, diag.message, diag.source or "", "" if diag.code is None else str(diag.code))


def _overlaps(a: types.Range, b: types.Range) -> bool:
    a0, a1 = (a.start.line, a.start.character), (a.end.line, a.end.character)
    b0, b1 = (b.start.line, b.start.character), (b.end.line, b.end.character)
    return a0 <= b1 and b0 <= a1


def _key(d: types.Diagnostic) -> tuple[Any, ...]:
    r = d.range
    return (r.start.line, r.start.character, r.end.line, r.end.character, d.message)


def title_for(diag: types.Diagnostic) -> str:
    message = diag.message.strip().split("\n", 1)[0]
    if len(message) > 80:
        message = message[:77] + "..."
    return f"Fix with fimble: {message}"


def code_actions(
    doc: Document,
    params: types.CodeActionParams,
    own: Iterable[types.Diagnostic] = (),
    resolve_edits: bool = True,
) -> list[types.CodeAction]:
    """Quick fixes for the diagnostics at the range (the client's, plus fimble's own syntax diagnostics) and an
    "Explain with fimble" refactor. `resolve_edits`: the client resolves `edit` lazily; otherwise the fix action
    runs the `fimble.fix` command, which applies the edit with workspace/applyEdit."""
    only = list(params.context.only or [])
    want_fix = not only or any(str(k).startswith("quickfix") for k in only)
    want_refactor = not only or any(
        str(k) in ("refactor", "refactor.rewrite") or str(k).startswith("refactor.rewrite") for k in only
    )
    actions: list[types.CodeAction] = []
    if want_fix:
        diagnostics: list[types.Diagnostic] = []
        seen: set[tuple[Any, ...]] = set()
        for diag in [*params.context.diagnostics, *(d for d in own if _overlaps(d.range, params.range))]:
            if _key(diag) in seen:
                continue
            seen.add(_key(diag))
            diagnostics.append(diag)
        for diag in diagnostics[:MAX_FIX_ACTIONS]:
            actions.append(fix_action(doc, diag, resolve_edits))
    r = params.range
    has_selection = (r.start.line, r.start.character) != (r.end.line, r.end.character)
    if want_refactor and (has_selection or only):
        actions.append(explain_action(doc, r))
    return actions


def fix_action(doc: Document, diag: types.Diagnostic, resolve_edits: bool = True) -> types.CodeAction:
    data = {"fimble": FIX_DATA, "uri": doc.uri, "version": doc.version, "diagnostic": unstructure(diag)}
    action = types.CodeAction(title=title_for(diag), kind=types.CodeActionKind.QuickFix, diagnostics=[diag], data=data)
    if not resolve_edits:
        action.command = types.Command(title=action.title, command=FIX_COMMAND, arguments=[data])
    return action


def explain_action(doc: Document, r: types.Range) -> types.CodeAction:
    args = {"uri": doc.uri, "range": unstructure(r)}
    return types.CodeAction(
        title="Explain with fimble",
        kind=types.CodeActionKind.RefactorRewrite,
        command=types.Command(title="Explain with fimble", command=EXPLAIN_COMMAND, arguments=[args]),
        data={"fimble": "fimble.explain", "uri": doc.uri},
    )


def parse_fix_data(data: Any) -> tuple[str, int | None, types.Diagnostic]:
    """uri, version and diagnostic from a fix action's data; ValueError when it is not one of ours."""
    if not isinstance(data, dict) or data.get("fimble") != FIX_DATA:
        raise ValueError("not a fimble fix action")
    uri, version, diag = data.get("uri"), data.get("version"), data.get("diagnostic")
    if not isinstance(uri, str) or not (version is None or isinstance(version, int)) or not isinstance(diag, dict):
        raise ValueError("malformed fimble fix action data")
    return uri, version, structure(diag, types.Diagnostic)


def parse_range(value: Any) -> types.Range:
    return structure(value, types.Range)


def diagnostics_at(own: Sequence[types.Diagnostic], r: types.Range) -> list[types.Diagnostic]:
    return [d for d in own if _overlaps(d.range, r)]
