#!/usr/bin/env python3
"""Soak and document-size benchmark of `fimble serve`: does memory plateau, does latency hold, is memory given back?

Typing soak (the default): 20 documents open as editor tabs; a typist (the one `scripts/bench_latency.py` uses)
types into one of them, switches to another every few dozen keystrokes, accepts wrong suggestions and undoes them,
makes typos and backspaces, and sometimes types on before the answer arrives, so the request is cancelled with
`$/cancelRequest` as VS Code does. Every `--window` keystrokes the server's RSS (/proc/PID/status), threads and
open file descriptors are read, with the latency p50/p99 of the requests answered in that window.

Documents (`--documents`): RSS at the start, with a 5 MB document open, after closing it, and after opening and
closing five 2 MB documents in turn (each measured once the server has gone quiet).

The server runs the tiny scripted test model by default (written with `fimble_dev.tiny_gguf`, as the tests
do), so the figures measure fimble and not a model; `--model PATH` runs another one, e.g. the embedded model
(`fimble models path` shows where it is). `--prompt-cache-mb` sets the KV snapshot budget: a small one is full
within the first few hundred keystrokes.

Examples:
    scripts/soak.py --out soak.json
    scripts/soak.py --keystrokes 4000 --prompt-cache-mb 8
    scripts/soak.py --documents --out documents.json
    scripts/soak.py --documents --max-document-bytes 0      # no size limit: what the syntax layer and model cost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

import fimble
from fimble.evaluation.metrics import percentile, rounded
from fimble_dev.lsp_client import (
    BenchClient,
    first_item,
    initialize,
    make_client,
    position,
    start_server,
    stop_server,
    wait_ready,
)
from fimble_dev.typist import Typist, region_end, start_offset

# Targets from issue #14.
TARGET_GROWTH_MB_PER_2000 = 20.0  # RSS growth after warm-up, per 2,000 keystrokes, with the prompt cache full
TARGET_P99_RATIO = 1.2  # p99 of the last window within 20% of the first
TARGET_OPEN_5MB_MB = 300.0  # RSS a 5 MB document costs while open
TARGET_RETURN_MB = 50.0  # RSS after closing it and five 2 MB documents, against the start

DOCUMENTS = 20
REGION_CHARS = 300  # a typist types about this much before it moves to another place in the file
MB = 1024 * 1024


# -- the server process ---------------------------------------------------------------------------------------------


@dataclass
class ProcStats:
    rss_mb: float
    threads: int
    fds: int
    cpu_s: float


def proc_stats(pid: int) -> ProcStats:
    """RSS, threads and open descriptors from /proc (Linux only), and CPU time used so far."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = os.sysconf("SC_CLK_TCK")
    utime, stime = (int(x) for x in stat.rsplit(")", 1)[1].split()[11:13])
    return ProcStats(
        rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        cpu_s=(utime + stime) / ticks,
    )


async def settle(pid: int, min_s: float = 2.0, quiet_s: float = 1.0, max_s: float = 60.0) -> ProcStats:
    """Wait until the server has used (almost) no CPU for `quiet_s` (background parses, diagnostics and indexing
    done), at least `min_s` (the debounced work is scheduled up to 1.5 s after an event), then read its stats."""
    started = time.monotonic()
    last = proc_stats(pid)
    quiet_since = time.monotonic()
    while time.monotonic() - started < max_s:
        await asyncio.sleep(0.25)
        now = proc_stats(pid)
        if now.cpu_s - last.cpu_s > 0.02:  # busy more than ~8% of the last quarter second
            quiet_since = time.monotonic()
        last = now
        if time.monotonic() - started >= min_s and time.monotonic() - quiet_since >= quiet_s:
            break
    return proc_stats(pid)


def default_model(work: Path) -> Path:
    """The tiny scripted model the tests use: it answers `val=fn(x)` in milliseconds."""
    from fimble_dev.tiny_gguf import SCRIPTED, TinyModelSpec, write_tiny_gguf

    return write_tiny_gguf(work / "tiny-plain.gguf", TinyModelSpec(name="tiny-plain", script=SCRIPTED))


def server_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if args.n_threads is not None:
        env["FIMBLE_N_THREADS"] = str(args.n_threads)
    return env


