"""scripts/bench_big_file.py end to end on a tiny model: a freshly opened big file gets a whole suggestion, a budget
shorter than the prompt's evaluation still ends in one (never a cut one), and the overhead run reports the server's
own cost."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import run_script


def _big_file(path: Path, functions: int) -> Path:
    path.write_text(
        "".join(
            f'def func_{i}(x, y):\n    """Add {i}."""\n    total = x + y + {i}\n    return total\n\n'
            for i in range(functions)
        )
    )
    return path


def test_fresh_big_file_budget200_and_overhead(tmp_path: Path, tiny_model: Path) -> None:
    big = _big_file(tmp_path / "big.py", 400)  # 2,000 lines: the prompt is cut to the context window
    out = tmp_path / "big.json"
    result = run_script(
        "bench_big_file.py", "--file", str(big), "--runs", "fresh,budget200,overhead", "--limit", "6",
        "--model", str(tiny_model), "--out", str(out), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["lines"] == 2000
    runs = {run["label"]: run for run in report["runs"]}
    assert set(runs) == {"fresh", "budget200"}
    for run in runs.values():
        assert run["error"] == "", run["error"]
        # The prompt fills most of the tiny model's 2,048-token window.
        assert run["prompt_tokens"] > 1000
        assert run["first_whole_ms"] is not None and run["requests"] >= 1
        assert run["cut_suggestions_shown"] == 0
        assert run["asks"][run["requests"] - 1]["suggestion"] == "val=fn(x)"
        assert all(a["stop_reason"] for a in run["asks"] if a["cached"] is False)  # from fimble/status
        for later in run["asks"][1 : run["requests"]]:
            if not later["cached"]:  # what an earlier, cut request evaluated is kept
                assert later["reused_tokens"] > 0, run["asks"]
    assert runs["budget200"]["settings"]["time_budget_ms"] == 200
    overhead = report["overhead"]
    assert overhead["keystrokes"] == 6 and overhead["answered"] == 6
    assert overhead["overhead_ms"]["p50"] is not None and overhead["overhead_ms"]["p50"] >= 0
    assert "first whole" in result.stdout and "overhead" in result.stdout
