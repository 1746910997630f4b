#!/usr/bin/env python3
"""Measure fimble's fix loop on real broken code: HumanEval solutions with one deliberate error each.

Each task's reference solution (prompt + canonical_solution + suffix) gets one mistake, chosen by seed:
  colon    a compound statement loses its ':'              (syntax error; fimble's own diagnostic is the target)
  paren    a line loses its last ')'                       (syntax error; fimble's own diagnostic)
  keyword  'return' becomes 'retrun'                       (syntax error; fimble's own diagnostic)
  name     one use of a local name is misspelled           (NameError; a pyflakes-style diagnostic is the target)
The fix loop then runs exactly as in the editor, in a throwaway git repository holding the broken file and the task's
tests; with --tests (the default) the task's tests are a configured checker (`python test_solution.py`, run in the
loop's temporary worktree), otherwise only the built-in checks (tree-sitter, compile) verify.

Reported per kind and overall: the share of cases with a verified fix, the share whose offered fix really passes the
tests (checked again afterwards, independently), attempts used and time. Table on stdout, JSON with --out.

    .venv/bin/python scripts/eval_fix.py --limit 20 --out /tmp/eval_fix.json
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import builtins
import gzip
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import git

from fimble.agent.checkers import run_command
from fimble.agent.diagnostics import Problem, python_compile_error, syntax_problems
from fimble.agent.fix_loop import FixRequest, run_fix
from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings
from fimble.trust.files import atomic_write_text

DATA = Path("/work/shared/data/humaneval-infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz")
KINDS = ("colon", "paren", "keyword", "name")
TEST_TIMEOUT_S = 15.0
_COMPOUND = re.compile(r"^\s*(if|elif|else|for|while|try|except|finally|with|def)\b.*:\s*(#.*)?$")


@dataclass
class Case:
    task_id: str
    kind: str
    original: str
    broken: str
    problem: Problem
    tests: str  # test_solution.py
    line: int  # 1-based line of the mistake


@dataclass
class Result:
    task_id: str
    kind: str
    line: int
    status: str
    verified: bool
    offered: bool
    passes_tests: bool | None  # None: nothing offered
    attempts: int
    seconds: float
    verified_by: list[str] = field(default_factory=list)
    message: str = ""


# -- making broken code ----------------------------------------------------------------------------------------
def load_tasks(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        tasks = [json.loads(line) for line in fh if line.strip()]
    seen: set[str] = set()
    unique = []
    for task in tasks:  # the multi-line sets hold several holes per task; one solution per task is enough
        if task["task_id"] not in seen:
            seen.add(task["task_id"])
            unique.append(task)
    return unique


def body_lines(source: str, entry_point: str) -> list[int]:
    """0-based lines of the entry point's body after its docstring: where the mistakes go."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:]
            if not body:
                return []
            first = body[0].lineno - 1
            last = (node.end_lineno or node.lineno) - 1
            return list(range(first, last + 1))
    return []


def _offset(lines: list[str], row: int, col: int) -> int:
    return sum(len(line) + 1 for line in lines[:row]) + col


def break_code(source: str, entry_point: str, kind: str, rng: random.Random) -> tuple[str, Problem, int] | None:
    lines = source.split("\n")
    rows = body_lines(source, entry_point)
    if kind == "colon":
        options = [r for r in rows if _COMPOUND.match(lines[r]) and "#" not in lines[r]]
        if not options:
            return None
        row = rng.choice(options)
        line = lines[row].rstrip()
        lines[row] = line[:-1]
    elif kind == "paren":
        options = [r for r in rows if lines[r].rstrip().endswith(")") and "#" not in lines[r]]
        if not options:
            return None
        row = rng.choice(options)
        line = lines[row].rstrip()
        lines[row] = line[:-1]
    elif kind == "keyword":
        options = [r for r in rows if re.match(r"^\s*return\b", lines[r])]
        if not options:
            return None
        row = rng.choice(options)
        lines[row] = lines[row].replace("return", "retrun", 1)
    elif kind == "name":
        return _break_name(source, entry_point, rows, rng)
    else:
        raise ValueError(kind)
    broken = "\n".join(lines)
    problems = syntax_problems(broken, "python", "solution.py")
    if not problems:
        return None
    return broken, problems[0], row + 1


