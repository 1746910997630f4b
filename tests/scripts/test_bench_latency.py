"""scripts/bench_latency.py against the real server with a tiny model (machinery only: the numbers are meaningless),
and the typist's edits on their own."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fimble_dev.lsp_client import position
from fimble_dev.typist import Typist, region_end, start_offset
from tests.scripts.helpers import run_script

SOURCE = (
    "import os\n\n\n"
    "def join_all(parts):\n"
    "    result = []\n"
    "    for part in parts:\n"
    "        result.append(os.path.join('a', part))\n"
    "    return result\n"
)


class _FakeLlamaServer(BaseHTTPRequestHandler):
    """Answers llama-server's /completion like the real one (content and timings), recording each body."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append({"path": self.path, **body})
        data = json.dumps({"content": "x", "timings": {"cache_n": 7, "prompt_n": 1, "predicted_n": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def peer() -> Iterator[str]:
    _FakeLlamaServer.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeLlamaServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_bench_replays_typing_and_compares_with_bare_llama(tmp_path: Path, tiny_model: Path, peer: str) -> None:
    file = tmp_path / "ws" / "example.py"
    file.parent.mkdir()
    file.write_text(SOURCE)
    out = tmp_path / "latency.json"
    result = run_script(
        "bench_latency.py", "--model", str(tiny_model), "--file", str(file), "--limit", "5", "--settle-ms", "100",
        "--max-tokens", "8", "--typo-rate", "1", "--accept-rate", "0", "--seed", "2", "--out", str(out), "--peer-url", peer,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for label in ("latency (request -> answer)", "bare llama.cpp, cold", "cache hits", "target: p50"):
        assert label in result.stdout
    report = json.loads(out.read_text())
    summary = report["summary"]
    assert summary["keystrokes"] == 5 and summary["answered"] == 5 and summary["errors"] == 0
    assert summary["latency_ms"]["n"] == 5 and summary["latency_ms"]["p50"] > 0
    assert summary["bare_cold_ms"]["n"] == 5 and summary["ratio_p50_to_cold"] is not None
    assert summary["cache_hit_rate"] is not None and summary["cache_hit_source"]
    assert summary["tokens_evaluated"] + summary["tokens_reused"] > 0
    assert summary["notes"]["bare_tokenization"] == "exact"  # bare llama.cpp saw exactly fimble's prompts
    # Every letter mistyped once and fixed (typo rate 1), nothing wrong accepted (accept rate 0).
    assert summary["actions"]["typo"] >= 2 and summary["actions"]["backspace"] >= 2
    request = report["requests"][0]
    assert request["prompt_tokens_debug"] == request["bare_tokens"] > 0
    # Model time and the pipeline's phases come from fimble/status (stopReason, timingsMs), not from the log.
    assert {"stopReason", "timingsMs"} <= set(report["status_fields"])
    assert summary["overhead_ms"]["n"] == 5 and "prompt_build" in summary["pipeline_phases_ms_p50"]
    model_runs = [r for r in report["requests"] if r["cached"] is False]
    assert model_runs and all(r["stop_reason"] and r["model_ms"] is not None for r in model_runs)
    assert request["key_to_suggestion_ms"] > request["latency_ms"]  # the debounce sits between them
    assert report["model"]["name"] == "tiny-plain"
    # The peer got the same prompts, with its prompt cache on.
    assert len(_FakeLlamaServer.bodies) == 5 and summary["peer_ms"]["n"] == 5
    assert summary["ratio_p50_to_peer"] is not None and summary["targets"]["p50 <= peer llama-server p50"] != "n/a"
    first = _FakeLlamaServer.bodies[0]
    assert first["path"] == "/completion" and first["cache_prompt"] is True and first["prompt"]
    assert report["requests"][0]["peer_cached_tokens"] == 7


def test_default_start_is_a_statement_not_a_docstring_line() -> None:
    source = 'import os\n\n\ndef first():\n    """Words\n    more words\n    """\n    return os.sep\n'
    assert source[start_offset(source, None) :].startswith("more words")  # without a grammar: any indented word
    assert source[start_offset(source, None, "example.py") :].startswith("return os.sep")


def test_region_ends_where_the_rest_of_the_file_still_parses() -> None:
    source = (
        "def first():\n"
        "    pass\n\n\n"
        "def second():\n"
        '    """One line.\n\n'
        "    More words in the docstring.\n"
        '    """\n'
        "    return 2\n"
    )
    start = start_offset(source, 2)
    plain_end = region_end(source, start, 30)
    assert source[:plain_end].endswith("One line.")  # without a grammar: the end of the line 30 characters reach
    end = region_end(source, start, 30, "example.py")
    # Not inside the docstring: cut there, the rest of the file would open a string where it closes one.
    assert source[:end].endswith('    """') and source[end:] == "\n    return 2\n"


def test_typist_types_accepts_and_fixes_mistakes() -> None:
    start = start_offset(SOURCE, 5)
    assert SOURCE[start:].startswith("result = []")
    end = region_end(SOURCE, start, 20)
    assert SOURCE[end] == "\n"
    typist = Typist(SOURCE[:start], SOURCE[start:end], SOURCE[end:], random.Random(0), accept_rate=1.0, typo_rate=0)

    def step(suggestion: str) -> str:
        before = typist.text
        kind, a, b, new = typist.next_action(suggestion)
        assert typist.text == before[:a] + new + before[b:]  # the edit sent is exactly the change made
        return kind

    assert step("") == "type"
    assert step("esult = []") == "accept"
    assert typist.pos == len("result = []")
    assert step("wrong") == "accept-wrong"
    assert step("") == "undo"
    assert typist.text == SOURCE[: start + len("result = []")] + SOURCE[end:]
    assert step("") == "type"  # the newline, with the next line's indentation
    assert typist.text.endswith("result = []\n    " + SOURCE[end:])
    assert step("for part, whatever") == "accept-word"
    assert typist.region[: typist.pos].endswith("for")


def test_positions_count_utf16() -> None:
    text = "a\n😀b"
    assert position(text, 4).line == 1 and position(text, 4).character == 3
