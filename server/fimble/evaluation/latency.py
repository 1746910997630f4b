"""Keystroke-to-suggestion latency of the real server, against bare llama.cpp on the same prompts.

A typist replays a region of a real file into `fimble serve` (a subprocess, JSON-RPC over stdio, as an editor runs
it): one `didChange` per key, then, after the editor's debounce pause, an `inlineCompletion` request whose answer
the typist waits for before the next key. Suggestions that match the file are accepted (whole, or the next word),
some wrong ones are accepted and undone, and some typos are made and backspaced, so the server sees the edits an
editor produces. After each answer the exact prompt is fetched with `fimble/debugPrompt` (untimed).

Right after each answer, while the server idles, llama-cpp-python evaluates that prompt from an empty KV cache and
generates as many tokens as fimble did: the "cold" cost a plain integration pays on every request. The ratio of
fimble's latency to that cost is the headline. `--peer-url` sends the same request to a llama.cpp `llama-server`
(which has its own prompt cache) for a side-by-side figure. Measuring the three back to back keeps them comparable
on a machine whose load changes from minute to minute.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from fimble import __version__
from fimble.cli.common import add_setting_flags, setting_overrides
from fimble.completion.filters.suggestion import indent_width
from fimble.evaluation.metrics import mean, percentile, rounded
from fimble.settings import Settings
from fimble.syntax.error_nodes import count_errors
from fimble.syntax.grammars import get_parser
from fimble.trust.files import atomic_write_text

# Targets from the keystroke-loop issue, relative to the cold bare-llama.cpp time of the same requests.
TARGET_P50_RATIO = 0.3
TARGET_P95_RATIO = 1.0
TARGET_OVERHEAD_P50_MS = 10.0
# Without a cache flag in fimble/status, an answer this fast cannot have involved the model.
INFERRED_CACHE_HIT_MS = 5.0
_LOG_COMPLETION = re.compile(r"completion (\{.*\})\s*$")


# -- the typist -------------------------------------------------------------------------------------------------


@dataclass
class Typist:
    """Types `region` between `before` and `after`; `extra` is text typed by mistake (a typo, a wrong accept)."""

    before: str
    region: str
    after: str
    rng: random.Random
    accept_rate: float
    typo_rate: float
    pos: int = 0
    extra: str = ""
    extra_kind: str = ""  # "typo" or "accept-wrong"
    last: str = ""  # the previous action

    @property
    def text(self) -> str:
        return self.before + self.region[: self.pos] + self.extra + self.after

    @property
    def offset(self) -> int:
        return len(self.before) + self.pos + len(self.extra)

    @property
    def done(self) -> bool:
        return self.pos >= len(self.region) and not self.extra

    def next_action(self, suggestion: str) -> tuple[str, int, int, str]:
        """(kind, start, end, new_text): the next edit, as a replacement of text[start:end] by new_text."""
        action = self._next(suggestion)
        self.last = action[0]
        return action

    def _next(self, suggestion: str) -> tuple[str, int, int, str]:
        cursor = self.offset
        if self.extra:
            # Fix the mistake first: a typo is backspaced, a wrong suggestion is undone in one step.
            if self.extra_kind == "typo":
                self.extra = self.extra[:-1]
                return "backspace", cursor - 1, cursor, ""
            start = cursor - len(self.extra)
            self.extra = ""
            return "undo", start, cursor, ""
        upcoming = self.region[self.pos :]
        if suggestion and upcoming.startswith(suggestion):
            self.pos += len(suggestion)
            return "accept", cursor, cursor, suggestion
        word = _first_word(suggestion)
        if len(word) >= 2 and upcoming.startswith(word):
            self.pos += len(word)
            return "accept-word", cursor, cursor, word
        if suggestion and self.rng.random() < self.accept_rate:
            self.extra, self.extra_kind = suggestion, "accept-wrong"
            return "accept-wrong", cursor, cursor, suggestion
        char = upcoming[0]
        # Never two typos in a row on the same character: a person gets it right after backspacing.
        if char.isalnum() and self.last != "backspace" and self.rng.random() < self.typo_rate:
            typo = "x" if char != "x" else "z"
            self.extra, self.extra_kind = typo, "typo"
            return "typo", cursor, cursor, typo
        if char == "\n":
            # Editors auto-indent a new line: Enter inserts the newline and the next line's indentation.
            rest = upcoming[1:]
            indent = rest[: len(rest) - len(rest.lstrip(" \t"))]
            self.pos += 1 + len(indent)
            return "type", cursor, cursor, "\n" + indent
        self.pos += 1
        return "type", cursor, cursor, char


def _first_word(text: str) -> str:
    """The part VS Code's "accept next word" takes: leading whitespace plus one identifier or one symbol run."""
    m = re.match(r"\s*(\w+|[^\w\s]+)", text)
    return m.group(0) if m else ""


