"""Shared bits for the harness and benchmark tests: small HumanEval-shaped tasks and running a script (the scripted
completer is `tests.scripted.ScriptedCompleter`)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from fimble.evaluation.humaneval import InfillTask
from tests.conftest import server_env

REPO = Path(__file__).resolve().parents[2]

TASKS = [
    InfillTask(
        task_id="SingleLineInfilling/HumanEval/0/L0",
        entry_point="add",
        prompt='def add(a, b):\n    """Return the sum of a and b."""\n',
        suffix="",
        canonical_solution="    return a + b\n",
        test="\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    ),
    InfillTask(
        task_id="SingleLineInfilling/HumanEval/1/L1",
        entry_point="count_evens",
        prompt="def count_evens(xs):\n    total = 0\n    for x in xs:\n",
        suffix="            total += 1\n    return total\n",
        canonical_solution="        if x % 2 == 0:\n",
        test="\n\ndef check(candidate):\n    assert candidate([1, 2, 4]) == 2\n    assert candidate([]) == 0\n",
    ),
    InfillTask(
        task_id="SingleLineInfilling/HumanEval/2/L0",
        entry_point="first",
        prompt="def first(xs):\n",
        suffix="",
        canonical_solution="    return xs[0]\n",
        test="\n\ndef check(candidate):\n    assert candidate([7, 8]) == 7\n",
    ),
]


def write_dataset(folder: Path, tasks: list[InfillTask] = TASKS) -> Path:
    """Both suite files, in the benchmark's own format (gzipped JSON lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("HumanEval-SingleLineInfilling.jsonl.gz", "HumanEval-MultiLineInfilling.jsonl.gz"):
        with gzip.open(folder / name, "wt", encoding="utf-8") as fh:
            for task in tasks:
                fh.write(json.dumps(task.__dict__) + "\n")
    return folder


def run_script(
    name: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        capture_output=True, text=True, timeout=timeout, env=server_env(**(env or {})), cwd=REPO,
    )  # fmt: skip
