"""The fix loop: propose a rewrite of the smallest enclosing unit, check it with real tools, retry with the tools'
feedback, and offer only what passed.

Per attempt: build the prompt (scope, problem, cross-file definitions, git diff, the last rejection), generate on the
model worker, then check in a thread, cheapest first:
  1. the answer is code: not empty, not cut off, not the unchanged unit, not a rewrite of the whole file, not prose;
  2. the change touches the reported problem's lines (a fix elsewhere cannot be the fix for this diagnostic);
  3. tree-sitter: syntax errors do not grow (and drop, when the problem is a syntax error);
  4. Python: the result compiles;
  5. the user's checkers (argument lists) pass in a temporary git worktree, each with a timeout.
Checks 3-5 are what "verified" means; 1-2 only reject nonsense. The model never writes a file: the result is text.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tree_sitter

from fimble.agent import history
from fimble.agent.checkers import Checker, Sandbox, SandboxError, checkers_from_settings, to_daemon_thread
from fimble.agent.context import CodeContext, NoContext, render_snippets
from fimble.agent.diagnostics import (
    Problem,
    parse,
    problems_from_tree,
    python_compile_error,
    syntax_problems,
)
from fimble.agent.enclosing_unit import Unit, enclosing_unit
from fimble.agent.prompts import BuiltPrompt, build_prompt, count_tokens, fence_for
from fimble.languages import comment_prefix, is_python
from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend
from fimble.model.runtime import Cancelled, ModelRuntime
from fimble.settings import Settings
from fimble.syntax.error_nodes import count_errors
from fimble.trust.safe_git import UNTRUSTED

log = logging.getLogger(__name__)

Status = Literal["verified", "unverified", "failed", "cancelled"]
DROP_ORDER = ("git_diff", "definitions", "scope", "example", "feedback")
SCOPE_BEFORE_LINES = 20
SCOPE_AFTER_LINES = 8
MIN_SIMILARITY = 0.5  # below this the answer is not a rewrite of the unit (prose, another function, noise)
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


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    verifies: bool = False  # a real tool that checked the result (vs. a gate that only rejects nonsense)
    fatal: bool = False  # retrying cannot help (a checker that cannot start)


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
class _Prep:
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


def _prepare(req: FixRequest) -> _Prep:
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
    return _Prep(
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


def _fix_prompt(backend: ModelBackend, req: FixRequest, prep: _Prep, last: Attempt | None) -> tuple[BuiltPrompt, int]:
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


# -- the answer ------------------------------------------------------------------------------------------------
def extract_code(raw: str) -> str:
    """The code in a model's answer: inside the first fence when the model opened one, up to a closing fence."""
    text = raw
    head = text.lstrip()
    if head.startswith("```"):
        text = head.split("\n", 1)[1] if "\n" in head else ""
    end = text.find("```")
    if end != -1:
        text = text[:end]
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join(lines).rstrip()