def _break_name(source: str, entry_point: str, rows: list[int], rng: random.Random) -> tuple[str, Problem, int] | None:
    tree = ast.parse(source)
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)
    }
    uses = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.lineno - 1 in rows and len(n.id) >= 2
        and n.id in defined and not hasattr(builtins, n.id)
    ]  # fmt: skip
    if not uses:
        return None
    node = rng.choice(sorted(uses, key=lambda n: (n.lineno, n.col_offset)))
    name = node.id
    bad = name[:-1] if len(name) > 2 else name + name[-1]
    if bad in defined or hasattr(builtins, bad):
        bad = name + "_"
    lines = source.split("\n")
    row = node.lineno - 1
    line = lines[row]
    col = len(line.encode("utf-8")[: node.col_offset].decode("utf-8"))
    lines[row] = line[:col] + bad + line[col + len(name) :]
    broken = "\n".join(lines)
    start = _offset(lines, row, col)
    return broken, Problem(start, start + len(bad), f"undefined name '{bad}'", "pyflakes"), row + 1


def make_cases(tasks: list[dict[str, Any]], kinds: tuple[str, ...], seed: int) -> list[Case]:
    cases: list[Case] = []
    for i, task in enumerate(tasks):
        source = task["prompt"] + task["canonical_solution"] + task["suffix"]
        if python_compile_error(source) is not None:
            continue
        rng = random.Random(f"{seed}:{task['task_id']}")
        order = [kinds[(i + k) % len(kinds)] for k in range(len(kinds))]  # rotate kinds across tasks
        for kind in order:
            made = break_code(source, task["entry_point"], kind, rng)
            if made is None:
                continue
            broken, problem, line = made
            tests = f"from solution import *\n\n{task['test']}\n\ncheck({task['entry_point']})\n"
            cases.append(Case(task["task_id"], kind, source, broken, problem, tests, line))
            break
    return cases


# -- running ---------------------------------------------------------------------------------------------------
def passes_tests(text: str, tests: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="fimble-evalfix-") as tmp:
        (Path(tmp) / "solution.py").write_text(text, encoding="utf-8")
        (Path(tmp) / "test_solution.py").write_text(tests, encoding="utf-8")
        return run_command([sys.executable, "test_solution.py"], Path(tmp), TEST_TIMEOUT_S).ok


async def run_case(runtime: ModelRuntime, case: Case, settings: Settings, with_tests: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="fimble-evalfix-repo-") as tmp:
        root = Path(tmp)
        (root / "solution.py").write_text(case.broken, encoding="utf-8")
        (root / "test_solution.py").write_text(case.tests, encoding="utf-8")
        repo = git.Repo.init(root)
        with repo.config_writer() as cw:
            cw.set_value("user", "name", "eval")
            cw.set_value("user", "email", "eval@example.com")
        repo.index.add(["solution.py", "test_solution.py"])
        repo.index.commit("task")
        repo.close()
        checkers = ((sys.executable, "test_solution.py"),) if with_tests else ()
        request = FixRequest(
            uri=(root / "solution.py").as_uri(),
            text=case.broken,
            language_id="python",
            path="solution.py",
            problem=case.problem,
            settings=settings.merged({"fix_checkers": [list(c) for c in checkers]}),
            file_path=root / "solution.py",
        )
        started = time.monotonic()
        outcome = await run_fix(runtime, request)
        seconds = time.monotonic() - started
    passing = passes_tests(outcome.new_text, case.tests) if outcome.new_text is not None else None
    return Result(
        case.task_id,
        case.kind,
        case.line,
        outcome.status,
        outcome.status == "verified",
        outcome.new_text is not None,
        passing,
        len(outcome.attempts),
        round(seconds, 2),
        list(outcome.verified_by),
        outcome.message[:300],
    )


