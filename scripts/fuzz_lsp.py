#!/usr/bin/env python3
"""Malformed-message fuzzing of `fimble serve` over stdio.

Speaks to the server byte by byte (no LSP library in between, so any framing and any JSON can be sent) and checks
what the trust-boundary issue asks of every message a client can send:
- 0 crashes: the server process stays up (a crash is counted and the session restarted);
- 0 unanswered requests, and no request answered twice: each request id sent gets exactly one response;
- the event loop never stalls (the server samples its own loop lateness with FIMBLE_MONITOR_LOOP=1 and reports the
  worst per category through `fimble/stats`);
- no traceback on stderr: expected client errors are one log line.

Categories: framing (headers), json (bodies that are not JSON objects), envelope (jsonrpc/id/method), params
(valid messages of every method fimble serves with one part mutated: wrong types, negative or huge positions,
50 KB strings where arrays belong, unpaired surrogates, `..` URIs, missing params), unknown (methods fimble does not
serve), responses (garbage answers to the server's own requests), and lifecycle (requests before `initialize`,
after `shutdown`, `exit` codes, a huge Content-Length) in sessions of their own.

    python scripts/fuzz_lsp.py [--count 10000] [--seed 0] [--model PATH] [--out fuzz.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fimble.lsp.transport import read_frame

CATEGORY_SHARES = {"framing": 0.05, "json": 0.1, "envelope": 0.15, "params": 0.55, "unknown": 0.05, "responses": 0.1}
ANSWER_TIMEOUT_S = 180.0
TRACEBACK = b"Traceback (most recent call last)"
WORKSPACE_FILES = {
    "a.py": "import os\n\n\ndef join_all(parts):\n    result = []\n    for part in parts:\n        result.append(os.path.join('a', part))\n    return result\n",
    "pkg/util.py": "def helper(x: int) -> int:\n    return x * 2\n",
}


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def encode(obj: Any) -> bytes:
    # ensure_ascii keeps unpaired surrogates as \\uXXXX escapes, as a JavaScript client would send them
    return json.dumps(obj, ensure_ascii=True).encode("ascii")


class Wire:
    """One `fimble serve` process, spoken to in raw bytes; collects every response by id."""

    def __init__(self, cmd: list[str], env: dict[str, str], stderr_path: Path) -> None:
        self._stderr = stderr_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.responses: dict[Any, list[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self.null_id_errors = 0
        self.answer_server: Callable[[dict[str, Any]], bytes | None] = self._default_answer
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            got = read_frame(self.proc.stdout, max_bytes=1 << 30)
            if got is None:
                break
            if got.body is None:
                continue
            try:
                msg = json.loads(got.body)
            except ValueError:
                continue
            if "method" in msg and "id" in msg:  # a request from the server
                reply = self.answer_server(msg)
                if reply is not None:
                    # Not from this thread: the main thread may hold the pipe while the server waits for us to
                    # read what it writes.
                    threading.Thread(target=self.send_raw, args=(reply,), daemon=True).start()
                continue
            with self._cond:
                if "id" in msg and "method" not in msg:
                    if msg["id"] is None:
                        self.null_id_errors += 1
                    else:
                        self.responses.setdefault(msg["id"], []).append(msg)
                else:
                    self.notifications.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @staticmethod
    def _default_answer(msg: dict[str, Any]) -> bytes:
        result: Any = [{}] if msg.get("method") == "workspace/configuration" else None
        return frame(encode({"jsonrpc": "2.0", "id": msg["id"], "result": result}))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_raw(self, data: bytes) -> bool:
        assert self.proc.stdin is not None
        # The reader thread answers the server's requests while the main thread sends: one frame at a time.
        with self._write_lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                return True
            except (BrokenPipeError, OSError):
                return False

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request(self, method: str, params: Any = None) -> int:
        msg_id = self.new_id()
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send_raw(frame(encode(msg)))
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send_raw(frame(encode(msg)))

    def wait(self, ids: set[Any], timeout: float) -> set[Any]:
        """Ids still without a response after `timeout` (or when the server died)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = {i for i in ids if i not in self.responses}
                left = deadline - time.monotonic()
                if not missing or left <= 0 or not self.alive():
                    return missing
                self._cond.wait(min(left, 0.5))

    def call(self, method: str, params: Any = None, timeout: float = 60.0) -> dict[str, Any] | None:
        msg_id = self.request(method, params)
        if self.wait({msg_id}, timeout):
            return None
        return self.responses[msg_id][0]

    def close(self, timeout: float = 10.0) -> int | None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        finally:
            self._stderr.close()