def init_options(args: argparse.Namespace, model: Path) -> dict[str, Any]:
    options: dict[str, Any] = {"model": str(model)}
    for key, value in (
        ("promptCacheMb", args.prompt_cache_mb),
        ("maxDocumentBytes", args.max_document_bytes),
        ("nCtx", args.n_ctx),
    ):
        if value is not None:
            options[key] = value
    return options


class Server:
    """`fimble serve` over stdio, its log in a file, with the few requests the benchmark makes."""

    def __init__(self, client: BenchClient, log_path: Path) -> None:
        self.client = client
        self.log_path = log_path
        self.versions: dict[str, int] = {}

    @property
    def pid(self) -> int:
        pid = self.client.server_pid
        if pid is None:
            raise RuntimeError("the server is not running")
        return pid

    def open(self, uri: str, text: str) -> None:
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )

    def change(self, uri: str, before: str, start: int, end: int, new: str) -> None:
        self.versions[uri] += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=position(before, start), end=position(before, end)), text=new
                    )
                ],
            )
        )

    def close(self, uri: str) -> None:
        self.versions.pop(uri, None)
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    def request(self, uri: str, text: str, offset: int) -> tuple[str, asyncio.Future[Any]]:
        """An automatic inlineCompletion request: (its id, for $/cancelRequest; the future of its answer)."""
        msg_id = str(uuid.uuid4())
        pos = position(text, offset)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=pos,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
        future = self.client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        return msg_id, asyncio.ensure_future(future)

    def cancel(self, msg_id: str) -> None:
        self.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


@contextlib.asynccontextmanager
async def running_server(args: argparse.Namespace, work: Path, root: Path) -> Any:
    model = Path(args.model) if args.model else default_model(work)
    options = init_options(args, model)
    client = make_client(options)
    log_path = Path(args.server_log) if args.server_log else work / "server.log"
    await start_server(client, log_path, server_env(args))
    server = Server(client, log_path)
    try:
        await initialize(client, root, options)
        await wait_ready(client, args.load_timeout)
        yield server
    finally:
        await stop_server(client)


# -- typing soak ----------------------------------------------------------------------------------------------------


