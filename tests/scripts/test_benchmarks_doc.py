"""docs/benchmarks.md is what the recorded results give, and a result recorded is rendered with its provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "benchmarks_doc.py"


def test_docs_benchmarks_md_is_generated_from_the_recorded_results() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_each_recorded_result_names_its_commit_date_and_command() -> None:
    records = sorted((REPO / "docs" / "benchmarks").glob("*.json"))
    assert records, "no recorded benchmark results"
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    for path in records:
        entry = json.loads(path.read_text())
        assert {"name", "kind", "recorded", "commit", "command", "result"} <= set(entry)
        assert f"on commit `{entry['commit']}`" in doc and entry["command"] in doc