# -- message generators -------------------------------------------------------------------------------------
@dataclass
class Msg:
    raw: bytes
    request_id: Any = None  # the id a response must come back for (None: a notification or no id to answer)


@dataclass
class Templates:
    uri: str
    other_uri: str
    outside_uris: list[str]

    def requests(self) -> dict[str, Any]:
        pos = {"line": 1, "character": 0}
        rng = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
        diag = {"range": rng, "message": "invalid syntax", "source": "fimble", "code": "syntax-error"}
        return {
            "textDocument/inlineCompletion": {
                "textDocument": {"uri": self.uri}, "position": pos, "context": {"triggerKind": 2},
            },
            "textDocument/completion": {"textDocument": {"uri": self.uri}, "position": pos},
            "textDocument/codeAction": {
                "textDocument": {"uri": self.uri}, "range": rng, "context": {"diagnostics": [diag]},
            },
            "codeAction/resolve": {
                "title": "Fix with fimble", "kind": "quickfix",
                "data": {"fimble": "fimble.fix", "uri": self.uri, "version": 1, "diagnostic": diag},
            },
            "workspace/executeCommand": {"command": "fimble.explain", "arguments": [{"uri": self.uri, "range": rng}]},
            "fimble/debugPrompt": {"textDocument": {"uri": self.uri}, "position": pos},
            "fimble/stats": {},
        }  # fmt: skip

    def notifications(self) -> dict[str, Any]:
        rng = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}
        return {
            "textDocument/didOpen": {
                "textDocument": {"uri": self.other_uri, "languageId": "python", "version": 1, "text": "x = 1\n"},
            },
            "textDocument/didChange": {
                "textDocument": {"uri": self.uri, "version": 2}, "contentChanges": [{"range": rng, "text": "#"}],
            },
            "textDocument/didClose": {"textDocument": {"uri": self.other_uri}},
            "textDocument/didSave": {"textDocument": {"uri": self.uri}},
            "workspace/didChangeWatchedFiles": {"changes": [{"uri": self.uri, "type": 2}]},
            "workspace/didChangeConfiguration": {"settings": {"fimble": {"maxTokens": 16}}},
            "$/cancelRequest": {"id": 1},
            "workspace/didChangeWorkspaceFolders": {"event": {"added": [], "removed": []}},
            "$/setTrace": {"value": "off"},
        }  # fmt: skip


def _odd_values(rng: random.Random, t: Templates) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: None, lambda: True, lambda: -1, lambda: 2**31, lambda: 2**53 + 1, lambda: 1.5, lambda: "",
        lambda: "\ud800", lambda: "x\udfff", lambda: [], lambda: {}, lambda: [1, "a", None],
        lambda: rng.choice(t.outside_uris), lambda: "not a uri", lambda: {"uri": rng.choice(t.outside_uris)},
        lambda: "file:///" + "a/" * 2000, lambda: [[[[[[[[[[]]]]]]]]]],
    ]  # fmt: skip
    big: list[Callable[[], Any]] = [lambda: "x" * 50_000, lambda: ["a"] * 10_000, lambda: {"k": "v" * 50_000}]
    return rng.choice(big)() if rng.random() < 0.03 else rng.choice(choices)()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def mutate(params: Any, rng: random.Random, t: Templates) -> Any:
    if rng.random() < 0.08:
        return rng.choice([None, [], "params", 5, [params]])  # None: no params at all
    out = copy.deepcopy(params)
    paths = list(_paths(out))
    if not paths:
        return {"unexpected": _odd_values(rng, t)}
    path = rng.choice(paths)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    roll = rng.random()
    if roll < 0.2 and isinstance(parent, dict):
        del parent[last]
    elif roll < 0.25 and isinstance(parent, dict):
        parent["extra" + str(rng.randint(0, 9))] = _odd_values(rng, t)
    else:
        parent[last] = _odd_values(rng, t)
    return out


