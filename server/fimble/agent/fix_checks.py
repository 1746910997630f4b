"""Whether a candidate rewrite fixes the problem, cheapest check first, stopping at the first failure (the fix
loop's steps 1-5): the answer is code and only the unit's; the change touches the problem; tree-sitter errors do
not grow; Python compiles; the user's checkers pass in a sandbox. Blocking (compilers, checkers): the loop runs it
in a thread.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fimble.agent.checkers import Checker, Sandbox, SandboxError
from fimble.agent.diagnostics import parse, problems_from_tree, python_compile_error, syntax_problems
from fimble.agent.fix_answer import similarity
from fimble.languages import is_python
from fimble.model.backend import GenerationResult
from fimble.syntax.error_nodes import count_errors
from fimble.trust.safe_git import UNTRUSTED

if TYPE_CHECKING:
    from fimble.agent.fix_loop import Attempt, FixRequest, Prepared

MIN_SIMILARITY = 0.5  # below this the answer is not a rewrite of the unit (prose, another function, noise)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    verifies: bool = False  # a real tool that checked the result (vs. a gate that only rejects nonsense)
    fatal: bool = False  # retrying cannot help (a checker that cannot start)


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


def _answer_checks(prep: Prepared, candidate: str, gen: GenerationResult, previous: Sequence[Attempt]) -> Check:
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
    if similarity(unit, candidate) < MIN_SIMILARITY:
        return Check(
            "answer", False, "the answer is not a corrected version of the code (it shares too little with it)"
        )
    return Check("answer", True)


def check_candidate(
    req: FixRequest,
    prep: Prepared,
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


def _same_unrelated_error(err: SyntaxError | str, prep: Prepared, old_text: str, new_text: str) -> bool:
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