@dataclass
class Window:
    """One `--window` of keystrokes: what the server held at its end, and the latency of its answers."""

    keystrokes: int  # at the end of the window
    rss_mb: float
    threads: int
    fds: int
    answered: int = 0
    cancelled: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def source_files(source: Path, count: int) -> list[Path]:
    """`count` Python files of at least 80 lines from `source`, the same ones on every run."""
    found = []
    for path in sorted(source.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text.count("\n") >= 80:
            found.append(path)
    if len(found) < count:
        raise ValueError(f"{source} has {len(found)} Python files of 80+ lines; the soak needs {count}.")
    return found[:count]


def typist_at(text: str, path: str, rng: random.Random, args: argparse.Namespace, first: bool) -> Typist:
    """A typist that types `REGION_CHARS`-odd characters from a statement line of `text` (40% into the file the
    first time, then anywhere): the region is cut out first, then typed back."""
    lines = text.split("\n")
    line = None if first else rng.randrange(1, len(lines) + 1)
    start = start_offset(text, line, path)
    end = region_end(text, start, REGION_CHARS, path)
    return Typist(
        before=text[:start],
        region=text[start:end],
        after=text[end:],
        rng=rng,
        accept_rate=args.accept_rate,
        typo_rate=args.typo_rate,
    )


async def run_soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    root = work / "ws"
    root.mkdir()
    files = []
    for path in source_files(Path(args.source), DOCUMENTS):
        target = root / "_".join(path.relative_to(args.source).parts)
        shutil.copyfile(path, target)
        files.append(target)
    paths = {f.as_uri(): str(f) for f in files}
    typists = {
        uri: typist_at(Path(path).read_text(encoding="utf-8"), path, rng, args, True) for uri, path in paths.items()
    }
    windows: list[Window] = []
    actions: dict[str, int] = {}
    started = time.monotonic()
    async with running_server(args, work, root) as server:
        for uri, typist in typists.items():
            server.open(uri, typist.text)
        await settle(server.pid)
        baseline = proc_stats(server.pid)
        uri = rng.choice(list(typists))
        suggestion = ""
        pending: tuple[str, asyncio.Future[Any]] | None = None
        current = Window(0, 0.0, 0, 0)
        for keystroke in range(1, args.keystrokes + 1):
            if rng.random() < 1 / args.switch_every:
                uri = rng.choice([u for u in typists if u != uri])
                suggestion = ""
                actions["switch"] = actions.get("switch", 0) + 1
            typist = typists[uri]
            if typist.done:  # the region is typed back: cut out another one
                typist = typists[uri] = typist_at(typist.text, paths[uri], rng, args, False)
                before = typist.before + typist.region + typist.after
                server.change(uri, before, len(typist.before), len(typist.before) + len(typist.region), "")
                actions["cut"] = actions.get("cut", 0) + 1
            before = typist.text
            kind, a, b, new = typist.next_action(suggestion)
            actions[kind] = actions.get(kind, 0) + 1
            server.change(uri, before, a, b, new)
            if pending is not None:
                # The user typed on before the answer came: the editor cancels the request it no longer wants.
                msg_id, future = pending
                server.cancel(msg_id)
                try:
                    await asyncio.wait_for(future, timeout=args.request_timeout)
                    current.cancelled += 1
                except Exception as exc:
                    if "cancel" in str(exc).lower():
                        current.cancelled += 1
                    else:
                        current.errors += 1
                        print(f"soak: error after a cancel: {exc!r}", file=sys.stderr, flush=True)
                pending = None
            await asyncio.sleep(args.debounce_ms / 1000)
            msg_id, future = server.request(uri, typist.text, typist.offset)
            if rng.random() < args.cancel_rate:
                await asyncio.sleep(rng.uniform(0, args.debounce_ms) / 1000)  # sometimes mid-generation
                pending = (msg_id, future)
                suggestion = ""
            else:
                t0 = time.monotonic()
                try:
                    result = await asyncio.wait_for(future, timeout=args.request_timeout)
                    current.latencies_ms.append((time.monotonic() - t0) * 1000)
                    current.answered += 1
                    suggestion = first_item(result)
                except Exception as exc:
                    current.errors += 1
                    print(f"soak: error: {exc!r}", file=sys.stderr, flush=True)
                    suggestion = ""
            if keystroke % args.window == 0 or keystroke == args.keystrokes:
                if pending is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pending[1], timeout=args.request_timeout)
                    current.cancelled += 1
                    pending = None
                stats = proc_stats(server.pid)
                current.keystrokes, current.rss_mb, current.threads, current.fds = (
                    keystroke,
                    stats.rss_mb,
                    stats.threads,
                    stats.fds,
                )
                current.p50_ms = rounded(percentile(current.latencies_ms, 50))
                current.p99_ms = rounded(percentile(current.latencies_ms, 99))
                windows.append(current)
                print(_window_row(current), file=sys.stderr, flush=True)
                current = Window(0, 0.0, 0, 0)
        messages = [m.message for m in server.client.messages]
    return summarize_soak(args, baseline, windows, actions, messages, time.monotonic() - started)


def summarize_soak(
    args: argparse.Namespace,
    baseline: ProcStats,
    windows: list[Window],
    actions: dict[str, int],
    messages: list[str],
    seconds: float,
) -> dict[str, Any]:
    first, last = windows[0], windows[-1]
    measured = last.keystrokes - first.keystrokes
    growth = (last.rss_mb - first.rss_mb) * 2000 / measured if measured else None
    ratio = (last.p99_ms / first.p99_ms) if first.p99_ms and last.p99_ms is not None else None
    targets = {
        "rss_growth_mb_per_2000": {
            "value": rounded(growth) if growth is not None else None,
            "target": f"< {TARGET_GROWTH_MB_PER_2000:g} MB per 2,000 keystrokes after the first window",
            "met": growth is not None and growth < TARGET_GROWTH_MB_PER_2000,
        },
        "p99_last_to_first": {
            "value": round(ratio, 2) if ratio is not None else None,
            "target": f"<= {TARGET_P99_RATIO:g} (last window's p99 within 20% of the first's)",
            "met": ratio is not None and ratio <= TARGET_P99_RATIO,
        },
    }
    return {
        "mode": "soak",
        "fimble_version": fimble.__version__,
        "model": args.model or "tiny scripted test model",
        "prompt_cache_mb": args.prompt_cache_mb,
        "keystrokes": args.keystrokes,
        "documents": DOCUMENTS,
        "seconds": round(seconds, 1),
        "baseline": asdict(baseline),
        "actions": actions,
        "windows": [{k: v for k, v in asdict(w).items() if k != "latencies_ms"} for w in windows],
        "messages": messages,
        "targets": targets,
    }


