#!/usr/bin/env python3
"""Next-edit benchmarks, the issue #17 targets:

1. overhead: a `fimble/nextEdit` request's time outside the model, under 20 ms p50. The tiny test model (model time
   of a few ms) on real files, the biggest one 5,000+ lines: after each edit (a word renamed on a random line) one
   request at that line; `timingsMs.request` (the whole request in the server) minus `timingsMs.model`, and the
   client's round trip minus the model time (transport included).
2. interference: a next edit never delays a keystroke's completion. The typing replay (scripts/bench_latency.py's,
   on the embedded model by default) twice per file and seed: without next edits, and asking for one whenever a
   completion came back empty, as the clients do (`--next-edit`); the completion p50 with next edits within 5% of
   the p50 without. The two runs of a pair alternate in order, so drift in machine load falls on both.

Default files: pygls's workspace/text_document.py (tuned on), gguf's vocab.py and mypy's build.py (never tuned on).

Examples:
    flock /work/notes/bench.lock scripts/bench_next_edit.py --out next-edit.json
    scripts/bench_next_edit.py --part overhead --requests 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import keyword
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types

from fimble.evaluation.metrics import percentile, rounded
from fimble.model.resolve import resolve_model
from fimble.settings import Settings
from fimble.trust.files import atomic_write_text
from fimble_dev.latency import build_parser as replay_parser
from fimble_dev.lsp_client import initialize, make_client, plain, server_env, start_server, stop_server, wait_ready
from fimble_dev.replay import run_session
from fimble_dev.tiny_gguf import TinyModelSpec, write_tiny_gguf

TARGET_OVERHEAD_MS = 20.0
TINY_CONTEXT = 8192
REPO = Path(__file__).resolve().parents[1]
SCRIPTED_SERVER = REPO / "tests" / "next_edit_server.py"
TARGET_P50_RATIO = 1.05
_WORD = re.compile(r"\b[a-z_][a-z0-9_]{3,}\b")


def default_files() -> list[tuple[Path, Path]]:
    import gguf
    import pygls

    pygls_root = Path(str(pygls.__file__)).parent
    gguf_root = Path(str(gguf.__file__)).parent
    files = [(pygls_root / "workspace" / "text_document.py", pygls_root), (gguf_root / "vocab.py", gguf_root)]
    try:
        import mypy

        mypy_root = Path(str(mypy.__file__)).parent
        files.append((mypy_root / "build.py", mypy_root))
    except ImportError:
        pass
    return files


def _dist(values: Sequence[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "p50": rounded(percentile(values, 50)), "p95": rounded(percentile(values, 95))}


async def overhead_run(
    file: Path, root: Path, engine: str, model: Path | None, requests: int, seed: int, work: Path
) -> dict[str, Any]:
    """`engine` "scripted": tests/next_edit_server.py, whose model renames a word through the region (no model
    time, every answer checked and shown); "tiny": the tiny GGUF through llama.cpp (its tokenizer's real cost; its
    random answers are cut off, so no checks run)."""
    text = file.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    rng = random.Random(seed)
    words = Counter(_WORD.findall(text))
    old = next(w for w, _ in words.most_common() if w not in keyword.kwlist)
    new = old + "_2"
    options: dict[str, Any] = {"model": str(model) if model else "scripted", "nCtx": TINY_CONTEXT}
    client = make_client(options)
    if engine == "scripted":
        log = work / "scripted.log"
        cmd = ["/bin/sh", "-c", 'exec "$@" 2>>"$0"', str(log), sys.executable, str(SCRIPTED_SERVER), old, new]
        await client.start_io(*cmd, env={**server_env(), "PYTHONPATH": str(REPO)})
    else:
        await start_server(client, work / "server.log", server_env())
    uri = file.as_uri()
    server_ms: list[float] = []
    client_ms: list[float] = []
    queue_ms: list[float] = []
    outcomes: dict[str, int] = {}
    phases: dict[str, list[float]] = {}
    try:
        await initialize(client, root, options)
        await wait_ready(client, 300)
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        await asyncio.sleep(1.0)  # the file opened and parsed, as a person looks before typing
        version = 1
        for _ in range(requests):
            places = [(i, m.start()) for i, line in enumerate(lines) for m in re.finditer(rf"\b{old}\b", line)]
            if not places:
                break
            row, col = rng.choice(places)
            version += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(
                                start=types.Position(line=row, character=col),
                                end=types.Position(line=row, character=col + len(old)),
                            ),
                            text=new,
                        )
                    ],
                )
            )
            lines[row] = lines[row][:col] + new + lines[row][col + len(old) :]
            await asyncio.sleep(0.3)  # the pause after an edit that the clients wait for
            params = {"textDocument": {"uri": uri, "version": version}, "position": {"line": row, "character": col}}
            started = time.monotonic()
            result = plain(await client.protocol.send_request_async("fimble/nextEdit", params))
            round_trip = (time.monotonic() - started) * 1000
            timings = {k: float(v) for k, v in (result.get("timingsMs") or {}).items()}
            for phase, ms in timings.items():
                phases.setdefault(phase, []).append(ms)
            waited = timings.get("queue", 0.0) + timings.get("model", 0.0)
            queue_ms.append(timings.get("queue", 0.0))
            server_ms.append(timings.get("request", round_trip) - waited)
            client_ms.append(round_trip - waited)
            key = "edits shown" if result.get("edits") else (result.get("reason") or "empty")[:60]
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        await stop_server(client)
    return {
        "file": str(file),
        "engine": engine,
        "lines": len(lines),
        "seed": seed,
        "renamed": old,
        "server_overhead_ms": _dist(server_ms),
        "client_overhead_ms": _dist(client_ms),
        "queue_ms": _dist(queue_ms),
        "outcomes": outcomes,
        "phases_ms": {phase: _dist(values) for phase, values in phases.items()},
    }


def interference_pair(
    file: Path, root: Path, seed: int, limit: int, extra: Sequence[str], flip: bool
) -> dict[str, Any]:
    from fimble.cli.common import setting_overrides

    out: dict[str, Any] = {"file": str(file), "seed": seed}
    for mode in ("on", "off") if flip else ("off", "on"):
        argv = ["--file", str(file), "--root", str(root), "--seed", str(seed), "--limit", str(limit), "--no-bare"]
        argv += ["--next-edit" if mode == "on" else "--no-next-edit", *extra]
        args = replay_parser().parse_args(argv)
        overrides = setting_overrides(args)
        settings = Settings.from_env().merged(overrides)
        overrides.setdefault("model", str(resolve_model(settings.model).path))
        with tempfile.TemporaryDirectory(prefix="fimble-next-edit-") as tmp:
            session = asyncio.run(run_session(args, overrides, Path(tmp)))
        latencies = [r.latency_ms for r in session.requests if r.latency_ms is not None]
        asks: dict[str, int] = {}
        for ask in session.next_edits:
            asks[ask.outcome] = asks.get(ask.outcome, 0) + 1
        out[mode] = {
            "completion_ms": _dist(latencies),
            "next_edit_asks": asks,
            "next_edit_ms": _dist([a.latency_ms for a in session.next_edits if a.latency_ms is not None]),
        }
    on, off = out["on"]["completion_ms"], out["off"]["completion_ms"]
    out["p50_ratio"] = round(on["p50"] / off["p50"], 3) if on["p50"] and off["p50"] else None
    out["p95_ratio"] = round(on["p95"] / off["p95"], 3) if on["p95"] and off["p95"] else None
    return out


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    if report.get("overhead"):
        lines += [
            f"next-edit overhead outside the model, ms (target p50 < {TARGET_OVERHEAD_MS:g})",
            "| file | model | lines | requests | server p50 / p95 | client round trip p50 / p95 | queue p50 | outcomes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in report["overhead"]:
            s, c = row["server_overhead_ms"], row["client_overhead_ms"]
            lines.append(
                f"| {Path(row['file']).name} (seed {row['seed']}) | {row['engine']} | {row['lines']} | {s['n']} | "
                f"{s['p50']} / {s['p95']} | {c['p50']} / {c['p95']} | {row['queue_ms']['p50']} | {row['outcomes']} |"
            )
    if report.get("interference"):
        lines += [
            "",
            f"completion latency with next edits asked / without, ms (target p50 ratio <= {TARGET_P50_RATIO})",
            "| file (seed) | off p50 / p95 | on p50 / p95 | p50 ratio | p95 ratio | next edits asked |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in report["interference"]:
            off, on = row["off"]["completion_ms"], row["on"]["completion_ms"]
            lines.append(
                f"| {Path(row['file']).name} ({row['seed']}) | {off['p50']} / {off['p95']} | {on['p50']} / "
                f"{on['p95']} | {row['p50_ratio']} | {row['p95_ratio']} | {row['on']['next_edit_asks']} |"
            )
        summary = report.get("interference_summary", {})
        if summary:
            lines.append(f"\nall pairs: median p50 ratio {summary['median_p50_ratio']}, {summary['verdict']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_next_edit.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("overhead", "interference", "both"), default="both")
    parser.add_argument("--file", action="append", help="FILE[:ROOT] instead of the defaults")
    parser.add_argument("--requests", type=int, default=30, help="overhead: requests per file, scripted model")
    parser.add_argument(
        "--tiny-requests",
        type=int,
        default=4,
        help="overhead: requests per file with the tiny GGUF (slow: it writes until its token limit)",
    )
    parser.add_argument("--seeds", type=int, default=2, help="seeds per file (default 2)")
    parser.add_argument("--limit", type=int, default=30, help="interference: keystrokes per replay (default 30)")
    parser.add_argument("--out", help="write every figure as JSON here")
    args, extra = parser.parse_known_args(argv)
    files = default_files()
    if args.file:
        files = [(Path(p), Path(r or Path(p).parent)) for p, _, r in (s.partition(":") for s in args.file)]
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S")}
    started = time.monotonic()
    if args.part in ("overhead", "both"):
        with tempfile.TemporaryDirectory(prefix="fimble-next-edit-") as tmp:
            # Byte-level tokens: a 21-line region and its surroundings take thousands of them.
            spec = TinyModelSpec(name="tiny-next-edit", context_length=TINY_CONTEXT)
            model = write_tiny_gguf(Path(tmp) / "tiny.gguf", spec)
            report["overhead"] = [
                asyncio.run(overhead_run(f, r, engine, model if engine == "tiny" else None, n, seed, Path(tmp)))
                for engine, n in (("scripted", args.requests), ("tiny", args.tiny_requests))
                if n > 0
                for f, r in files
                for seed in range(args.seeds)
            ]
    if args.part in ("interference", "both"):
        pairs = []
        for i, ((f, r), seed) in enumerate((fr, s) for fr in files for s in range(args.seeds)):
            print(f"replaying {f.name} (seed {seed}) with and without next edits ...", file=sys.stderr)
            pairs.append(interference_pair(f, r, seed, args.limit, extra, flip=i % 2 == 1))
        report["interference"] = pairs
        ratios = [p["p50_ratio"] for p in pairs if p["p50_ratio"] is not None]
        median = rounded(percentile(ratios, 50)) if ratios else None
        report["interference_summary"] = {
            "median_p50_ratio": median,
            "verdict": "n/a" if median is None else ("met" if median <= TARGET_P50_RATIO else "missed"),
        }
    report["seconds"] = round(time.monotonic() - started, 1)
    print(table(report))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