def start_offset(text: str, line: int | None, path: str = "") -> int:
    """Cursor start: after the indentation of `line` (1-based), or of the first indented statement line at or after
    40% of the file (the middle of real code, with context on both sides), not inside a string or a comment where
    the file's grammar can tell."""
    lines = text.split("\n")
    if line is not None:
        if not 1 <= line <= len(lines):
            raise ValueError(f"--line {line} is outside the file (1..{len(lines)}).")
        row = line - 1
    else:
        parser = get_parser(None, path) if path else None
        tree = parser.parse(text.encode("utf-8", "surrogatepass")) if parser else None
        row = next(
            (
                r
                for r in range(int(len(lines) * 0.4), len(lines))
                if lines[r].startswith((" ", "\t"))
                and re.match(r"\s+[A-Za-z_]", lines[r])
                and not (tree and _in_string_or_comment(tree, r, indent_width(lines[r])))
            ),
            0,
        )
    offset = sum(len(x) + 1 for x in lines[:row])
    return offset + len(lines[row]) - len(lines[row].lstrip(" \t"))


def _in_string_or_comment(tree: tree_sitter.Tree, row: int, column: int) -> bool:
    node: tree_sitter.Node | None = tree.root_node.descendant_for_point_range((row, column), (row, column))
    while node is not None:
        if "string" in node.type or "comment" in node.type:
            return True
        node = node.parent
    return False


def region_end(text: str, start: int, chars: int, path: str = "") -> int:
    """End of the region to type: at least `chars` characters, extended to the end of a line where the rest of the
    file still parses as well as the whole file does (so not inside a docstring or an open bracket), or else to the
    end of the line `chars` reaches.

    Someone typing code top to bottom never has the closing half of a docstring below the cursor without its
    opening half above; a replay cut there would measure a file state no editor sees, and every suggestion's
    syntax check would run against a suffix whose strings and code have swapped places."""
    end = min(len(text), start + chars)
    newline = text.find("\n", end)
    first = len(text) if newline == -1 else newline
    parser = get_parser(None, path) if path else None
    if parser is None:
        return first
    whole = count_errors(parser.parse(text.encode("utf-8", "surrogatepass")).root_node)[0]
    candidate = first
    for _ in range(_REGION_SEARCH_LINES):
        rest = (text[:start] + text[candidate:]).encode("utf-8", "surrogatepass")
        if count_errors(parser.parse(rest).root_node)[0] <= whole:
            return candidate
        newline = text.find("\n", candidate + 1)
        if newline == -1:
            break
        candidate = newline
    return first


# How many lines past `chars` the region may grow to reach a clean end.
_REGION_SEARCH_LINES = 60


# -- LSP plumbing -----------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """pygls turns unknown JSON objects into namedtuples; the report wants dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def position(text: str, offset: int) -> types.Position:
    """LSP position (UTF-16 columns) of a string offset."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    column = sum(2 if ord(c) > 0xFFFF else 1 for c in text[start:offset])
    return types.Position(line=line, character=column)


@dataclass
class Request:
    """One keystroke and the suggestion it led to."""

    index: int
    action: str  # the keystroke that preceded the request
    offset: int
    latency_ms: float | None = None  # request sent -> answer received
    key_to_suggestion_ms: float | None = None  # keystroke -> answer (includes the debounce)
    suggestion: str = ""
    error: str = ""
    cached: bool | None = None  # from fimble/status; None when the server does not say
    prompt_tokens: int | None = None
    reused_tokens: int | None = None
    generated_tokens: int | None = None
    model_ms: float | None = None  # prompt evaluation + generation (+ extra candidates), from the server's log
    server_ms: float | None = None  # the pipeline's own time besides the model, from fimble/status
    overhead_ms: float | None = None  # latency minus model time: everything but the model, transport included
    prompt: str = ""
    prompt_format: str = ""
    prompt_tokens_debug: int | None = None
    prefix: str = ""  # text before and after the cursor, for a peer's /infill
    suffix: str = ""
    # What bare llama.cpp and the peer generate: as many tokens as fimble did or, for an answer from fimble's cache,
    # as many as that suggestion takes (they have no such cache and must generate it).
    tokens_to_generate: int | None = None
    bare_ms: float | None = None
    bare_tokens: int | None = None
    peer_ms: float | None = None
    peer_cached_tokens: int | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)  # the pipeline's own timings, from the server's log


@dataclass
class Session:
    requests: list[Request] = field(default_factory=list)
    keystrokes: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    model: str = ""
    model_path: str = ""
    load_ms: float | None = None
    status_fields: set[str] = field(default_factory=set)


class BenchClient(LanguageClient):
    """A client for benchmarks that drive `fimble serve` over stdio: records fimble/status and showMessage."""

    def __init__(self) -> None:
        super().__init__("fimble-bench", __version__)
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.messages: list[types.ShowMessageParams] = []

    @property
    def server_pid(self) -> int | None:
        """The server's process id (with `start_server` the shell execs it, so this is fimble itself)."""
        return self._server.pid if self._server is not None else None


