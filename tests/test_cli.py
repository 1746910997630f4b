"""`fimble` on the command line, as a user runs it (subprocesses, real tiny models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fimble_dev.tiny_gguf import write_not_gguf, write_truncated_copy
from tests.conftest import server_env

EXAMPLE = "def add(a, b):\n    return a + b\n\n\ndef main():\n    total = \n"


def fimble(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fimble", *args],
        capture_output=True, text=True, timeout=300, env=server_env(**(env or {})), cwd=cwd,
    )  # fmt: skip


@pytest.fixture
def example(tmp_path: Path) -> Path:
    path = tmp_path / "example.py"
    path.write_text(EXAMPLE)
    return path


def test_complete_prints_suggestion_and_timings(example: Path, tiny_model: Path) -> None:
    result = fimble("complete", f"{example}:6:13", "--model", str(tiny_model), "--max-tokens", "16")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    for word in ("prompt", "reused", "generated", "total"):
        assert word in result.stderr


def test_complete_json_and_show_prompt(example: Path, tiny_fim_model: Path) -> None:
    result = fimble("complete", f"{example}:6:13", "--model", str(tiny_fim_model), "--json", "--show-prompt")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"] == "qwen2.5-coder"
    assert data["prompt_tokens"] > 0 and data["generated_tokens"] > 0
    assert "<|fim_prefix|>" in data["prompt"] and data["prompt"].endswith("<|fim_middle|>")
    assert "total = " in data["prompt"]
    assert "cursor window" in result.stderr  # the labelled prompt


def test_model_from_environment(example: Path, tiny_model: Path) -> None:
    result = fimble("complete", f"{example}:6:13", "--json", env={"FIMBLE_MODEL": str(tiny_model)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "tiny-plain"


@pytest.mark.parametrize(
    ("location", "message"),
    [("{f}:99:1", "past the end of the file"), ("{f}:6:99", "past the end of line"), ("{f}:0:1", "1-based"),
     ("{f}", "FILE:LINE:COL"), ("{d}/missing.py:1:1", "Cannot read")],
)  # fmt: skip
def test_bad_locations_exit_2(example: Path, tiny_model: Path, location: str, message: str) -> None:
    result = fimble("complete", location.format(f=example, d=example.parent), "--model", str(tiny_model))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_non_utf8_file_exits_2(tmp_path: Path, tiny_model: Path) -> None:
    path = tmp_path / "latin1.py"
    path.write_bytes(b"x = '\xe9'\n")
    result = fimble("complete", f"{path}:1:1", "--model", str(tiny_model))
    assert result.returncode == 2 and "not UTF-8" in result.stderr


def test_bad_models_exit_2_with_one_message(example: Path, tmp_path: Path, tiny_model: Path) -> None:
    cases = {
        tmp_path / "missing.gguf": "does not exist",
        write_not_gguf(tmp_path / "text.gguf"): "not a GGUF",
        write_truncated_copy(tiny_model, tmp_path / "cut.gguf", 0.6): "truncated",
    }
    for model, message in cases.items():
        result = fimble("complete", f"{example}:6:13", "--model", str(model))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr


def test_doctor_reports_model_format_and_grammars(tiny_fim_model: Path, tmp_path: Path) -> None:
    result = fimble("doctor", "--json", "--model", str(tiny_fim_model))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"]["format"] == "qwen2.5-coder" and report["model"]["fim"] is True
    assert report["grammars"]["python"] is True
    assert isinstance(report["gpu_offload_supported"], bool)
    bad = fimble("doctor", "--model", str(tmp_path / "nope.gguf"))
    assert bad.returncode == 2 and "PROBLEM" in bad.stdout


def test_models_pull_from_a_local_folder_and_offline_error(tiny_model: Path, tmp_path: Path) -> None:
    env = {"FIMBLE_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    result = fimble("models", "pull", str(tiny_model.parent), tiny_model.name, env=env)
    assert result.returncode == 0, result.stderr
    pulled = Path(result.stdout.strip())
    assert pulled.is_file() and pulled.read_bytes() == tiny_model.read_bytes()
    offline = fimble("models", "pull", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen.gguf", "--offline", env=env)
    assert offline.returncode == 2
    assert "Cannot download" in offline.stderr and "Traceback" not in offline.stderr


@pytest.mark.parametrize("command", [[], ["serve"], ["complete"], ["doctor"], ["models"], ["models", "pull"]])
def test_help_for_every_command(command: list[str]) -> None:
    result = fimble(*command, "--help")
    assert result.returncode == 0 and "usage: fimble" in result.stdout


def test_version() -> None:
    result = fimble("--version")
    assert result.returncode == 0 and result.stdout.startswith("fimble ")


def test_complete_waits_for_the_whole_answer_unless_a_budget_is_asked_for() -> None:
    """A one-shot command has no second request to finish what a budget cut: the default budget (meant for the
    editor's keystrokes) does not apply; a flag or FIMBLE_TIME_BUDGET_MS does."""
    from fimble.cli.complete import time_budget_s
    from fimble.settings import Settings

    default = Settings()
    assert time_budget_s(default, {}, {}) is None
    assert time_budget_s(Settings(time_budget_ms=200), {"time_budget_ms": 200}, {}) == 0.2
    assert time_budget_s(Settings(time_budget_ms=1500), {}, {"FIMBLE_TIME_BUDGET_MS": "1500"}) == 1.5
