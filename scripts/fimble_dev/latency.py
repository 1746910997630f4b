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

This module is the report and the command (`scripts/bench_latency.py`); the replay is `replay.py`, the typist
`typist.py`, the LSP client `lsp_client.py`, the baselines `baselines.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fimble import __version__
from fimble.cli.common import add_setting_flags, setting_overrides
from fimble.evaluation.metrics import mean, percentile, rounded
from fimble.settings import Settings
from fimble.trust.files import atomic_write_text
from fimble_dev.baselines import BareLlama, Peer
from fimble_dev.record import Request, Session
from fimble_dev.replay import run_session

# Targets from the keystroke-loop issue, relative to the cold bare-llama.cpp time of the same requests.
TARGET_P50_RATIO = 0.3
TARGET_P95_RATIO = 1.0
TARGET_OVERHEAD_P50_MS = 10.0
# Without a cache flag in fimble/status, an answer this fast cannot have involved the model.
INFERRED_CACHE_HIT_MS = 5.0


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