def make_client(init_options: dict[str, Any]) -> BenchClient:
    """A client that answers workspace/configuration with `init_options` and accepts what the server sends."""
    client = BenchClient()

    @client.feature("fimble/status")
    def on_status(ls: BenchClient, params: Any) -> None:
        ls.statuses.append((time.monotonic(), plain(params)))

    @client.feature(types.WORKSPACE_CONFIGURATION)
    def on_configuration(ls: BenchClient, params: types.ConfigurationParams) -> list[Any]:
        return [init_options for _ in params.items]

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def on_progress_create(ls: BenchClient, params: Any) -> None:
        return None

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(ls: BenchClient, params: Any) -> None:
        return None

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(ls: BenchClient, params: Any) -> None:
        return None

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(ls: BenchClient, params: types.ShowMessageParams) -> None:
        ls.messages.append(params)
        print(f"server: {params.message}", file=sys.stderr)

    return client


async def start_server(client: BenchClient, log_path: Path, env: dict[str, str]) -> None:
    """Run `python -m fimble serve` with its stderr (its log) appended to `log_path`: an unread pipe would fill up
    and stall the server."""
    await client.start_io(
        "/bin/sh", "-c", 'exec "$@" 2>>"$0"', str(log_path), sys.executable, "-m", "fimble", "serve", env=env
    )  # fmt: skip


async def initialize(client: BenchClient, root: Path, init_options: dict[str, Any]) -> None:
    """initialize (with `root` as the workspace folder) and initialized, as an editor sends them."""
    await asyncio.wait_for(
        client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    text_document=types.TextDocumentClientCapabilities(
                        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
                        inline_completion=types.InlineCompletionClientCapabilities(),
                    ),
                    workspace=types.WorkspaceClientCapabilities(configuration=True),
                ),
                initialization_options=init_options,
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            )
        ),
        timeout=60,
    )
    client.initialized(types.InitializedParams())


class LogTail:
    """New `completion {...}` lines of the server's log since the last read (the server writes each line before it
    sends the answer, so it is in the file by the time the answer arrives)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0

    def completions(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1  # leave a half-written line for the next read
        self.pos += cut
        out = []
        for line in data[:cut].decode("utf-8", errors="replace").splitlines():
            m = _LOG_COMPLETION.search(line)
            if m:
                try:
                    value = ast.literal_eval(m.group(1))
                except (ValueError, SyntaxError):
                    continue
                if isinstance(value, dict):
                    out.append(value)
        return out


async def debug_prompt(client: BenchClient, uri: str, pos: types.Position, timeout_s: float) -> dict[str, Any]:
    """The exact prompt the server would build at `pos` (`fimble/debugPrompt`), as plain JSON."""
    request = client.protocol.send_request_async(
        "fimble/debugPrompt", {"textDocument": {"uri": uri}, "position": {"line": pos.line, "character": pos.character}}
    )
    answer = plain(await asyncio.wait_for(request, timeout=timeout_s))
    return answer if isinstance(answer, dict) else {}


async def stop_server(client: BenchClient) -> None:
    """shutdown, exit and stop, each step bounded: a benchmark ends even when the server does not answer."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.shutdown_async(None), timeout=10)
        client.exit(None)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop(), timeout=10)


