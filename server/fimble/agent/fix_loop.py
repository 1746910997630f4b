"""The fix loop: propose a rewrite of the smallest enclosing unit, check it with real tools, retry with the tools'
feedback, and offer only what passed.

Per attempt: build the prompt (scope, problem, cross-file definitions, git diff, the last rejection), generate on the
model worker, clean the answer up into a candidate (`fix_answer.py`), then check it in a thread, cheapest first
(`fix_checks.py`):
  1. the answer is code: not empty, not cut off, not the unchanged unit, not a rewrite of the whole file, not prose;
  2. the change touches the reported problem's lines (a fix elsewhere cannot be the fix for this diagnostic);
  3. tree-sitter: syntax errors do not grow (and drop, when the problem is a syntax error);
  4. Python: the result compiles;
  5. the user's checkers (argument lists) pass in a temporary git worktree, each with a timeout.
Checks 3-5 are what "verified" means; 1-2 only reject nonsense. The model never writes a file: the result is text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tree_sitter

from fimble.agent import history
from fimble.agent.checkers import checkers_from_settings, to_daemon_thread
from fimble.agent.context import CodeContext, NoContext, render_snippets
from fimble.agent.diagnostics import (
    Problem,
    parse,
    python_compile_error,
)
from fimble.agent.enclosing_unit import Unit, enclosing_unit
from fimble.agent.fix_answer import extract_code, reindent, trim_to_unit
from fimble.agent.fix_checks import Check, check_candidate
from fimble.agent.prompts import BuiltPrompt, build_prompt, count_tokens, fence_for
from fimble.languages import comment_prefix, is_python
from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend
from fimble.model.runtime import Cancelled, ModelRuntime
from fimble.settings import Settings
from fimble.syntax.error_nodes import count_errors

log = logging.getLogger(__name__)

Status = Literal["verified", "unverified", "failed", "cancelled"]
DROP_ORDER = ("git_diff", "definitions", "scope", "example", "feedback")
SCOPE_BEFORE_LINES = 20
SCOPE_AFTER_LINES = 8
RETRY_TEMPERATURES = (0.5, 0.8)  # later attempts sample, or greedy decoding would repeat the same answer


@dataclass(frozen=True)
class FixRequest:
    uri: str
    text: str
    language_id: str
    path: str  # workspace-relative path, shown to the model and used inside the worktree
    problem: Problem
    settings: Settings
    file_path: Path | None = None  # the file on disk: finds its git repository (diff, worktree)
    context: CodeContext = field(default_factory=NoContext)
    git_diff: str | None = None  # None: computed from file_path


@dataclass
class Attempt:
    number: int
    candidate: str  # the rewritten unit, as applied ('' when there was none)
    checks: list[Check]
    stop_reason: str
    generate_ms: float = 0.0
    check_ms: float = 0.0
    prompt_tokens: int = 0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def score(self) -> int:
        return sum(1 for c in self.checks if c.ok)

    @property
    def verified_by(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.ok and c.verifies)


@dataclass
class FixOutcome:
    status: Status
    message: str
    new_text: str | None  # the whole document after the fix (None: nothing to offer)
    unit: Unit
    verified_by: tuple[str, ...] = ()
    attempts: list[Attempt] = field(default_factory=list)
    elapsed_ms: float = 0.0
    style: str = ""  # "chat" or "completion"

    @property
    def offered(self) -> bool:
        return self.new_text is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "verifiedBy": list(self.verified_by),
            "attempts": [
                {
                    "number": a.number,
                    "passed": a.passed,
                    "stopReason": a.stop_reason,
                    "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail[:500]} for c in a.checks],
                    "generateMs": round(a.generate_ms),
                    "checkMs": round(a.check_ms),
                }
                for a in self.attempts
            ],
            "elapsedMs": round(self.elapsed_ms),
            "style": self.style,
        }


@dataclass
class Prepared:
    """What one request's attempts share: the unit to rewrite, the prompt's sections, and the baseline the checks
    compare a candidate with (errors, compile result, the lines outside the unit)."""

    tree: tree_sitter.Tree | None
    base_errors: int
    unit: Unit
    unit_text: str
    problem_lines: tuple[int, int]  # 0-based, relative to the unit; (-1, -1) when outside it
    compile_before: SyntaxError | str | None
    problem_text: str
    scope: str
    definitions: str
    git_diff: str
    outside_lines: frozenset[str]  # distinctive lines of the file outside the unit
    adjacent_lines: frozenset[str]  # the nearest distinctive line before and after the unit


def _prepare(req: FixRequest) -> Prepared:
    text = req.text
    tree = parse(text, req.language_id, req.path)
    problem = req.problem
    unit = enclosing_unit(text, tree, problem.start, problem.end)
    unit_text = unit.text(text)
    first_line = text.count("\n", 0, unit.start)
    p_first = text.count("\n", 0, problem.start) - first_line
    p_last = text.count("\n", 0, max(problem.start, problem.end)) - first_line
    unit_lines = unit_text.count("\n") + 1
    problem_lines = (p_first, p_last) if p_last >= 0 and p_first < unit_lines else (-1, -1)

    compile_before = python_compile_error(text, req.path) if is_python(req.language_id, req.path) else None
    problem_text = problem.describe(text)
    if isinstance(compile_before, SyntaxError) and compile_before.lineno:
        row = compile_before.lineno - 1
        msg = compile_before.msg
        if first_line <= row < first_line + unit_lines and msg != "invalid syntax" and msg not in problem.message:
            problem_text += f"; Python says: line {compile_before.lineno}: {compile_before.msg}"

    lines = text.split("\n")
    last_line = first_line + unit_lines - 1
    before = lines[max(0, first_line - SCOPE_BEFORE_LINES) : first_line]
    after = lines[last_line + 1 : last_line + 1 + SCOPE_AFTER_LINES]
    scope = ""
    if any(line.strip() for line in before + after):
        marker = f"{comment_prefix(req.language_id)} ... (the code to fix is here) ..."
        scope = "\n".join([*before, marker, *after]).strip("\n")

    definitions = ""
    try:
        snippets = req.context.definitions(req.uri, text, req.language_id, req.path, unit.start, unit.end)
        definitions = render_snippets(snippets, fence_for(req.language_id), 3000)
    except Exception:  # context is a help, never a reason to fail the fix
        log.exception("definitions for the fix prompt failed")
    git_diff = req.git_diff
    if git_diff is None:
        git_diff = history.recent_diff(req.file_path, text, trusted=req.settings.workspace_trusted)

    unit_set = {line.strip() for line in unit_text.split("\n")}
    outside = frozenset(
        s for i, line in enumerate(lines) if not first_line <= i <= last_line and len(s := line.strip()) >= 8
    )
    adjacent: set[str] = set()
    for rows in (range(first_line - 1, -1, -1), range(last_line + 1, len(lines))):
        for i in rows:
            s = lines[i].strip()
            if s:
                # A model that copies the line just before or after the unit rewrote more than it was asked to.
                if len(s) >= 4 and s not in unit_set:
                    adjacent.add(s)
                break
    return Prepared(
        tree,
        count_errors(tree).nodes,
        unit,
        unit_text,
        problem_lines,
        compile_before,
        problem_text,
        scope,
        definitions,
        git_diff,
        frozenset(outside - unit_set),
        frozenset(adjacent),
    )


def _fix_prompt(
    backend: ModelBackend, req: FixRequest, prep: Prepared, last: Attempt | None
) -> tuple[BuiltPrompt, int]:
    fence = fence_for(req.language_id)
    answer_tokens = max(64, min(count_tokens(backend, prep.unit_text) * 2 + 64, backend.info.n_ctx // 2))
    slots = {
        "language": req.language_id,
        "fence": fence,
        "path": req.path,
        "problem": prep.problem_text,
        "unit": prep.unit_text,
    }
    feedback = None
    if last is not None and last.failure is not None:
        feedback = {"previous": last.candidate or "(no code)", "reason": last.failure.detail}
    sections: dict[str, dict[str, str] | None] = {
        "example": {} if fence == "python" else None,
        "scope": {"scope": prep.scope} if prep.scope else None,
        "definitions": {"definitions": prep.definitions} if prep.definitions else None,
        "git_diff": {"git_diff": prep.git_diff} if prep.git_diff else None,
        "feedback": feedback,
    }
    return build_prompt(backend, "fix", slots, sections, DROP_ORDER, answer_tokens), answer_tokens


# -- the loop --------------------------------------------------------------------------------------------------
def _prompt_job(
    req: FixRequest, prep: Prepared, last: Attempt | None
) -> Callable[[ModelBackend], tuple[BuiltPrompt, int]]:
    def job(backend: ModelBackend) -> tuple[BuiltPrompt, int]:
        return _fix_prompt(backend, req, prep, last)

    return job


def _generate_job(
    ids: list[int], params: GenerationParams, cancel: CancelToken
) -> Callable[[ModelBackend], GenerationResult]:
    def job(backend: ModelBackend) -> GenerationResult:
        return backend.generate(ids, params, cancel)

    return job


async def run_fix(
    runtime: ModelRuntime,
    req: FixRequest,
    cancel: CancelToken | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> FixOutcome:
    """Propose, check and retry within the settings' attempts and time budget. Never raises for a bad answer: the
    outcome says what happened. Model errors (no model, context overflow) propagate as FimbleError."""
    settings = req.settings
    started = time.monotonic()
    deadline = started + max(1, settings.fix_time_budget_ms) / 1000
    if cancel is None:
        cancel = CancelToken()
    if cancel.deadline is None or cancel.deadline > deadline:
        cancel.deadline = deadline  # generation stops when the fix's budget is spent
    prep = await asyncio.to_thread(_prepare, req)
    checkers = checkers_from_settings(settings.fix_checkers)
    attempts: list[Attempt] = []
    style = ""
    cancelled = False
    max_attempts = max(1, settings.fix_max_attempts)
    for number in range(1, max_attempts + 1):
        if cancel.cancelled:
            cancelled = True
            break
        if time.monotonic() >= deadline:
            break
        if on_progress is not None:
            on_progress(f"fix attempt {number}/{max_attempts}")
        last = attempts[-1] if attempts else None
        try:
            built, answer_tokens = await runtime.run(_prompt_job(req, prep, last), cancel)
            style = built.style
            temperature = settings.temperature
            if number > 1:
                retry = RETRY_TEMPERATURES[min(number - 2, len(RETRY_TEMPERATURES) - 1)]
                temperature = max(settings.temperature, retry)
            params = GenerationParams(max_tokens=answer_tokens, temperature=temperature, stop=built.stop, seed=number)
            t0 = time.monotonic()
            gen = await runtime.run(_generate_job(built.ids, params, cancel), cancel)
            gen_ms = (time.monotonic() - t0) * 1000
        except Cancelled:
            cancelled = True
            break
        if gen.stop_reason == "cancelled":
            cancelled = True
            break
        if gen.stop_reason == "deadline":
            attempts.append(
                Attempt(
                    number,
                    "",
                    [Check("time", False, "the time budget ran out while generating")],
                    "deadline",
                    gen_ms,
                    0.0,
                    len(built.ids),
                )
            )
            break
        candidate, trimmed = trim_to_unit(extract_code(gen.text), prep.unit_text)
        candidate = reindent(candidate, prep.unit_text)
        if trimmed and gen.stop_reason == "length":
            gen.stop_reason = "stop"  # what was cut off was past the unit, not part of it
        t1 = time.monotonic()
        # A daemon thread: a checker still running when the client goes away must not hold up the server's exit.
        checks = await to_daemon_thread(check_candidate, req, prep, candidate, gen, list(attempts), checkers, deadline)
        attempt = Attempt(
            number, candidate, checks, gen.stop_reason, gen_ms, (time.monotonic() - t1) * 1000, len(built.ids)
        )
        attempts.append(attempt)
        log.info("fix attempt %d: %s", number, "passed" if attempt.passed else attempt.failure)
        if attempt.passed or any(c.fatal for c in checks):
            break
    return _outcome(req, prep, attempts, cancelled, style, (time.monotonic() - started) * 1000)


def _outcome(
    req: FixRequest, prep: Prepared, attempts: list[Attempt], cancelled: bool, style: str, elapsed_ms: float
) -> FixOutcome:
    def whole(candidate: str) -> str:
        return req.text[: prep.unit.start] + candidate + req.text[prep.unit.end :]

    passed = next((a for a in attempts if a.passed), None)
    if passed is not None and passed.verified_by:
        by = ", ".join(passed.verified_by)
        message = f"verified by {by} (attempt {passed.number} of {len(attempts)}, {elapsed_ms / 1000:.1f} s)"
        return FixOutcome(
            "verified", message, whole(passed.candidate), prep.unit, passed.verified_by, attempts, elapsed_ms, style
        )
    if cancelled:
        return FixOutcome("cancelled", "the fix was cancelled", None, prep.unit, (), attempts, elapsed_ms, style)
    if passed is not None:
        reason = "no checker applies to this language (configure fimble.fixCheckers to verify fixes)"
    elif attempts:
        failure = attempts[-1].failure
        reason = failure.detail if failure is not None else "no answer"
    else:
        reason = "the time budget ran out before the model could answer"
    n = len(attempts)
    summary = f"no verified fix after {n} attempt{'s' if n != 1 else ''} ({elapsed_ms / 1000:.1f} s): {reason}"
    if req.settings.fix_allow_unverified:
        best = passed or max(
            (a for a in attempts if a.candidate and a.checks and a.checks[0].ok), key=lambda a: a.score, default=None
        )
        if best is not None:
            return FixOutcome(
                "unverified",
                f"unverified: {summary}",
                whole(best.candidate),
                prep.unit,
                (),
                attempts,
                elapsed_ms,
                style,
            )
    return FixOutcome("failed", summary, None, prep.unit, (), attempts, elapsed_ms, style)


__all__ = ["Attempt", "Check", "FixOutcome", "FixRequest", "extract_code", "reindent", "run_fix"]