def _window_row(w: Window) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    return (
        f"{w.keystrokes:>10}  {w.rss_mb:>8.1f}  {w.threads:>7}  {w.fds:>4}  {w.answered:>8}  {w.cancelled:>9}  "
        f"{w.errors:>6}  {ms(w.p50_ms):>8}  {ms(w.p99_ms):>8}"
    )


def format_soak(report: dict[str, Any]) -> str:
    lines = [
        f"soak: {report['keystrokes']} keystrokes over {report['documents']} documents in {report['seconds']} s; "
        f"model: {report['model']}; promptCacheMb: {_or_default(report['prompt_cache_mb'])}",
        f"actions: {', '.join(f'{k} {v}' for k, v in sorted(report['actions'].items()))}",
        f"at start (20 documents open): RSS {report['baseline']['rss_mb']:.1f} MB, "
        f"{report['baseline']['threads']} threads, {report['baseline']['fds']} fds",
        "",
        "keystrokes  RSS (MB)  threads   fds  answered  cancelled  errors  p50 (ms)  p99 (ms)",
    ]
    for w in report["windows"]:
        lines.append(_window_row(Window(**w)))
    lines.append("")
    lines.extend(_target_lines(report["targets"]))
    return "\n".join(lines)


def _or_default(value: Any) -> str:
    return "default" if value is None else str(value)


def _target_lines(targets: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"target {name}: {t['value'] if t['value'] is not None else '-'} ({t['target']}): "
        f"{'met' if t['met'] else 'NOT MET'}"
        for name, t in targets.items()
    ]


# -- documents ------------------------------------------------------------------------------------------------------

_FUNCTION = '''

def {name}_{i}(values, limit={i}):
    """Sum the values above the limit, {i} times over."""
    total = 0
    for value in values:
        if value > limit:
            total += value * {i}
    return total
'''


def synthetic_python(size: int, name: str) -> str:
    """About `size` bytes of Python: many small functions, as a generated file would have."""
    parts = ["import os\n"]
    length = len(parts[0])
    i = 0
    while length < size:
        part = _FUNCTION.format(name=name, i=i)
        parts.append(part)
        length += len(part)
        i += 1
    return "".join(parts)


async def answer(server: Server, uri: str, text: str) -> str:
    """An inline completion at the end of the document: its answer also says every earlier message was handled."""
    _msg_id, future = server.request(uri, text, len(text))
    return first_item(await asyncio.wait_for(future, timeout=300))