async def wait_ready(client: BenchClient, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, status in client.statuses:
            if status.get("state") == "ready" and "loaded in" in str(status.get("message", "")):
                return status
            if status.get("state") == "error":
                raise RuntimeError(f"the server could not load the model: {status.get('message')}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the model was not ready within {timeout_s:.0f} s")


async def run_session(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    work: Path,
    bare: BareLlama | None = None,
    peer: Peer | None = None,
) -> Session:
    file = Path(args.file).resolve()
    text = file.read_text(encoding="utf-8")
    start = start_offset(text, args.line, str(file))
    end = region_end(text, start, max(200, args.limit * 3), str(file))
    typist = Typist(
        before=text[:start],
        region=text[start:end],
        after=text[end:],
        rng=random.Random(args.seed),
        accept_rate=args.accept_rate,
        typo_rate=args.typo_rate,
    )
    init_options = {k: v for k, v in overrides.items() if v is not None}
    root = Path(args.root).resolve() if args.root else file.parent
    uri = file.as_uri()
    log_path = work / "server.log"
    client = make_client(init_options)
    await start_server(client, log_path, _server_env(args))
    session = Session()
    log = LogTail(log_path)
    try:
        await initialize(client, root, init_options)
        ready = await wait_ready(client, args.load_timeout)
        session.model = str(ready.get("model", ""))
        m = re.search(r"loaded in (\d+) ms", str(ready.get("message", "")))
        session.load_ms = float(m.group(1)) if m else None
        version = 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=typist.text)
            )
        )
        # A person looks at a file before typing; the server uses that time (KV warm-up, indexing).
        await asyncio.sleep(args.settle_ms / 1000)
        log.completions()
        suggestion = ""
        max_tokens = Settings.from_env().merged(overrides).max_tokens
        while session.keystrokes < args.limit and not typist.done:
            before_text = typist.text
            kind, a, b, new = typist.next_action(suggestion)
            version += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(start=position(before_text, a), end=position(before_text, b)), text=new
                        )
                    ],
                )
            )
            t_key = time.monotonic()
            session.keystrokes += 1
            session.actions[kind] = session.actions.get(kind, 0) + 1
            await asyncio.sleep(args.debounce_ms / 1000)
            req = Request(index=len(session.requests), action=kind, offset=typist.offset)
            doc = typist.text
            req.prefix, req.suffix = doc[: req.offset], doc[req.offset :]
            pos = position(doc, req.offset)
            n_status = len(client.statuses)
            t_req = time.monotonic()
            try:
                result = await asyncio.wait_for(
                    client.text_document_inline_completion_async(
                        types.InlineCompletionParams(
                            text_document=types.TextDocumentIdentifier(uri=uri),
                            position=pos,
                            context=types.InlineCompletionContext(
                                trigger_kind=types.InlineCompletionTriggerKind.Automatic
                            ),
                        )
                    ),
                    timeout=args.request_timeout,
                )
            except Exception as exc:  # a failed request is a data point, not the end of the run
                req.error = f"{type(exc).__name__}: {exc}"
                session.requests.append(req)
                suggestion = ""
                continue
            t_resp = time.monotonic()
            req.latency_ms = (t_resp - t_req) * 1000
            req.key_to_suggestion_ms = (t_resp - t_key) * 1000
            suggestion = first_item(result)
            req.suggestion = suggestion
            _take_status(req, [s for _, s in client.statuses[n_status:]], session)
            _take_log(req, log.completions())
            try:
                debug = await debug_prompt(client, uri, pos, args.request_timeout)
                req.prompt = str(debug.get("prompt", ""))
                req.prompt_format = str(debug.get("format", ""))
                req.prompt_tokens_debug = int(debug["tokens"]) if "tokens" in debug else None
            except Exception as exc:
                req.error = req.error or f"debugPrompt: {type(exc).__name__}: {exc}"
            # The comparisons run right away, while the server idles: measured back to back, the three figures
            # for a request see the same machine load (on a shared machine it drifts over minutes).
            req.tokens_to_generate = _tokens_to_generate(req, bare, max_tokens)
            for other in (bare, peer):
                if other is not None:
                    await asyncio.to_thread(other.run, req)
            session.requests.append(req)
    finally:
        # The server may already be gone; what matters is that it is stopped either way.
        await stop_server(client)
    return session


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tokens_to_generate(req: Request, bare: BareLlama | None, max_tokens: int) -> int:
    if req.generated_tokens:
        n = req.generated_tokens
    elif bare is not None:
        n = len(bare.llm.tokenize(req.suggestion.encode("utf-8"), add_bos=False)) + 1  # + the stop token
    else:
        n = len(req.suggestion) // 3 + 1
    return max(1, min(n, max_tokens))