def _indent_of(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return ""


def reindent(candidate: str, original: str) -> str:
    """Models often return a method without its class indentation; put the unit's own indentation back."""
    want, have = _indent_of(original), _indent_of(candidate)
    if want == have:
        return candidate
    lines = candidate.split("\n")
    if not all(line.startswith(have) or not line.strip() for line in lines):
        return candidate
    return "\n".join(want + line[len(have) :] if line.strip() else line for line in lines)


def _changed_lines_touch(old: str, new: str, first: int, last: int) -> bool:
    """Whether the line diff old -> new changes or inserts next to lines first..last of `old`."""
    matcher = difflib.SequenceMatcher(None, old.split("\n"), new.split("\n"), autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "insert":
            if first <= i1 <= last + 1:
                return True
        elif i1 <= last and i2 - 1 >= first:
            return True
    return False


def _similarity(a: str, b: str) -> float:
    """How much of the code two texts share, ignoring indentation and spacing (which would make any two snippets
    of the same language look alike)."""
    a, b = _squash(a), _squash(b)
    if len(a) + len(b) > 8000:  # character matching is quadratic; lines are enough for big units
        return difflib.SequenceMatcher(None, a.split("\n"), b.split("\n"), autojunk=False).ratio()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _squash(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.split("\n") if line.strip())


_CLOSERS = (")", "]", "}", "else", "elif", "except", "finally", "catch", "end")


def trim_to_unit(candidate: str, unit: str) -> tuple[str, bool]:
    """Cut an answer that goes on past the end of the unit (models continue with the next function): the unit ends
    where its lines return to its first line's indentation as often as in the original. Returns (text, trimmed)."""

    def outdented(lines: list[str], indent: int) -> list[int]:
        return [
            i for i, line in enumerate(lines)
            if i > 0 and line.strip() and len(line) - len(line.lstrip()) <= indent
            and not line.strip().startswith(_CLOSERS)
        ]  # fmt: skip

    unit_lines = unit.split("\n")
    first = next((line for line in unit_lines if line.strip()), "")
    indent = len(first) - len(first.lstrip())
    allowed = len(outdented(unit_lines, indent))
    lines = candidate.split("\n")
    cand_first = next((line for line in lines if line.strip()), "")
    if _similarity(first, cand_first) < 0.6:
        return candidate, False  # it does not start like the unit: nothing to salvage by cutting its end
    extra = outdented(lines, len(cand_first) - len(cand_first.lstrip()))
    if len(extra) <= allowed:
        return candidate, False
    return "\n".join(lines[: extra[allowed]]).rstrip(), True


def _answer_checks(prep: _Prep, candidate: str, gen: GenerationResult, previous: Sequence[Attempt]) -> Check:
    unit = prep.unit_text
    if not candidate.strip():
        return Check("answer", False, "the answer was empty: it must be the corrected code")
    n_unit, n_cand = unit.count("\n") + 1, candidate.count("\n") + 1
    cand_lines = {line.strip() for line in candidate.split("\n")}
    repeated = sum(1 for line in candidate.split("\n") if line.strip() in prep.outside_lines)
    if n_cand > 2 * n_unit + 10 or repeated >= max(3, n_cand // 3) or prep.adjacent_lines & cand_lines:
        return Check("answer", False, "the answer rewrites more than the code to fix; return only that code")
    if gen.stop_reason == "length":
        return Check("answer", False, "the answer was cut off: it must be only the corrected code, no more")
    if candidate.strip() == unit.strip():
        return Check("answer", False, "the answer is the code unchanged, so the problem is still there")
    for old in previous:
        if old.candidate == candidate and old.failure is not None:
            return Check(
                "answer", False, f"the same answer as attempt {old.number}, which failed: {old.failure.detail}"
            )
    if _similarity(unit, candidate) < MIN_SIMILARITY:
        return Check(
            "answer", False, "the answer is not a corrected version of the code (it shares too little with it)"
        )
    return Check("answer", True)


def _check(
    req: FixRequest,
    prep: _Prep,
    candidate: str,
    gen: GenerationResult,
    previous: Sequence[Attempt],
    checkers: Sequence[Checker],
    deadline: float,
) -> list[Check]:
    """All checks for one candidate, cheapest first, stopping at the first failure. Blocking: runs in a thread."""
    checks = [_answer_checks(prep, candidate, gen, previous)]
    if not checks[-1].ok:
        return checks
    text = req.text
    new_text = text[: prep.unit.start] + candidate + text[prep.unit.end :]

    first, last = prep.problem_lines
    if req.problem.is_syntax:
        # Our own diagnostic can be recomputed: it must be gone from the rewritten unit. (Where tree-sitter puts a
        # MISSING token is often not where a person adds it, so "the change touches its line" would be wrong here.)
        unit_first = text.count("\n", 0, prep.unit.start)
        unit_last = unit_first + candidate.count("\n")
        still = [
            p
            for p in syntax_problems(new_text, req.language_id, req.path)
            if p.message == req.problem.message and unit_first <= new_text.count("\n", 0, p.start) <= unit_last
        ]
        detail = f"the problem is still there: {still[0].describe(new_text)}" if still else ""
        checks.append(Check("problem", not still, detail))
        if still:
            return checks
    elif (word := _target_word(req)) and (before := _count_word(prep.unit_text, word)):
        # The diagnostic points at a name ("undefined name 'itemz'"): that name must be gone from where it was, not
        # merely some line near it changed (defining a function called `itemz` is not a fix).
        after = _count_word(candidate, word)
        ok = after < before
        checks.append(Check("problem", ok, "" if ok else f"`{word}`, which the problem points at, is still there"))
        if not ok:
            return checks
    elif first >= 0:
        touched = _changed_lines_touch(prep.unit_text, candidate, first, last)
        line_no = req.text.count("\n", 0, req.problem.start) + 1
        checks.append(
            Check("problem", touched, "" if touched else f"the change does not touch line {line_no}, the problem")
        )
        if not touched:
            return checks

    tree = parse(new_text, req.language_id, req.path)
    if tree is not None:
        after = count_errors(tree).nodes
        must_drop = req.problem.is_syntax and prep.base_errors > 0
        ok = after < prep.base_errors if must_drop else after <= prep.base_errors
        detail = ""
        if not ok:
            shown = "; ".join(p.describe(new_text) for p in problems_from_tree(tree, new_text)[:3])
            detail = f"tree-sitter finds {after} syntax error(s) after the change (before: {prep.base_errors}): {shown}"
        checks.append(Check("tree-sitter", ok, detail, verifies=True))
        if not ok:
            return checks

    if is_python(req.language_id, req.path):
        err = python_compile_error(new_text, req.path)
        if err is None:
            checks.append(Check("python compile", True, verifies=True))
        elif _same_unrelated_error(err, prep, text, new_text):
            # Another syntax error elsewhere in the file, present before too: not this fix's to solve, but then
            # compiling proves nothing about the fix either.
            checks.append(Check("python compile", True, "the file has another syntax error elsewhere"))
        else:
            checks.append(Check("python compile", False, f"Python: {_describe_compile(err)}", verifies=True))
            return checks

    if checkers:
        checks.extend(_run_checkers(req, new_text, checkers, deadline))
    return checks


def _target_word(req: FixRequest) -> str:
    """The identifier a diagnostic's range covers, if it covers exactly one."""
    word = req.text[req.problem.start : req.problem.end].strip()
    return word if re.fullmatch(r"[A-Za-z_$][\w$]*", word) else ""


def _count_word(text: str, word: str) -> int:
    return len(re.findall(rf"(?<![\w$]){re.escape(word)}(?![\w$])", text))


def _describe_compile(err: SyntaxError | str) -> str:
    if isinstance(err, SyntaxError):
        where = f"line {err.lineno}: " if err.lineno else ""
        code = (err.text or "").strip()
        return f"{where}{err.msg}" + (f" in `{code[:80]}`" if code else "")
    return err


def _same_unrelated_error(err: SyntaxError | str, prep: _Prep, old_text: str, new_text: str) -> bool:
    before = prep.compile_before
    if not isinstance(err, SyntaxError) or not isinstance(before, SyntaxError) or not err.lineno or not before.lineno:
        return False
    unit_first, unit_last = prep.unit.lines(old_text)
    if unit_first <= before.lineno - 1 <= unit_last:
        return False
    shift = new_text.count("\n") - old_text.count("\n")
    expected = before.lineno if before.lineno - 1 < unit_first else before.lineno + shift
    return err.msg == before.msg and err.lineno == expected


def _run_checkers(req: FixRequest, new_text: str, checkers: Sequence[Checker], deadline: float) -> list[Check]:
    timeout_s = req.settings.checker_timeout_ms / 1000
    label = ", ".join(c.label for c in checkers)
    if not req.settings.workspace_trusted:
        return [Check(label, False, f"checkers not run: {UNTRUSTED}", verifies=True, fatal=True)]
    out: list[Check] = []
    try:
        # One sandbox per attempt, created and removed by this thread: a cancelled request cannot leave it behind.
        sandbox = Sandbox(req.file_path, req.path, trusted=req.settings.workspace_trusted)
    except SandboxError as exc:
        return [Check(label, False, f"the fix could not be checked: {exc}", verifies=True, fatal=True)]
    with sandbox:
        try:
            sandbox.write(new_text)
        except (SandboxError, OSError) as exc:
            return [Check(label, False, f"the fix could not be checked: {exc}", verifies=True, fatal=True)]
        for checker in checkers:
            remaining = deadline - time.monotonic()
            if remaining < 0.5:
                out.append(Check(checker.label, False, f"the time budget ran out before `{checker.label}` could run"))
                break
            result = sandbox.run(checker, new_text, min(timeout_s, remaining))
            detail = "" if result.ok else f"`{' '.join(result.args)}` ({sandbox.kind}): {result.summary()}"
            out.append(Check(checker.label, result.ok, detail, verifies=True, fatal=result.error is not None))
            if not result.ok:
                break
    return out


# -- the loop --------------------------------------------------------------------------------------------------
def _prompt_job(
    req: FixRequest, prep: _Prep, last: Attempt | None
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
        checks = await to_daemon_thread(_check, req, prep, candidate, gen, list(attempts), checkers, deadline)
        attempt = Attempt(
            number, candidate, checks, gen.stop_reason, gen_ms, (time.monotonic() - t1) * 1000, len(built.ids)
        )
        attempts.append(attempt)
        log.info("fix attempt %d: %s", number, "passed" if attempt.passed else attempt.failure)
        if attempt.passed or any(c.fatal for c in checks):
            break
    return _outcome(req, prep, attempts, cancelled, style, (time.monotonic() - started) * 1000)


def _outcome(
    req: FixRequest, prep: _Prep, attempts: list[Attempt], cancelled: bool, style: str, elapsed_ms: float
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
