"""The execution sandbox: canonical programs pass, wrong ones fail, and every limit is enforced."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fimble.evaluation.humaneval import InfillTask, load_tasks, select
from fimble.evaluation.sandbox import Limits, run_program
from tests.scripts.helpers import TASKS

HUMANEVAL = Path(os.environ.get("FIMBLE_HUMANEVAL_DIR", "/work/shared/data/humaneval-infilling"))


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.entry_point)
def test_canonical_solution_passes_and_a_wrong_one_fails(task: InfillTask) -> None:
    assert run_program(task.canonical_program()).passed
    wrong = run_program(task.program("    return None\n"))
    assert wrong.status == "failed" and wrong.detail


@pytest.mark.skipif(not HUMANEVAL.is_dir(), reason="HumanEval infilling data not present")
def test_real_humaneval_canonical_solutions_pass() -> None:
    for suite in ("humaneval-single", "humaneval-multi"):
        for task in select(load_tasks(HUMANEVAL, suite), 3, seed=0):
            result = run_program(task.canonical_program())
            assert result.passed, (task.task_id, result)
            assert not run_program(task.program("")).passed


def test_wall_clock_timeout_kills_a_sleeping_program() -> None:
    started = time.monotonic()
    result = run_program("import time\ntime.sleep(60)\n", Limits(timeout_s=1.0))
    assert result.status == "timeout"
    assert time.monotonic() - started < 15


def test_cpu_limit_stops_a_busy_loop() -> None:
    result = run_program("while True:\n    pass\n", Limits(timeout_s=30.0, cpu_s=1))
    assert result.status == "timeout" and "CPU" in result.detail


def test_memory_limit_and_guards() -> None:
    assert run_program("x = bytearray(4 * 1024 ** 3)\n").detail.startswith("MemoryError")
    for source in (
        "import socket\nsocket.create_connection(('127.0.0.1', 9))\n",
        "import os\nos.system('true')\n",
        "import subprocess\nsubprocess.run(['true'])\n",
        "import shutil\nshutil.rmtree('/tmp')\n",
        "import resource\n",  # raising the limits back is not possible
    ):
        result = run_program(source)
        assert result.status == "failed", source


def test_runs_in_an_empty_temporary_folder() -> None:
    assert run_program("import os\nassert sorted(os.listdir('.')) == ['program.py', 'runner.py']\n").passed