def first_item(result: Any) -> str:
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    for item in items:
        text = item.insert_text
        if isinstance(text, str):
            # Only an insertion at the cursor is modelled by the typist; a replacing item is shown, not accepted.
            if item.range is None or item.range.start == item.range.end:
                return text
            return ""
    return ""


def _take_status(req: Request, statuses: list[dict[str, Any]], session: Session) -> None:
    ready = [s for s in statuses if s.get("state") == "ready"]
    if not ready:
        return
    status = ready[-1]
    session.status_fields.update(status)
    if isinstance(status.get("cached"), bool):
        req.cached = status["cached"]
    for key, attr in (("promptTokens", "prompt_tokens"), ("reusedTokens", "reused_tokens"),
                      ("generatedTokens", "generated_tokens")):  # fmt: skip
        if isinstance(status.get(key), int):
            setattr(req, attr, status[key])
    if isinstance(status.get("serverMs"), int | float):
        req.server_ms = float(status["serverMs"])


def _take_log(req: Request, lines: list[dict[str, Any]]) -> None:
    if req.cached:
        req.model_ms = 0.0
    elif lines:
        stats = lines[-1]  # one request at a time: the newest line is this answer's
        # Model time: the prompt, the suggestion, and any further candidates the pipeline sampled.
        req.model_ms = sum(float(stats.get(k, 0.0)) for k in ("prompt_eval_ms", "generate_ms", "alternatives_ms"))
        req.phases_ms = {k[:-3]: float(v) for k, v in stats.items() if k.endswith("_ms") and isinstance(v, int | float)}
        for key in ("prompt_tokens", "reused_tokens", "generated_tokens"):
            if getattr(req, key) is None and isinstance(stats.get(key), int):
                setattr(req, key, stats[key])
    if req.model_ms is not None and req.latency_ms is not None:
        req.overhead_ms = max(0.0, req.latency_ms - req.model_ms)


# -- bare llama.cpp and a peer server ------------------------------------------------------------------------------


def _bare_params(model_path: str, settings: Settings) -> dict[str, Any]:
    """The same context size, batch and threads as fimble's backend gives the model, so only the caching differs."""
    from fimble.model.gguf_meta import read_header
    from fimble.model.llama_cpp_backend import MAX_AUTO_CTX, default_threads

    header = read_header(model_path)
    n_ctx_train = int(header.get(f"{header.architecture}.context_length", 0) or 0)
    n_ctx = settings.n_ctx or min(n_ctx_train or 4096, MAX_AUTO_CTX)
    if n_ctx_train:
        n_ctx = min(n_ctx, n_ctx_train)
    threads = settings.n_threads or default_threads()
    return {
        "n_ctx": n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_batch,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_gpu_layers": settings.n_gpu_layers,
        "verbose": False,
    }


class BareLlama:
    """llama-cpp-python called directly, from an empty KV cache for every prompt: the cost a plain integration pays
    per request. The model is loaded once (loading is not part of a request); the cache is cleared before each
    prompt, and as many tokens are generated as fimble generated for that request."""

    def __init__(self, model_path: str, settings: Settings) -> None:
        import llama_cpp

        self.settings = settings
        self.llm = llama_cpp.Llama(model_path=model_path, **_bare_params(model_path, settings))
        self.mismatched = 0

    def run(self, req: Request) -> None:
        if not req.prompt:
            return
        llm = self.llm
        ids = list(llm.tokenize(req.prompt.encode("utf-8"), add_bos=False, special=True))
        bos = llm.token_bos()
        # fimble's prompt text shows special tokens by name; BOS is not in the text but counted in `tokens`.
        if req.prompt_tokens_debug is not None and len(ids) + 1 == req.prompt_tokens_debug and bos >= 0:
            ids = [bos, *ids]
        if req.prompt_tokens_debug is not None and len(ids) != req.prompt_tokens_debug:
            self.mismatched += 1
        n_gen = req.tokens_to_generate or self.settings.max_tokens
        llm.reset()
        kv_clear = getattr(llm._ctx, "kv_cache_clear", None)
        if kv_clear is not None:
            kv_clear()
        t0 = time.monotonic()
        llm.create_completion(ids, max_tokens=n_gen, temperature=0.0)
        req.bare_ms = (time.monotonic() - t0) * 1000
        req.bare_tokens = len(ids)

    def note(self) -> str:
        return (
            f"{self.mismatched} prompt(s) tokenized to a different length than fimble's" if self.mismatched else "exact"
        )

    def close(self) -> None:
        self.llm.close()


