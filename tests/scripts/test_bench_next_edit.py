"""scripts/bench_next_edit.py on a small file: the overhead run with the scripted next-edit model (every answer an
edit, checked and shown) and the interference pair with the tiny model, asking for next edits as the clients do."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import run_script


def test_overhead_and_interference_on_a_small_file(tmp_path: Path, tiny_random_model: Path) -> None:
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "mod.py"
    module.write_text(
        "".join(f"def f{i}(value, b):\n    total = value + b\n    return total * {i}\n\n\n" for i in range(30))
    )
    out = tmp_path / "next-edit.json"
    result = run_script(
        "bench_next_edit.py", "--file", f"{module}:{tmp_path}", "--requests", "3", "--tiny-requests", "0",
        "--seeds", "1", "--limit", "4", "--model", str(tiny_random_model), "--n-ctx", "8192", "--out", str(out), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    (overhead,) = report["overhead"]
    assert overhead["engine"] == "scripted" and overhead["server_overhead_ms"]["n"] == 3
    assert overhead["outcomes"] == {"edits shown": 3}  # the scripted model renames the word through the region
    assert {"prompt_build", "checks", "queue", "request"} <= set(overhead["phases_ms"])
    (pair,) = report["interference"]
    assert pair["off"]["completion_ms"]["n"] == pair["on"]["completion_ms"]["n"] == 4
    assert pair["off"]["next_edit_asks"] == {}
    assert sum(pair["on"]["next_edit_asks"].values()) >= 1  # the tiny model's answers are empty at times
    assert "| mod.py (seed 0) | scripted |" in result.stdout and "| mod.py (0) |" in result.stdout
