"""`fimble explain FILE:START-END` with the tiny GGUF: the same explanation path as the LSP command."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from fimble.cli.explain import parse_range
from fimble.cli.main import main
from fimble.errors import DocumentError
from tests.agent.conftest import commit

SOURCE = "def add(a, b):\n    return a + b\n\n\ndef twice(x):\n    return add(x, x)\n"


def test_parse_range() -> None:
    assert parse_range("a/b.py:3-7") == (Path("a/b.py"), 3, 7)
    assert parse_range("c:/x.py:4") == (Path("c:/x.py"), 4, 4)
    for bad in ("x.py", "x.py:0-2", "x.py:5-2"):
        with pytest.raises(DocumentError):
            parse_range(bad)


def test_explain_json_with_history_and_callers(
    tiny_model: Path, repo: git.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"calc.py": SOURCE}, "Add calc helpers", "2024-02-03T12:00:00")
    rc = main(["explain", f"{root / 'calc.py'}:1-2", "--model", str(tiny_model), "--json", "--max-tokens", "24"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert data["markdown"].startswith("This code")
    assert data["commits"] == [
        {"hash": data["commits"][0]["hash"], "date": "2024-02-03", "subject": "Add calc helpers"}
    ]
    assert data["callers"] == ["calc.py (this file)"]
    assert data["model"] == "tiny-plain"


def test_explain_streams_to_stdout(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    assert main(["explain", f"{path}:5-6", "--model", str(tiny_model), "--context", "none"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("This code") and "_Context:" in out
    assert "tiny-plain" in err


def test_bad_ranges_exit_2(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "calc.py"
    path.write_text(SOURCE)
    assert main(["explain", f"{path}:5-60", "--model", str(tiny_model)]) == 2
    assert "past the end" in capsys.readouterr().err
    assert main(["explain", f"{tmp_path / 'missing.py'}:1-2"]) == 2