class Peer:
    """A llama.cpp `llama-server` with its prompt cache on, sent each request as it happens."""

    def __init__(self, url: str, mode: str, settings: Settings, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.mode = mode  # "auto", "completion" or "infill"
        self.settings = settings
        self.timeout_s = timeout_s
        self.errors = 0
        self.modes: set[str] = set()

    def run(self, req: Request) -> None:
        mode = self.mode
        if mode == "auto":  # /infill for models with FIM tokens, as llama.cpp's own editor plugins use
            mode = "completion" if req.prompt_format in ("", "prefix-only") else "infill"
        if mode == "completion" and not req.prompt:
            return
        self.modes.add(mode)
        n_gen = req.tokens_to_generate or self.settings.max_tokens
        body: dict[str, Any] = {"n_predict": n_gen, "temperature": 0.0, "cache_prompt": True, "stream": False}
        if mode == "infill":
            body.update(input_prefix=req.prefix, input_suffix=req.suffix)
        else:
            body["prompt"] = req.prompt  # special tokens by name: llama-server parses them in prompt text
        request = urllib.request.Request(
            f"{self.url}/{mode}", data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read() or b"{}")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            self.errors += 1
            if self.errors == 1:
                print(f"peer {self.url}/{mode}: {exc}", file=sys.stderr)
            return
        req.peer_ms = (time.monotonic() - t0) * 1000
        timings = answer.get("timings") if isinstance(answer, dict) else None
        if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
            req.peer_cached_tokens = timings["cache_n"]

    def note(self) -> str:
        modes = "/".join(sorted(self.modes)) or self.mode
        return f"{modes} at {self.url}: " + (f"{self.errors} request(s) failed" if self.errors else "ok")


# -- the report ---------------------------------------------------------------------------------------------------


def summarize(session: Session, settings: Settings, notes: dict[str, str]) -> dict[str, Any]:
    done = [r for r in session.requests if r.latency_ms is not None]
    lat = [r.latency_ms for r in done if r.latency_ms is not None]
    k2s = [r.key_to_suggestion_ms for r in done if r.key_to_suggestion_ms is not None]
    status_says = any(r.cached is not None for r in done)
    if status_says:
        hits = [r for r in done if r.cached]
        cache_source = "fimble/status 'cached' flag"
    else:
        hits = [r for r in done if (r.latency_ms or 0) < INFERRED_CACHE_HIT_MS]
        cache_source = f"inferred: answers under {INFERRED_CACHE_HIT_MS:g} ms (the server reports no cache flag)"
    model_runs = [r for r in done if not r.cached and r.prompt_tokens is not None]
    evaluated = sum((r.prompt_tokens or 0) - (r.reused_tokens or 0) for r in model_runs)
    reused = sum(r.reused_tokens or 0 for r in model_runs)
    bare = [r.bare_ms for r in done if r.bare_ms is not None]
    peer = [r.peer_ms for r in done if r.peer_ms is not None]
    overhead = [r.overhead_ms for r in done if r.overhead_ms is not None]
    server_ms = [r.server_ms for r in done if r.server_ms is not None]
    cold = percentile(bare, 50)
    p50, p95 = percentile(lat, 50), percentile(lat, 95)
    summary: dict[str, Any] = {
        "keystrokes": session.keystrokes,
        "actions": session.actions,
        "requests": len(session.requests),
        "answered": len(done),
        "errors": sum(1 for r in session.requests if r.error),
        "with_suggestion": sum(1 for r in done if r.suggestion),
        "latency_ms": _dist(lat),
        "key_to_suggestion_ms": _dist(k2s),
        "cache_hits": len(hits),
        "cache_hit_rate": round(len(hits) / len(done), 3) if done else None,
        "cache_hit_source": cache_source,
        "model_runs": len(model_runs),
        "tokens_evaluated": evaluated,
        "tokens_reused": reused,
        "tokens_generated": sum(r.generated_tokens or 0 for r in model_runs),
        "reuse_rate": round(reused / (reused + evaluated), 3) if reused + evaluated else None,
        "overhead_ms": _dist(overhead),
        "pipeline_overhead_ms": _dist(server_ms),
        "pipeline_phases_ms_p50": {
            phase: rounded(percentile([r.phases_ms[phase] for r in done if phase in r.phases_ms], 50))
            for phase in sorted({p for r in done for p in r.phases_ms})
        },
        "bare_cold_ms": _dist(bare),
        "peer_ms": _dist(peer),
        "ratio_p50_to_cold": _ratio(p50, cold),
        "ratio_p95_to_cold": _ratio(p95, cold),
        "ratio_p50_to_peer": _ratio(p50, percentile(peer, 50)),
        "ratio_per_request_median": rounded(
            percentile([r.latency_ms / r.bare_ms for r in done if r.bare_ms and r.latency_ms is not None], 50), 3
        ),
        "notes": notes,
    }
    over_p50 = percentile(overhead, 50)
    summary["targets"] = {
        f"p50 <= {TARGET_P50_RATIO} x cold": _verdict(summary["ratio_p50_to_cold"], TARGET_P50_RATIO),
        f"p95 <= {TARGET_P95_RATIO} x cold": _verdict(summary["ratio_p95_to_cold"], TARGET_P95_RATIO),
        "p50 <= peer llama-server p50": _verdict(summary["ratio_p50_to_peer"], 1.0),
        f"overhead p50 < {TARGET_OVERHEAD_P50_MS:g} ms": _verdict(
            None if math.isnan(over_p50) else over_p50, TARGET_OVERHEAD_P50_MS
        ),
    }
    return summary


def _dist(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "mean": rounded(mean(values)),
        "max": rounded(max(values)) if values else None,
    }


def _ratio(a: float, b: float) -> float | None:
    return None if math.isnan(a) or math.isnan(b) or b <= 0 else round(a / b, 3)


def _verdict(value: float | None, limit: float) -> str:
    return "n/a" if value is None else ("met" if value <= limit else "missed")


def format_report(summary: dict[str, Any]) -> str:
    def ms(d: dict[str, Any]) -> str:
        return "-" if not d["n"] else f"p50 {d['p50']:>8} ms   p95 {d['p95']:>8} ms   (n={d['n']})"

    rows = [
        ("keystrokes", f"{summary['keystrokes']}  {summary['actions']}"),
        (
            "requests",
            f"{summary['answered']} answered, {summary['with_suggestion']} with a suggestion, "
            f"{summary['errors']} errors",
        ),
        ("latency (request -> answer)", ms(summary["latency_ms"])),
        ("keystroke -> suggestion", ms(summary["key_to_suggestion_ms"]) + "  incl. debounce"),
        ("cache hits", f"{summary['cache_hits']} ({summary['cache_hit_rate']})  [{summary['cache_hit_source']}]"),
        (
            "tokens evaluated / reused",
            f"{summary['tokens_evaluated']} / {summary['tokens_reused']}  "
            f"(reuse {summary['reuse_rate']}, generated {summary['tokens_generated']})",
        ),
        ("overhead (all but the model)", ms(summary["overhead_ms"])),
        ("  of which pipeline (status)", ms(summary["pipeline_overhead_ms"])),
        ("  pipeline phases, p50 ms", ", ".join(f"{k} {v}" for k, v in summary["pipeline_phases_ms_p50"].items())),
        ("bare llama.cpp, cold", ms(summary["bare_cold_ms"])),
        ("peer llama-server", ms(summary["peer_ms"])),
        ("p50 / cold p50", f"{summary['ratio_p50_to_cold']}"),
        ("p95 / cold p50", f"{summary['ratio_p95_to_cold']}"),
        ("p50 / peer p50", f"{summary['ratio_p50_to_peer']}"),
        ("median per-request ratio", f"{summary['ratio_per_request_median']}"),
    ]
    rows += [(f"target: {name}", verdict) for name, verdict in summary["targets"].items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# -- the command --------------------------------------------------------------------------------------------------


def default_file() -> Path:
    """A real, always-installed source file: pygls's text document model (fimble depends on pygls)."""
    import pygls.workspace.text_document as module

    return Path(str(module.__file__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench_latency.py",
        description="Replay typing into `fimble serve` and compare its suggestion latency with bare llama.cpp.",
    )
    parser.add_argument("--file", help="file to type into (default: pygls/workspace/text_document.py)")
    parser.add_argument("--root", help="workspace folder sent to the server (default: the file's folder)")
    parser.add_argument("--line", type=int, help="1-based line where typing starts (default: 40%% into the file)")
    parser.add_argument("--limit", type=int, default=60, help="keystrokes to replay (default 60)")
    parser.add_argument("--debounce-ms", type=float, default=75.0, help="pause between a key and its request")
    parser.add_argument("--settle-ms", type=float, default=1000.0, help="pause after opening the file")
    parser.add_argument("--accept-rate", type=float, default=0.1, help="chance of accepting a wrong suggestion")
    parser.add_argument("--typo-rate", type=float, default=0.05, help="chance of a typo (then a backspace)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-url", help="also replay the requests against this llama.cpp llama-server")
    parser.add_argument(
        "--peer-mode",
        choices=("auto", "completion", "infill"),
        default="auto",
        help="peer endpoint: /completion with fimble's exact prompt, or /infill with the document's prefix and "
        "suffix (what llama.cpp's own editor plugins send); auto: /infill for models with FIM tokens",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare llama.cpp comparison")
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds to wait for one answer")
    parser.add_argument("--load-timeout", type=float, default=300.0, help="seconds to wait for the model")
    parser.add_argument("--out", help="write the report and every request as JSON here")
    parser.add_argument(
        "--keep-prompts",
        action="store_true",
        help="keep each request's exact prompt in the JSON (to see what broke reuse)",
    )
    add_setting_flags(parser)  # --model, --context, --backend, --url, ... exactly as `fimble serve` takes them
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit < 1:
        print("bench_latency: --limit must be at least 1", file=sys.stderr)
        return 2
    args.file = args.file or str(default_file())
    overrides = setting_overrides(args)  # --backend/--url among them: passed through to fimble's engine setting
    settings = Settings.from_env().merged(overrides)
    from fimble.model.resolve import resolve_model

    model_path = str(resolve_model(settings.model).path)
    overrides.setdefault("model", model_path)  # the server and bare llama.cpp load the very same file
    started = time.monotonic()
    bare = None if args.no_bare else BareLlama(model_path, settings)
    peer = Peer(args.peer_url, args.peer_mode, settings, args.request_timeout) if args.peer_url else None
    try:
        with tempfile.TemporaryDirectory(prefix="fimble-bench-") as tmp:
            try:
                session = asyncio.run(run_session(args, overrides, Path(tmp), bare, peer))
            except (RuntimeError, OSError, ValueError) as exc:
                log = Path(tmp) / "server.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                print(f"bench_latency: {exc}\n{tail}", file=sys.stderr)
                return 1
    finally:
        if bare is not None:
            bare.close()
    notes: dict[str, str] = {
        "latency": "request sent -> answer received; the editor's debounce is excluded (see key_to_suggestion_ms)",
        "cold": "llama-cpp-python, model loaded once, KV cache cleared before each prompt, as many tokens generated "
        "as fimble generated; run right after each fimble answer, as is the peer request",
    }
    if bare is not None:
        notes["bare_tokenization"] = bare.note()
    if peer is not None:
        notes["peer"] = peer.note()
    summary = summarize(session, settings, notes)
    print(format_report(summary))
    if args.out:
        report = {
            "fimble_version": __version__,
            "model": {"name": session.model, "path": model_path, "load_ms": session.load_ms},
            "file": args.file,
            "settings": {k: v for k, v in settings.lsp_dict().items() if k in _REPORTED},
            "typing": {
                "debounce_ms": args.debounce_ms,
                "accept_rate": args.accept_rate,
                "typo_rate": args.typo_rate,
                "seed": args.seed,
                "limit": args.limit,
            },
            "seconds": round(time.monotonic() - started, 1),
            "status_fields": sorted(session.status_fields),
            "summary": summary,
            "requests": [_request_json(r, args.keep_prompts) for r in session.requests],
        }
        atomic_write_text(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


_REPORTED = ("model", "nCtx", "nThreads", "nBatch", "maxTokens", "contextSources", "backend", "url", "timeBudgetMs")


def _request_json(req: Request, keep_prompts: bool = False) -> dict[str, Any]:
    data = asdict(req)
    for key in ("prefix", "suffix") if keep_prompts else ("prompt", "prefix", "suffix"):
        data.pop(key)  # large and reconstructible; the token counts stay
    for key, value in data.items():
        if isinstance(value, float):
            data[key] = round(value, 2)
    return data