async def run_documents(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = work / "ws"
    root.mkdir()
    probe = root / "probe.py"
    probe_text = "import os\n\n\ndef main():\n    path = os.getcwd()\n    "
    probe.write_text(probe_text)
    steps: list[dict[str, Any]] = []
    started = time.monotonic()

    def record(step: str, stats: ProcStats) -> None:
        steps.append({"step": step, **asdict(stats)})
        print(f"{step:<34} RSS {stats.rss_mb:8.1f} MB", file=sys.stderr, flush=True)

    async with running_server(args, work, root) as server:
        server.open(probe.as_uri(), probe_text)
        await answer(server, probe.as_uri(), probe_text)
        record("start", await settle(server.pid))
        big = (root / "big_5mb.py").as_uri()
        text = synthetic_python(5 * 1000 * 1000, "big")
        server.open(big, text)
        t0 = time.monotonic()
        await answer(server, big, text)
        open_answer_ms = (time.monotonic() - t0) * 1000
        del text
        record("5 MB document open", await settle(server.pid))
        server.close(big)
        await answer(server, probe.as_uri(), probe_text)
        record("5 MB document closed", await settle(server.pid))
        for i in range(5):
            uri = (root / f"medium_{i}.py").as_uri()
            text = synthetic_python(2 * 1000 * 1000, f"medium{i}")
            server.open(uri, text)
            await answer(server, uri, text)
            del text
            record(f"2 MB document {i + 1} open", await settle(server.pid))
            server.close(uri)
            await answer(server, probe.as_uri(), probe_text)
            record(f"2 MB document {i + 1} closed", await settle(server.pid))
        messages = [m.message for m in server.client.messages]
    start = steps[0]["rss_mb"]
    opened = steps[1]["rss_mb"] - start
    back = steps[-1]["rss_mb"] - start
    targets = {
        "open_5mb_mb": {
            "value": round(opened, 1),
            "target": f"< {TARGET_OPEN_5MB_MB:g} MB more than at the start while a 5 MB document is open",
            "met": opened < TARGET_OPEN_5MB_MB,
        },
        "after_closing_mb": {
            "value": round(back, 1),
            "target": f"within {TARGET_RETURN_MB:g} MB of the start after closing it and five 2 MB documents",
            "met": abs(back) <= TARGET_RETURN_MB,
        },
    }
    return {
        "mode": "documents",
        "fimble_version": fimble.__version__,
        "model": args.model or "tiny scripted test model",
        "max_document_bytes": args.max_document_bytes,
        "seconds": round(time.monotonic() - started, 1),
        "open_5mb_answer_ms": round(open_answer_ms, 1),
        "steps": steps,
        "messages": messages,
        "targets": targets,
    }


def format_documents(report: dict[str, Any]) -> str:
    limit = report["max_document_bytes"]
    lines = [
        f"documents: model {report['model']}; maxDocumentBytes: {_or_default(limit)}; {report['seconds']} s",
        "",
        f"{'step':<34}  RSS (MB)  vs start  threads   fds",
    ]
    start = report["steps"][0]["rss_mb"]
    for step in report["steps"]:
        lines.append(
            f"{step['step']:<34}  {step['rss_mb']:>8.1f}  {step['rss_mb'] - start:>+8.1f}  {step['threads']:>7}  "
            f"{step['fds']:>4}"
        )
    lines.append("")
    lines.append(f"first answer with the 5 MB document open: {report['open_5mb_answer_ms']:.0f} ms")
    if report["messages"]:
        lines.append(f"messages shown: {len(report['messages'])} (first: {report['messages'][0]})")
    lines.extend(_target_lines(report["targets"]))
    return "\n".join(lines)


# -- the command ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soak.py", description="Memory and latency of `fimble serve` over a long typing session, or RSS as "
        "large documents are opened and closed (--documents).",
    )  # fmt: skip
    parser.add_argument("--documents", action="store_true", help="the document-size scenario instead of the soak")
    parser.add_argument("--keystrokes", type=int, default=2000, help="keystrokes to type (default 2000)")
    parser.add_argument("--window", type=int, default=500, help="keystrokes per row of the table (default 500)")
    parser.add_argument("--model", metavar="PATH", help="GGUF model (default: the tiny scripted test model)")
    parser.add_argument("--prompt-cache-mb", type=int, help="promptCacheMb for the server (default: its default)")
    parser.add_argument("--max-document-bytes", type=int, help="maxDocumentBytes for the server (0 = no limit)")
    parser.add_argument("--n-ctx", type=int, help="nCtx for the server")
    parser.add_argument("--n-threads", type=int, help="FIMBLE_N_THREADS for the server")
    parser.add_argument("--source", default=str(Path(fimble.__file__).parent), help="where the 20 documents come "
                        "from: Python files of 80+ lines (default: fimble's own sources)")  # fmt: skip
    parser.add_argument("--switch-every", type=float, default=25.0, help="mean keystrokes between file switches")
    parser.add_argument("--cancel-rate", type=float, default=0.2, help="share of requests typed over and cancelled")
    parser.add_argument("--accept-rate", type=float, default=0.2, help="chance of accepting a wrong suggestion")
    parser.add_argument("--typo-rate", type=float, default=0.05, help="chance of a typo (then a backspace)")
    parser.add_argument("--debounce-ms", type=float, default=20.0, help="pause between a key and its request")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--request-timeout", type=float, default=60.0, help="seconds to wait for one answer")
    parser.add_argument("--load-timeout", type=float, default=300.0, help="seconds to wait for the model")
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--server-log", help="append the server's log here (default: a temporary file)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.keystrokes < 1 or args.window < 1 or args.switch_every < 1:
        print("soak: --keystrokes, --window and --switch-every must be at least 1", file=sys.stderr)
        return 2
    if not Path("/proc/self/status").exists():
        print("soak: reads the server's memory from /proc (Linux only)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fimble-soak-") as tmp:
        work = Path(tmp)
        try:
            if args.documents:
                report = asyncio.run(run_documents(args, work))
                text = format_documents(report)
            else:
                report = asyncio.run(run_soak(args, work))
                text = format_soak(report)
        except (RuntimeError, OSError, ValueError, TimeoutError) as exc:
            log = Path(args.server_log) if args.server_log else work / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            print(f"soak: {type(exc).__name__}: {exc}\n{tail}", file=sys.stderr)
            return 1
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
