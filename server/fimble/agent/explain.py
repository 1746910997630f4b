"""Explain a range of code, streaming Markdown as it is generated.

The prompt carries what the code base knows about the range: the enclosing scope, definitions of the names used and
callers (from the context engine's workspace index), and the last commits that touched those lines (git blame/log).
The Markdown the caller finally gets is exactly the concatenation of the streamed deltas: text that could still turn
out to be the start of a stop string is held back until it cannot.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fimble.agent import history
from fimble.agent.context import CodeContext, NoContext, render_snippets
from fimble.agent.diagnostics import parse
from fimble.agent.enclosing_unit import Unit, enclosing_definition, enclosing_unit, identifiers
from fimble.agent.prompts import BuiltPrompt, build_prompt, fence_for
from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend
from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings

log = logging.getLogger(__name__)

EXPLAIN_MAX_TOKENS = 400
MAX_SCOPE_LINES = 120
DROP_ORDER = ("history", "callers", "definitions", "example", "scope")

OnDelta = Callable[[str], None]


@dataclass(frozen=True)
class ExplainRequest:
    uri: str
    text: str
    language_id: str
    path: str
    start: int  # string indices of the selection; an empty selection explains the enclosing unit
    end: int
    settings: Settings
    file_path: Path | None = None
    context: CodeContext = field(default_factory=NoContext)
    max_tokens: int = EXPLAIN_MAX_TOKENS
    note: str = ""  # why some context is missing (a file outside the workspace), for the context line


@dataclass
class ExplainContext:
    selection: Unit
    scope: Unit | None
    scope_text: str
    definitions: list[str]  # names whose definitions went in
    definitions_text: str
    callers: list[str]  # paths
    callers_text: str
    commits: list[history.Commit]
    note: str = ""


@dataclass
class Explanation:
    markdown: str
    context: ExplainContext
    style: str
    generation: GenerationResult | None
    elapsed_ms: float

    def to_dict(self) -> dict[str, Any]:
        c = self.context
        g = self.generation
        return {
            "markdown": self.markdown,
            "style": self.style,
            "scope": c.scope.name if c.scope else None,
            "definitions": c.definitions,
            "callers": c.callers,
            "commits": [{"hash": m.short, "date": m.date, "subject": m.subject} for m in c.commits],
            "generatedTokens": g.generated_tokens if g else 0,
            "stopReason": g.stop_reason if g else None,
            "elapsedMs": round(self.elapsed_ms),
        }


def gather_context(req: ExplainRequest) -> ExplainContext:
    """Everything but the model: scope, definitions, callers, history. Blocking (git, parsing): run in a thread."""
    text = req.text
    tree = parse(text, req.language_id, req.path)
    start, end = sorted((max(0, min(req.start, len(text))), max(0, min(req.end, len(text)))))
    if start == end or not text[start:end].strip():
        selection = enclosing_unit(text, tree, start, end)
    else:
        from fimble.agent.enclosing_unit import line_span

        s, e = line_span(text, start, end)
        selection = Unit(s, e, "lines")
    scope = enclosing_definition(text, tree, selection.start, selection.end)
    scope_text = ""
    if scope is not None and (scope.start < selection.start or scope.end > selection.end):
        scope_text = _clip_scope(text, scope, selection)
    elif scope is not None:
        # The selection is the whole definition: its own enclosing class or module is the scope then.
        outer = enclosing_definition(text, tree, max(0, scope.start - 1), max(0, scope.start - 1))
        if outer is not None and outer.start < scope.start:
            scope, scope_text = outer, _clip_scope(text, outer, selection)
        else:
            scope = None

    fence = fence_for(req.language_id)
    names = identifiers(tree, text, selection.start, selection.end)
    definitions_text, definition_names = "", []
    callers_text, caller_paths = "", []
    try:
        snippets = list(
            req.context.definitions(req.uri, text, req.language_id, req.path, selection.start, selection.end)
        )
        definitions_text = render_snippets(snippets, fence, 3000)
        definition_names = [n for n in names if any(_defines(s.text, n) for s in snippets)]
        target = _callee_name(text, tree, selection, scope)
        if target:
            callers = list(req.context.callers(req.uri, text, req.language_id, target))
            callers_text = render_snippets(callers, fence, 2000)
            caller_paths = [c.path for c in callers]
    except Exception:  # context helps; it is never a reason to fail the explanation
        log.exception("context for the explanation failed")

    first, last = selection.lines(text)
    trusted = req.settings.workspace_trusted
    commits = history.line_commits(req.file_path, text, first + 1, last + 1, trusted=trusted)
    if not commits:
        commits = history.file_log(req.file_path, trusted=trusted)
    return ExplainContext(
        selection, scope, scope_text, definition_names, definitions_text, caller_paths, callers_text, commits, req.note
    )


_DEFINING = r"\b(?:def|class|function|fn|func|type|struct|interface|enum|trait|impl|const|let|var|local)\s+"


def _defines(text: str, name: str) -> bool:
    """Whether a snippet defines `name` (for the footer's "definitions of ..." only; the prompt gets all snippets)."""
    n = re.escape(name)
    return re.search(rf"{_DEFINING}{n}\b|^\s*{n}\s*(?::[^=]*)?=", text, re.MULTILINE) is not None


def _callee_name(text: str, tree: Any, selection: Unit, scope: Unit | None) -> str:
    """Whose callers to look for: the definition the selection is in (or is)."""
    inner = enclosing_definition(text, tree, selection.start, selection.end)
    if inner is not None and inner.name:
        return inner.name
    return scope.name if scope is not None else ""


def _clip_scope(text: str, scope: Unit, selection: Unit) -> str:
    lines = scope.text(text).split("\n")
    if len(lines) <= MAX_SCOPE_LINES:
        return "\n".join(lines)
    scope_first = scope.lines(text)[0]
    sel_first, sel_last = selection.lines(text)
    lo = max(0, sel_first - scope_first - MAX_SCOPE_LINES // 2)
    hi = min(len(lines), sel_last - scope_first + MAX_SCOPE_LINES // 2)
    head = lines[:3] if lo > 3 else []
    return "\n".join([*head, "...", *lines[lo:hi], "..."] if head else [*lines[lo:hi], "..."])


def _prompt(backend: ModelBackend, req: ExplainRequest, ctx: ExplainContext) -> BuiltPrompt:
    text = req.text
    first, last = ctx.selection.lines(text)
    slots = {
        "language": req.language_id,
        "fence": fence_for(req.language_id),
        "path": req.path,
        "lines": f"{first + 1}-{last + 1}",
        "selection": ctx.selection.text(text),
    }
    sections: dict[str, dict[str, str] | None] = {
        "example": {},
        "scope": {"scope": ctx.scope_text, "scope_kind": _kind(ctx.scope)} if ctx.scope_text else None,
        "definitions": {"definitions": ctx.definitions_text} if ctx.definitions_text else None,
        "callers": {"callers": ctx.callers_text} if ctx.callers_text else None,
        "history": {"history": "\n".join(f"- {c.line()}" for c in ctx.commits)} if ctx.commits else None,
    }
    return build_prompt(backend, "explain", slots, sections, DROP_ORDER, req.max_tokens)


def _kind(unit: Unit | None) -> str:
    if unit is None:
        return "scope"
    for word in ("class", "method", "function", "impl", "struct", "interface"):
        if word in unit.kind:
            return f"{word} `{unit.name}`" if unit.name else word
    return "scope"


def footer(ctx: ExplainContext) -> str:
    """What the explanation was based on, so the user can judge it."""
    used: list[str] = []
    if ctx.scope is not None and ctx.scope_text:
        used.append(f"enclosing {_kind(ctx.scope)}")
    if ctx.definitions:
        used.append("definitions of " + ", ".join(f"`{n}`" for n in ctx.definitions[:6]))
    if ctx.callers:
        paths = sorted(set(ctx.callers))
        used.append(f"{len(ctx.callers)} caller{'s' if len(ctx.callers) != 1 else ''} in " + ", ".join(paths[:4]))
    if ctx.commits:
        used.append("commits " + "; ".join(f"`{c.short}` {c.date} {c.subject}" for c in ctx.commits[:5]))
    parts = used or ["the selected code only"]
    if ctx.note:
        parts.append(ctx.note[0].upper() + ctx.note[1:])
    return "\n\n---\n_Context: " + ". ".join(parts) + "._\n"


REPEAT_HOLD = 80  # characters held back from the stream, so a repeated sentence can usually still be cut
MIN_REPEAT = 20  # shorter repeated lines ("return x", "}") are normal in code


def repetition_cut(text: str) -> int | None:
    """Where to end an answer whose last sentence (or line) repeats an earlier one, or None. Small models loop on
    greedy decoding ("It is a simple example. It is a simple example. ..."); the repeat and the rest are dropped."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)|\n", text)]
    if len(ends) < 2:
        return None
    start, stop = ends[-2], ends[-1]
    sentence = text[start:stop].strip()
    if len(sentence) < MIN_REPEAT or sentence.startswith("```"):
        return None
    return start if text.find(sentence, 0, start) != -1 else None


class StreamGate:
    """Forwards streamed text, holding back any tail that might be the start of a stop string (or the start of a
    repetition about to be cut), so that what was sent is always a prefix of the final text."""

    def __init__(self, stops: Sequence[str], emit: OnDelta | None, hold: int = 0) -> None:
        self._hold = max(hold, max((len(s) for s in stops if s), default=1) - 1)
        self._emit = emit
        self.text = ""
        self.sent = 0

    def feed(self, piece: str) -> None:
        self.text += piece
        ready = len(self.text) - self._hold
        if ready > self.sent:
            self._send(self.text[self.sent : ready])

    def commit(self) -> None:
        """Send everything fed so far: text known to be final (the prefill the answer starts with)."""
        self._send(self.text[self.sent :])

    def _send(self, delta: str) -> None:
        self.sent += len(delta)
        if self._emit is not None and delta:
            self._emit(delta)

    def finish(self, final: str) -> str:
        """Send what is left of `final` (the whole answer); returns it."""
        if not final.startswith(self.text[: self.sent]):
            # Cannot happen with the hold-back; if it did, the final answer still wins (the stream was a draft).
            log.warning("streamed explanation diverged from the final text")
            self.sent = 0
        self._send(final[self.sent :])
        return final


async def explain(
    runtime: ModelRuntime, req: ExplainRequest, cancel: CancelToken | None = None, on_delta: OnDelta | None = None
) -> Explanation:
    """Gather context, generate the explanation on the model worker, stream it through `on_delta` (called from the
    worker thread, and from this coroutine's thread for the opening and closing text)."""
    started = time.monotonic()
    cancel = cancel or CancelToken()
    budget_deadline = started + max(1, req.settings.fix_time_budget_ms) / 1000
    if cancel.deadline is None or cancel.deadline > budget_deadline:
        cancel.deadline = budget_deadline
    ctx = await asyncio.to_thread(gather_context, req)

    def job(backend: ModelBackend) -> tuple[BuiltPrompt, GenerationResult, StreamGate, int | None]:
        built = _prompt(backend, req, ctx)
        gate = StreamGate(built.stop, on_delta, hold=REPEAT_HOLD)
        gate.feed(built.prefill)
        gate.commit()
        params = GenerationParams(max_tokens=req.max_tokens, temperature=req.settings.temperature, stop=built.stop)
        # Generation gets its own token so a looping answer can be stopped without looking cancelled by the user.
        gen_cancel = CancelToken(deadline=cancel.deadline)
        cut: int | None = None

        def on_text(piece: str) -> None:
            nonlocal cut
            if cancel.cancelled:
                gen_cancel.cancel()
            gate.feed(piece)
            if cut is None and (at := repetition_cut(gate.text)) is not None:
                cut = max(at, gate.sent)
                gen_cancel.cancel()

        result = backend.generate(built.ids, params, gen_cancel, on_text=on_text)
        if cancel.cancelled:
            result.stop_reason = "cancelled"
        return built, result, gate, cut

    built, result, gate, cut = await runtime.run(job, cancel)
    body = built.prefill + result.text
    if cut is not None:
        body = body[:cut]
    body = body[: max(gate.sent, len(body.rstrip()))]  # trim trailing space, but never below what was streamed
    if cut is None and result.stop_reason in ("cancelled", "deadline"):
        body += (
            "\n\n_(explanation stopped: " + ("cancelled" if result.stop_reason == "cancelled" else "time budget") + ")_"
        )
    if not result.text.strip():
        body += "\n\n_(the model gave no explanation)_"
    markdown = gate.finish(body + footer(ctx))
    return Explanation(markdown, ctx, built.style, result, (time.monotonic() - started) * 1000)
