"""The fix loop's machinery, driven by a scripted model (the only place a fake model is used)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import git
import pytest

from fimble.agent.diagnostics import Problem, syntax_problems
from fimble.agent.fix_answer import extract_code, reindent, trim_to_unit
from fimble.agent.fix_loop import FixRequest, run_fix
from fimble.agent.prompts import build_prompt
from fimble.model.backend import CancelToken
from fimble.prompt.assemble import Snippet
from fimble.settings import Settings
from tests.agent.conftest import RuntimeFactory, commit, worktrees

BROKEN = "import os\n\n\ndef add(a, b)\n    return a + b\n\n\nprint(add(1, 2))\n"
FIXED_UNIT = "def add(a, b):\n    return a + b"


def request(text: str = BROKEN, settings: Settings | None = None, **kw: object) -> FixRequest:
    problem = kw.pop("problem", None) or syntax_problems(text, "python")[0]
    return FixRequest(
        uri="file:///project/calc.py",
        text=text,
        language_id=str(kw.pop("language_id", "python")),
        path=str(kw.pop("path", "calc.py")),
        problem=problem,  # type: ignore[arg-type]
        settings=settings or Settings(model="scripted"),
        git_diff=kw.pop("git_diff", ""),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


async def test_retry_with_feedback_then_verified(scripted: RuntimeFactory) -> None:
    runtime, backend = scripted(["def add(a, b)\n    return a + b\n```", FIXED_UNIT + "\n```\ntrailing chatter"])
    outcome = await run_fix(runtime, request())
    assert outcome.status == "verified"
    assert outcome.verified_by == ("tree-sitter", "python compile")
    assert outcome.new_text == BROKEN.replace("def add(a, b)\n", "def add(a, b):\n")
    assert [a.passed for a in outcome.attempts] == [False, True]
    # The first rejection is fed back into the second prompt.
    assert "A previous fix was rejected" not in backend.prompts[0]
    assert "the code unchanged" in backend.prompts[1]
    assert "expected ':'" in backend.prompts[0]
    # Retries sample instead of repeating the greedy answer.
    assert backend.calls[0].params.temperature == 0.0 and backend.calls[1].params.temperature > 0


async def test_no_verified_fix_says_so(scripted: RuntimeFactory) -> None:
    runtime, backend = scripted(["def add(a, b):\n    return a + (b\n"])
    outcome = await run_fix(runtime, request(settings=Settings(model="scripted", fix_max_attempts=2)))
    assert outcome.status == "failed" and outcome.new_text is None
    assert outcome.message.startswith("no verified fix after 2 attempts")
    assert len(backend.calls) == 2
    assert "'(' was never closed" in outcome.attempts[0].failure.detail  # type: ignore[union-attr]


async def test_unverified_offered_only_when_allowed(scripted: RuntimeFactory) -> None:
    # Fixes the colon but leaves another error: the syntax check fails, but the answer is a plausible rewrite.
    answer = "def add(a, b):\n    return a + (b\n"
    runtime, _ = scripted([answer])
    strict = await run_fix(runtime, request(settings=Settings(model="scripted", fix_max_attempts=1)))
    assert strict.status == "failed" and strict.new_text is None
    lenient = await run_fix(
        runtime, request(settings=Settings(model="scripted", fix_max_attempts=1, fix_allow_unverified=True))
    )
    assert lenient.status == "unverified" and lenient.verified_by == ()
    assert lenient.new_text is not None and "return a + (b" in lenient.new_text
    assert lenient.message.startswith("unverified")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("def add(a, b)\n    return a + b + 0", "the problem is still there: line 4: Syntax error: expected ':'"),
        ("   \n\n", "empty"),
        ("I fixed the missing colon after the parameters, it should work now.", "not a corrected version"),
        (BROKEN.replace("def add(a, b)\n", "def add(a, b):\n") * 3, "rewrites more than the code to fix"),
        ("import os\n\n\ndef add(a, b):\n    return a + b\n\n\nprint(add(1, 2))", "rewrites more than the code to fix"),
    ],
)
async def test_bad_answers_are_rejected(scripted: RuntimeFactory, answer: str, reason: str) -> None:
    runtime, _ = scripted([answer])
    outcome = await run_fix(runtime, request(settings=Settings(model="scripted", fix_max_attempts=1)))
    assert outcome.status == "failed"
    assert reason in outcome.message


async def test_answer_cut_off_at_max_tokens_is_rejected(scripted: RuntimeFactory) -> None:
    runtime, _ = scripted(["def add(a, b):\n    return a + b\n" + "    pass\n" * 400])
    outcome = await run_fix(runtime, request(settings=Settings(model="scripted", fix_max_attempts=1)))
    assert outcome.status == "failed" and "cut off" in outcome.message


async def test_change_must_touch_the_problem(scripted: RuntimeFactory) -> None:
    text = "def f(x):\n    y = x + z\n    return y\n"
    at = text.index("x + z")
    problem = Problem(at, at + 5, 'Operator "+" not supported for types "int" and "str"', "Pyright")
    # Changes only the last line: the reported line stays broken.
    runtime, _ = scripted(["def f(x):\n    y = x + z\n    return y * 2"])
    outcome = await run_fix(runtime, request(text, Settings(model="scripted", fix_max_attempts=1), problem=problem))
    assert outcome.status == "failed" and "does not touch line 2" in outcome.message


async def test_the_name_a_diagnostic_points_at_must_go(scripted: RuntimeFactory) -> None:
    text = "def below_zero(ops):\n    balance = 0\n    for op in ops:\n        balance += op\n        if balanc < 0:\n            return True\n    return False\n"
    at = text.index("balanc <")
    problem = Problem(at, at + 6, "undefined name 'balanc'", "pyflakes")
    # Defining a function named like the typo compiles, touches the line, and fixes nothing.
    cheat = text.replace("        if balanc < 0:", "        def balanc(x):\n            return x").rstrip("\n")
    runtime, _ = scripted([cheat, text.replace("balanc <", "balance <").rstrip("\n")])
    outcome = await run_fix(runtime, request(text, problem=problem))
    assert outcome.status == "verified", outcome.message
    assert "`balanc`, which the problem points at, is still there" in outcome.attempts[0].failure.detail  # type: ignore[union-attr]
    assert outcome.new_text == text.replace("balanc <", "balance <")


async def test_external_diagnostic_fixed_and_indentation_restored(scripted: RuntimeFactory) -> None:
    text = "class Shop:\n    def total(self, items):\n        return sum(item.price for item in itemz)\n"
    start = text.index("itemz")
    problem = Problem(start, start + 5, '"itemz" is not defined', "Pyright", "reportUndefinedVariable")
    # The model drops the method's class indentation; the loop puts it back.
    runtime, backend = scripted(["def total(self, items):\n    return sum(item.price for item in items)\n```"])
    outcome = await run_fix(runtime, request(text, problem=problem))
    assert outcome.status == "verified", outcome.message
    assert outcome.new_text == text.replace("itemz", "items")
    assert '"itemz" is not defined (Pyright reportUndefinedVariable)' in backend.prompts[0]


async def test_other_languages_are_checked_with_tree_sitter(scripted: RuntimeFactory) -> None:
    text = "function add(a, b) {\n  return a + b;\n\n\nconsole.log(add(1, 2));\n"
    problems = syntax_problems(text, "javascript")
    assert problems
    fixed = "function add(a, b) {\n  return a + b;\n}\n\n\nconsole.log(add(1, 2));"
    runtime, _ = scripted([fixed])
    outcome = await run_fix(runtime, request(text, problem=problems[0], language_id="javascript", path="add.js"))
    assert outcome.status == "verified", outcome.message
    assert outcome.verified_by == ("tree-sitter",)
    assert "python compile" not in [c.name for c in outcome.attempts[0].checks]


async def test_plaintext_cannot_be_verified(scripted: RuntimeFactory) -> None:
    text = "hello wrold\n"
    problem = Problem(6, 11, "Unknown word: wrold", "cSpell")
    runtime, _ = scripted(["hello world"])
    outcome = await run_fix(runtime, request(text, problem=problem, language_id="plaintext", path="notes.txt"))
    assert outcome.status == "failed" and "no checker applies" in outcome.message


async def test_definitions_and_git_diff_reach_the_prompt(scripted: RuntimeFactory) -> None:
    from fimble.agent.context import FixedContext

    ctx = FixedContext([Snippet("definitions", "lib/money.py", "def add(a, b):\n    '''Adds money.'''")])
    runtime, backend = scripted([FIXED_UNIT])
    diff = "--- a/calc.py\n+++ b/calc.py\n@@ -1 +1 @@\n-x\n+y"
    outcome = await run_fix(runtime, request(context=ctx, git_diff=diff))
    assert outcome.status == "verified"
    prompt = backend.prompts[0]
    assert "lib/money.py" in prompt and "Adds money." in prompt
    assert "+y" in prompt and "git diff" in prompt
    assert "import os" in prompt  # the scope around the unit


async def test_chat_template_is_used_when_the_model_has_one(scripted: RuntimeFactory) -> None:
    template = (
        "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    runtime, backend = scripted([FIXED_UNIT + "\n```"], chat_template=template)
    outcome = await run_fix(runtime, request())
    assert outcome.status == "verified" and outcome.style == "chat"
    prompt = backend.prompts[0]
    assert prompt.startswith("<start_of_turn>user\nFix the problem in this python code")
    assert prompt.endswith("<start_of_turn>model\n```python\n")


async def test_user_checker_feedback_and_worktree_cleanup(scripted: RuntimeFactory, repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"calc.py": BROKEN.replace("def add(a, b)\n", "def add(a, b):\n"), "README": "x\n"}, "initial")
    (root / "calc.py").write_text(BROKEN)  # the user's unsaved-to-git state
    (root / "helper.txt").write_text("uncommitted file\n")
    checker = [
        sys.executable,
        "-c",
        "import sys, pathlib; src = pathlib.Path(sys.argv[1]).read_text(); "
        "assert pathlib.Path('helper.txt').exists(), 'uncommitted files are copied'; "
        "sys.exit('add must return a + b, not a - b' if 'a - b' in src else 0)",
        "{file}",
    ]
    settings = Settings(model="scripted", fix_checkers=(tuple(checker),))
    runtime, backend = scripted(["def add(a, b):\n    return a - b", FIXED_UNIT])
    outcome = await run_fix(runtime, request(settings=settings, file_path=root / "calc.py"))
    assert outcome.status == "verified", outcome.message
    assert outcome.verified_by[-1] == Path(sys.executable).name
    assert "add must return a + b" in backend.prompts[1]
    assert "git worktree" in outcome.attempts[0].failure.detail  # type: ignore[union-attr]
    assert worktrees(repo) == []
    assert (root / "calc.py").read_text() == BROKEN  # the user's file is never written


async def test_checker_that_hangs_times_out(scripted: RuntimeFactory, repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"calc.py": BROKEN}, "initial")
    hang = (sys.executable, "-c", "import time; time.sleep(60)")
    settings = Settings(model="scripted", fix_checkers=(hang,), checker_timeout_ms=500, fix_max_attempts=1)
    runtime, _ = scripted([FIXED_UNIT])
    started = time.monotonic()
    outcome = await run_fix(runtime, request(settings=settings, file_path=root / "calc.py"))
    assert time.monotonic() - started < 15
    assert outcome.status == "failed" and "timed out" in outcome.message
    assert worktrees(repo) == []


async def test_worktree_removed_when_the_request_is_cancelled_mid_check(
    scripted: RuntimeFactory, repo: git.Repo
) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"calc.py": BROKEN}, "initial")
    slow = (sys.executable, "-c", "import time; time.sleep(1.5)")
    runtime, _ = scripted([FIXED_UNIT])
    task = asyncio.create_task(
        run_fix(runtime, request(settings=Settings(model="scripted", fix_checkers=(slow,)), file_path=root / "calc.py"))
    )
    deadline = time.monotonic() + 10
    while not worktrees(repo) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert worktrees(repo), "the checker's worktree should exist while it runs"
    task.cancel()  # $/cancelRequest while the checker runs
    with pytest.raises(asyncio.CancelledError):
        await task
    while worktrees(repo) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert worktrees(repo) == []


async def test_checker_that_cannot_start_stops_the_loop(scripted: RuntimeFactory, tmp_path: Path) -> None:
    settings = Settings(model="scripted", fix_checkers=(("no-such-checker-xyz", "{file}"),))
    runtime, backend = scripted([FIXED_UNIT])
    outcome = await run_fix(runtime, request(settings=settings, file_path=tmp_path / "calc.py"))
    assert outcome.status == "failed" and "could not start 'no-such-checker-xyz'" in outcome.message
    assert len(backend.calls) == 1  # retrying cannot fix the configuration


async def test_time_budget_bounds_the_loop(scripted: RuntimeFactory) -> None:
    runtime, _ = scripted(["def add(a, b)\n    return a + b\n" * 50], delay_s=0.05)
    settings = Settings(model="scripted", fix_time_budget_ms=400, fix_max_attempts=5)
    started = time.monotonic()
    outcome = await run_fix(runtime, request(settings=settings))
    assert time.monotonic() - started < 5
    assert outcome.status == "failed" and "time budget" in outcome.message


async def test_cancel_stops_the_fix(scripted: RuntimeFactory) -> None:
    runtime, _ = scripted([FIXED_UNIT * 20], delay_s=0.05)
    cancel = CancelToken()
    task = asyncio.create_task(run_fix(runtime, request(), cancel))
    await asyncio.sleep(0.2)
    cancel.cancel()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.status == "cancelled" and outcome.new_text is None


async def test_answer_running_past_the_unit_is_trimmed(scripted: RuntimeFactory) -> None:
    runaway = FIXED_UNIT + "\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n" + "    x = 1\n" * 300
    runtime, _ = scripted([runaway])
    outcome = await run_fix(runtime, request(settings=Settings(model="scripted", fix_max_attempts=1)))
    assert outcome.status == "verified", outcome.message
    assert outcome.new_text == BROKEN.replace("def add(a, b)\n", "def add(a, b):\n")


def test_trim_to_unit() -> None:
    unit = "    if x\n        y()\n    else:\n        z()"
    assert trim_to_unit("    if x:\n        y()\n    else:\n        z()\n    w()\n", unit) == (
        "    if x:\n        y()\n    else:\n        z()",
        True,
    )
    assert trim_to_unit("a = 1\nb = 2", "a = (1\nb = 2") == ("a = 1\nb = 2", False)
    assert trim_to_unit("something else\nq", "def f():\n    pass")[1] is False


def test_extract_code_and_reindent() -> None:
    assert extract_code("```python\ndef f():\n    pass\n```\nExplanation") == "def f():\n    pass"
    assert extract_code("\n\n    x = 1\n   \n") == "    x = 1"
    assert reindent("def m(self):\n    return 1", "    def m(self):\n        return 2") == (
        "    def m(self):\n        return 1"
    )
    assert reindent("x = 1\n", "x = 2") == "x = 1\n"


def test_sections_are_dropped_to_fit(scripted: RuntimeFactory) -> None:
    _, backend = scripted([], n_ctx=700)
    slots = {"language": "python", "fence": "python", "path": "a.py", "problem": "p", "unit": "x = 1"}
    sections = {"example": {}, "scope": {"scope": "y = 2\n" * 40}, "git_diff": {"git_diff": "+z\n" * 100}}
    built = build_prompt(backend, "fix", slots, sections, ("git_diff", "scope", "example"), 100)
    assert built.dropped[:2] == ["definitions", "feedback"]  # unavailable
    assert "git_diff" in built.dropped and "example" in built.sections
    assert len(built.ids) <= 700 - 100