def gen_framing(rng: random.Random, wire: Wire) -> Msg:
    msg_id = wire.new_id()
    body = encode({"jsonrpc": "2.0", "id": msg_id, "method": "fimble/stats", "params": {}})
    kind = rng.randrange(8)
    if kind == 0:  # header names are case-insensitive: this one must be answered
        return Msg(b"content-length: %d\r\n\r\n" % len(body) + body, msg_id)
    if kind == 1:
        return Msg(b"Content-Length:%d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" % len(body) + body, msg_id)  # fmt: skip
    if kind == 2:  # no Content-Length at all: nothing can be read, the next message must still be
        return Msg(b"Content-Type: x\r\n\r\n")
    if kind == 3:
        return Msg(b"Content-Length: abc\r\n\r\n")
    if kind == 4:
        return Msg(b"Content-Length: -5\r\n\r\n")
    if kind == 5:  # a header line far longer than any real one
        return Msg(b"X-Junk: " + b"j" * 100_000 + b"\r\n" + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    if kind == 6:  # stray blank lines between messages are harmless
        return Msg(b"\r\n\r\n" + frame(body), msg_id)
    return Msg(b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n" % (len(body), len(body)) + body)


def gen_json(rng: random.Random, wire: Wire) -> Msg:
    bodies = [
        b"{", b"}", b"[]", b"null", b"42", b'"str"', b"\xff\xfe{}", b'{"jsonrpc": "2.0", "id": 1, "method": "x"',
        b"[" * 5000 + b"]" * 5000, b'[{"jsonrpc":"2.0","id":1,"method":"fimble/stats"}]', b"{}", b"NaN",
        b'{"a":' * 3000 + b"1" + b"}" * 3000, "{\"k\": \"\u00e9\"}".encode("latin-1"),
    ]  # fmt: skip
    return Msg(frame(rng.choice(bodies)))


def gen_envelope(rng: random.Random, wire: Wire) -> Msg:
    msg_id = wire.new_id()
    base: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": "fimble/stats", "params": {}}
    kind = rng.randrange(9)
    if kind == 0:
        del base["jsonrpc"]
        return Msg(frame(encode(base)), msg_id)
    if kind == 1:
        base["jsonrpc"] = rng.choice(["1.0", 2, None, "2.0 "])
        return Msg(frame(encode(base)), msg_id)
    if kind == 2:  # ids of the wrong type cannot be echoed back: the error goes out with id null
        base["id"] = rng.choice([1.5, True, {"a": 1}, [1]])
        return Msg(frame(encode(base)))
    if kind == 3:
        base["method"] = rng.choice([5, None, ["a"], {"m": 1}])
        return Msg(frame(encode(base)), msg_id)
    if kind == 4:
        del base["method"]
        return Msg(frame(encode(base)), msg_id)
    if kind == 5:  # a response to a request the server never sent
        return Msg(frame(encode({"jsonrpc": "2.0", "id": msg_id, "result": {"x": 1}})))
    if kind == 6:
        return Msg(frame(encode({"jsonrpc": "2.0", "id": f"s-{msg_id}", "method": "fimble/stats"})), f"s-{msg_id}")
    if kind == 7:
        base["method"] = "x" * 20_000
        return Msg(frame(encode(base)), msg_id)
    return Msg(frame(encode({"jsonrpc": "2.0", "method": rng.choice([7, None, ""])})))


def gen_params(rng: random.Random, wire: Wire, t: Templates) -> Msg:
    if rng.random() < 0.6:
        method, params = rng.choice(list(t.requests().items()))
        msg_id = wire.new_id()
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        mutated = mutate(params, rng, t)
        if mutated is not None:
            msg["params"] = mutated
        return Msg(frame(encode(msg)), msg_id)
    method, params = rng.choice(list(t.notifications().items()))
    note: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    mutated = mutate(params, rng, t)
    if mutated is not None:
        note["params"] = mutated
    return Msg(frame(encode(note)))


def gen_unknown(rng: random.Random, wire: Wire) -> Msg:
    method = rng.choice(["textDocument/hover", "fimble/nope", "$/custom", "workspace/symbol", "unknown"])
    if rng.random() < 0.5:
        msg_id = wire.new_id()
        return Msg(frame(encode({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {}})), msg_id)
    return Msg(frame(encode({"jsonrpc": "2.0", "method": method, "params": {}})))


def gen_responses(rng: random.Random, wire: Wire) -> Msg:
    """A configuration change makes the server ask the client for its settings; the answer is garbage."""
    junk = rng.choice([
        {"result": "x" * 1000}, {"result": [5]}, {"result": {"a": 1}}, {"error": "bad"}, {"error": {"code": "x"}},
        {"result": [{"maxTokens": "many"}]}, {"result": [{"nCtx": -5, "contextSources": 7}]}, {},
    ])  # fmt: skip

    def answer(msg: dict[str, Any]) -> bytes:
        return frame(encode({"jsonrpc": "2.0", "id": msg["id"], **junk}))

    wire.answer_server = answer
    return Msg(frame(encode({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": {"settings": None}})))  # fmt: skip


# -- sessions -------------------------------------------------------------------------------------------------
@dataclass
class CategoryResult:
    messages: int = 0
    requests: int = 0
    unanswered: int = 0
    answered_twice: int = 0
    tracebacks: int = 0
    max_stall_ms: float = 0.0
    crashes: int = 0
    checks: list[str] = field(default_factory=list)  # lifecycle checks that failed


@dataclass
class Setup:
    cmd: list[str]
    env: dict[str, str]
    workspace: Path
    stderr: Path
    model: Path


def make_setup(model: Path | None, tmp: Path) -> Setup:
    workspace = tmp / "ws"
    for rel, text in WORKSPACE_FILES.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    if model is None:
        from fimble_dev.tiny_gguf import SCRIPTED, TinyModelSpec, write_tiny_gguf

        model = write_tiny_gguf(tmp / "tiny.gguf", TinyModelSpec(name="tiny-fuzz", script=SCRIPTED))
    env = dict(os.environ)
    env.update({"FIMBLE_MONITOR_LOOP": "1", "FIMBLE_N_THREADS": "1", "FIMBLE_N_CTX": "2048",
                "FIMBLE_CACHE_DIR": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"})  # fmt: skip
    cmd = [sys.executable, "-m", "fimble", "serve", "--log-level", "WARNING"]
    return Setup(cmd, env, workspace, tmp / "stderr.log", model)


def start(setup: Setup, initialize: bool = True) -> Wire:
    wire = Wire(setup.cmd, setup.env, setup.stderr)
    if initialize:
        root = setup.workspace.as_uri()
        params = {
            "processId": os.getpid(), "rootUri": root, "capabilities": {"workspace": {"configuration": True}},
            "workspaceFolders": [{"uri": root, "name": "ws"}],
            "initializationOptions": {"model": str(setup.model), "timeBudgetMs": 2000, "fixMaxAttempts": 1},
        }  # fmt: skip
        answer = wire.call("initialize", params)
        if answer is None or "result" not in answer:
            raise RuntimeError(f"initialize failed: {answer}")
        wire.notify("initialized", {})
        text = WORKSPACE_FILES["a.py"]
        doc = {"uri": (setup.workspace / "a.py").as_uri(), "languageId": "python", "version": 1, "text": text}
        wire.notify("textDocument/didOpen", {"textDocument": doc})
    return wire


def stall(wire: Wire, reset: bool = True) -> float:
    answer = wire.call("fimble/stats", {"reset": reset}, timeout=60)
    result = (answer or {}).get("result") or {}
    return float(result.get("maxLoopStallMs") or 0.0)


def tracebacks_since(path: Path, offset: int) -> tuple[int, int]:
    data = path.read_bytes() if path.exists() else b""
    return data[offset:].count(TRACEBACK), len(data)


def run_categories(setup: Setup, count: int, seed: int) -> dict[str, CategoryResult]:
    rng = random.Random(seed)
    ws = setup.workspace
    templates = Templates(
        uri=(ws / "a.py").as_uri(),
        other_uri=(ws / "pkg" / "new.py").as_uri(),
        outside_uris=[
            ws.as_uri() + "/../../etc/passwd",
            ws.as_uri() + "/%2e%2e/%2e%2e/x.py",
            "file:///etc/shadow",
            "untitled:Untitled-1",
            "http://example.invalid/a.py",
        ],
    )
    generators: dict[str, Callable[[random.Random, Wire], Msg]] = {
        "framing": gen_framing, "json": gen_json, "envelope": gen_envelope,
        "params": lambda r, w: gen_params(r, w, templates), "unknown": gen_unknown, "responses": gen_responses,
    }  # fmt: skip
    results: dict[str, CategoryResult] = {}
    wire = start(setup)
    stall(wire)
    _, offset = tracebacks_since(setup.stderr, 0)
    for name, share in CATEGORY_SHARES.items():
        result = results[name] = CategoryResult()
        expected: set[Any] = set()
        for _ in range(max(1, round(count * share))):
            if not wire.alive():
                result.crashes += 1
                wire = start(setup)
            msg = generators[name](rng, wire)
            result.messages += 1
            if msg.request_id is not None:
                expected.add(msg.request_id)
            wire.send_raw(msg.raw)
        missing = wire.wait(expected, ANSWER_TIMEOUT_S)
        result.requests = len(expected)
        result.unanswered = len(missing)
        result.answered_twice = sum(1 for i in expected if len(wire.responses.get(i, [])) > 1)
        if not wire.alive():
            result.crashes += 1
            wire = start(setup)
        wire.answer_server = Wire._default_answer
        result.max_stall_ms = stall(wire)
        result.tracebacks, offset = tracebacks_since(setup.stderr, offset)
    results["lifecycle"] = run_lifecycle(setup, wire, offset)
    return results


def run_lifecycle(setup: Setup, wire: Wire, offset: int) -> CategoryResult:
    result = CategoryResult()

    def check(ok: bool, what: str) -> None:
        result.messages += 1
        if not ok:
            result.checks.append(what)

    # The running session ends properly: shutdown, then requests are refused, then exit 0.
    answer = wire.call("shutdown")
    check(answer is not None and answer.get("result", "missing") is None, "shutdown answered with null")
    after = wire.call("textDocument/completion", {"textDocument": {"uri": "file:///x"}, "position": {"line": 0, "character": 0}})  # fmt: skip
    check(bool(after) and after.get("error", {}).get("code") == -32600, "request after shutdown gets -32600")
    wire.notify("exit")
    check(wire.close() == 0, "exit after shutdown exits 0")
    result.requests += 2

    fresh = start(setup, initialize=False)
    t0 = time.monotonic()
    early = fresh.call("textDocument/completion", {"textDocument": {"uri": "file:///x"}, "position": {"line": 0, "character": 0}})  # fmt: skip
    check(bool(early) and early.get("error", {}).get("code") == -32002, "request before initialize gets -32002")
    check(time.monotonic() - t0 < 5.0, "request before initialize answered at once")
    fresh.notify("exit")
    check(fresh.close() == 1, "exit without shutdown exits 1")
    result.requests += 1

    twice = start(setup)
    again = twice.call("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
    check(bool(again) and again.get("error", {}).get("code") == -32600, "a second initialize gets -32600")
    result.requests += 1
    # An absurd Content-Length is skipped without being allocated; the client then hangs up.
    twice.send_raw(b"Content-Length: 1000000000000\r\n\r\n{}")
    time.sleep(0.5)
    check(twice.alive(), "a 10^12-byte Content-Length does not kill the server")
    check(twice.close() == 1, "end of input without shutdown exits 1")

    over = start(setup)
    size = 65 * 1024 * 1024  # just over the 64 MiB limit: read and thrown away, then the next message is served
    over.send_raw(b"Content-Length: %d\r\n\r\n" % size + b" " * size)
    answer = over.call("fimble/stats", {})
    check(bool(answer) and "result" in answer, "a message over the size limit is skipped and the next one answered")
    check(over.null_id_errors >= 1, "the skipped message is reported with an error (id null)")
    result.requests += 1
    over.call("shutdown")
    over.notify("exit")
    over.close()
    result.tracebacks, _ = tracebacks_since(setup.stderr, offset)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="malformed messages in the main session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: a tiny scripted test model)")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--keep-log", type=Path, help="copy the server's stderr here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fimble-fuzz-") as tmp:
        setup = make_setup(args.model, Path(tmp))
        results = run_categories(setup, args.count, args.seed)
        if args.keep_log:
            args.keep_log.write_bytes(setup.stderr.read_bytes())
    seconds = time.monotonic() - started
    totals = CategoryResult()
    for r in results.values():
        totals.messages += r.messages
        totals.requests += r.requests
        totals.unanswered += r.unanswered
        totals.answered_twice += r.answered_twice
        totals.tracebacks += r.tracebacks
        totals.crashes += r.crashes
        totals.max_stall_ms = max(totals.max_stall_ms, r.max_stall_ms)
        totals.checks.extend(r.checks)
    targets = {
        "0 crashes": totals.crashes == 0,
        "0 unanswered requests": totals.unanswered == 0 and totals.answered_twice == 0,
        "max event-loop stall under 100 ms": totals.max_stall_ms < 100.0,
        "no tracebacks": totals.tracebacks == 0,
        "lifecycle": not totals.checks,
    }
    header = f"{'category':<10} {'messages':>8} {'requests':>8} {'unanswered':>10} {'twice':>5} {'tracebacks':>10} {'crashes':>7} {'max stall ms':>12}"  # fmt: skip
    print(header)
    print("-" * len(header))
    for name, r in [*results.items(), ("total", totals)]:
        print(f"{name:<10} {r.messages:>8} {r.requests:>8} {r.unanswered:>10} {r.answered_twice:>5} {r.tracebacks:>10} {r.crashes:>7} {r.max_stall_ms:>12.1f}")  # fmt: skip
    for what in totals.checks:
        print(f"lifecycle check failed: {what}")
    print(f"\n{seconds:.0f} s, seed {args.seed}")
    for target, met in targets.items():
        print(f"target {target}: {'met' if met else 'MISSED'}")
    if args.out:
        data = {
            "seed": args.seed, "count": args.count, "seconds": round(seconds, 1),
            "categories": {k: vars(v) for k, v in results.items()}, "total": vars(totals), "targets": targets,
        }  # fmt: skip
        args.out.write_text(json.dumps(data, indent=2))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