def summarize(results: list[Result]) -> dict[str, Any]:
    def stats(rows: list[Result]) -> dict[str, Any]:
        n = len(rows)
        if not n:
            return {"cases": 0}
        times = [r.seconds for r in rows]
        verified = [r for r in rows if r.verified]
        return {
            "cases": n,
            "verified": len(verified),
            "verified_share": round(len(verified) / n, 3),
            "fixed_share": round(sum(1 for r in rows if r.passes_tests) / n, 3),
            "verified_but_failing_tests": sum(1 for r in verified if r.passes_tests is False),
            "attempts_mean": round(statistics.mean(r.attempts for r in rows), 2),
            "attempts_mean_verified": round(statistics.mean(r.attempts for r in verified), 2) if verified else None,
            "seconds_mean": round(statistics.mean(times), 2),
            "seconds_p50": round(statistics.median(times), 2),
            "seconds_max": round(max(times), 2),
        }

    kinds = sorted({r.kind for r in results})
    return {"overall": stats(results), **{kind: stats([r for r in results if r.kind == kind]) for kind in kinds}}


def table(summary: dict[str, Any]) -> str:
    head = f"{'kind':<10}{'cases':>6}{'verified':>10}{'fixed':>8}{'wrong':>7}{'attempts':>10}{'mean s':>8}{'p50 s':>7}"
    lines = [head, "-" * len(head)]
    for kind, s in summary.items():
        if not s.get("cases"):
            continue
        lines.append(
            f"{kind:<10}{s['cases']:>6}{s['verified_share']:>10.0%}{s['fixed_share']:>8.0%}"
            f"{s['verified_but_failing_tests']:>7}{s['attempts_mean']:>10.2f}{s['seconds_mean']:>8.1f}{s['seconds_p50']:>7.1f}"
        )
    lines.append("verified: a fix passed fimble's checks; fixed: the offered fix passes the task's tests;")
    lines.append("wrong: verified but failing the tests (possible only without --tests).")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "fix_max_attempts": args.attempts,
        "fix_time_budget_ms": int(args.budget * 1000),
        "checker_timeout_ms": int(TEST_TIMEOUT_S * 1000),
    }
    if args.model:
        overrides["model"] = args.model
    if args.n_threads is not None:
        overrides["n_threads"] = args.n_threads
    if args.n_gpu_layers is not None:
        overrides["n_gpu_layers"] = args.n_gpu_layers
    settings = Settings.from_env().merged(overrides)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    cases = make_cases(load_tasks(args.data), kinds, args.seed)[: args.limit]
    runtime = ModelRuntime()
    runtime.load(settings)
    backend = await runtime.backend()
    results: list[Result] = []
    try:
        for i, case in enumerate(cases, 1):
            result = await run_case(runtime, case, settings, args.tests)
            results.append(result)
            mark = "ok " if result.verified else "-- "
            print(
                f"[{i}/{len(cases)}] {mark}{case.task_id:<14} {case.kind:<8} line {case.line:<3} "
                f"{result.status:<10} attempts {result.attempts} {result.seconds:6.1f} s  tests: {result.passes_tests}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        runtime.shutdown()
    summary = summarize(results)
    return {
        "model": backend.info.name,
        "settings": {"attempts": args.attempts, "budget_s": args.budget, "tests_as_checker": args.tests},
        "data": str(args.data),
        "seed": args.seed,
        "summary": summary,
        "results": [asdict(r) for r in results],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="HumanEval infilling .jsonl.gz")
    parser.add_argument("--limit", type=int, default=20, help="number of broken snippets")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attempts", type=int, default=3, help="fixMaxAttempts")
    parser.add_argument("--budget", type=float, default=60.0, help="fixTimeBudgetMs, in seconds")
    parser.add_argument("--tests", action=argparse.BooleanOptionalAction, default=True,
                        help="use the task's tests as a configured checker (default) or only built-in checks")  # fmt: skip
    parser.add_argument("--model", help="GGUF model (default: settings/FIMBLE_MODEL/embedded)")
    parser.add_argument("--n-threads", type=int)
    parser.add_argument("--n-gpu-layers", type=int)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    print(f"model: {report['model']}; {report['summary']['overall'].get('cases', 0)} cases; seed {args.seed}")
    print(table(report["summary"]))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
        print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
