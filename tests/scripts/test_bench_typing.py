"""scripts/bench_typing.py on the tiny model without llama-server: the JSON and the table carry every request and
the figures the README reports, model requests apart from typed-through cache hits."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import run_script


def test_typing_replay_without_a_peer(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "pkg").mkdir()
    module = tmp_path / "pkg" / "mod.py"
    module.write_text("".join(f"def f{i}(a, b):\n    total = a + b\n    return total * {i}\n\n\n" for i in range(30)))
    out = tmp_path / "typing.json"
    result = run_script(
        "bench_typing.py", "--file", f"{module}:{tmp_path}:0", "--no-peer", "--limit", "4",
        "--model", str(tiny_model), "--out", str(out), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads(out.read_text())["files"]
    assert row["fimble_ms"]["n"] == 4 and row["peer_ms"]["n"] == 0
    model_requests = [r for r in row["requests"] if not r["cached"]]
    assert row["model_ms"]["n"] == len(model_requests) >= 1
    assert all(r["prompt_tokens"] > 0 for r in model_requests)
    assert set(row["targets"].values()) == {"n/a"}  # nothing to compare with
    assert "| mod.py (seed 0) |" in result.stdout
