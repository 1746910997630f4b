#!/usr/bin/env python3
"""Typing replays on several files against llama.cpp's llama-server in the same run: the issue #15 targets
(fimble's p50 at most half of llama-server's, its p95 at most llama-server's, on each file).

Each replay is `scripts/bench_latency.py`'s (a typist with typos, accepted and undone wrong suggestions, into
`fimble serve` over stdio); llama-server (started here once, on the same model, threads and context size, prompt
cache on) is sent every request's exact prompt right after fimble answers it, so both see the same machine load.
Besides p50 and p95 it reports the quartiles (p25, p75) and the median of the first and the last quarter of the
requests (the start of a session, when less is cached, against its steady state).

Default files: pygls's workspace/text_document.py (seed 0) and feature_manager.py (seed 1), the README's two,
and gguf's vocab.py (seed 2), which no setting was tuned on; each with its package as the workspace.

Examples:
    flock /work/notes/bench.lock scripts/bench_typing.py --out typing.json
    scripts/bench_typing.py --peer-url http://127.0.0.1:8080 --limit 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fimble.evaluation.metrics import percentile, rounded
from fimble.model.resolve import resolve_model
from fimble.settings import Settings
from fimble.trust.files import atomic_write_text
from fimble_dev.baselines import BareLlama, Peer, bare_params
from fimble_dev.latency import build_parser as replay_parser
from fimble_dev.latency import summarize
from fimble_dev.record import Request
from fimble_dev.replay import run_session

REPO = Path(__file__).resolve().parents[1]
TARGET_P50_TO_PEER = 0.5
TARGET_P95_TO_PEER = 1.0


def default_files() -> list[tuple[Path, Path, int]]:
    """(file, workspace, seed) of the three default replays."""
    import gguf
    import pygls

    pygls_root = Path(str(pygls.__file__)).parent
    gguf_root = Path(str(gguf.__file__)).parent
    return [
        (pygls_root / "workspace" / "text_document.py", pygls_root, 0),
        (pygls_root / "feature_manager.py", pygls_root, 1),
        (gguf_root / "vocab.py", gguf_root, 2),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(binary: str, model: str, settings: Settings, log: Path) -> Iterator[str]:
    """llama-server on 127.0.0.1 with fimble's context size, batch and threads; yields its URL."""
    params = bare_params(model, settings)
    port = _free_port()
    cmd = [
        binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-c", str(params["n_ctx"]),
        "-b", str(params["n_batch"]), "-ub", str(params["n_ubatch"]), "-t", str(params["n_threads"]),
        "-tb", str(params["n_threads_batch"]), "--parallel", "1", "--no-webui",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not start within 300 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cached_llama_server() -> str | None:
    """The binary scripts/setup_llama_server.sh built, if it did."""
    try:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "setup_llama_server.sh"), "--cached"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError:
        return None
    lines = out.stdout.strip().splitlines()
    return lines[-1] if out.returncode == 0 and lines else None


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50, p95, the quartiles, and the medians of the first and the last quarter (in replay order)."""
    quarter = max(1, len(values) // 4)
    return {
        "n": len(values),
        "p25": rounded(percentile(values, 25)),
        "p50": rounded(percentile(values, 50)),
        "p75": rounded(percentile(values, 75)),
        "p95": rounded(percentile(values, 95)),
        "first_quarter_p50": rounded(percentile(values[:quarter], 50)),
        "last_quarter_p50": rounded(percentile(values[-quarter:], 50)),
    }


def _ratio(a: float | int | None, b: float | int | None) -> float | None:
    return None if a is None or b is None or b <= 0 else round(a / b, 3)


def replay(
    file: Path, root: Path, seed: int, args: argparse.Namespace, extra: Sequence[str], peer_url: str | None
) -> dict[str, Any]:
    argv = ["--file", str(file), "--root", str(root), "--seed", str(seed), "--limit", str(args.limit), *extra]
    replay_args = replay_parser().parse_args(argv)
    from fimble.cli.common import setting_overrides

    overrides = setting_overrides(replay_args)
    settings = Settings.from_env().merged(overrides)
    model = str(resolve_model(settings.model).path)
    overrides.setdefault("model", model)
    peer = Peer(peer_url, "auto", settings, replay_args.request_timeout) if peer_url else None
    bare = BareLlama(model, settings) if args.bare else None
    try:
        with tempfile.TemporaryDirectory(prefix="fimble-typing-") as tmp:
            session = asyncio.run(run_session(replay_args, overrides, Path(tmp), bare, peer))
    finally:
        if bare is not None:
            bare.close()
    done: list[Request] = [r for r in session.requests if r.latency_ms is not None]
    fimble_ms = [r.latency_ms for r in done if r.latency_ms is not None]
    peer_ms = [r.peer_ms for r in done if r.peer_ms is not None]
    notes = {"peer": peer.note()} if peer is not None else {}
    summary = summarize(session, settings, notes)
    row: dict[str, Any] = {
        "file": str(file),
        "workspace": str(root),
        "seed": seed,
        "fimble_ms": spread(fimble_ms),
        # the requests the typed-through cache did not answer: what a keystroke costs when the model runs
        "model_ms": spread([r.latency_ms for r in done if r.latency_ms is not None and not r.cached]),
        "peer_ms": spread(peer_ms),
        "cache_hit_rate": summary["cache_hit_rate"],
        "reuse_rate": summary["reuse_rate"],
        "tokens_evaluated": summary["tokens_evaluated"],
        "overhead_ms_p50": summary["overhead_ms"]["p50"],
        "actions": session.actions,
        "requests": [
            {
                "action": r.action,
                "latency_ms": rounded(r.latency_ms) if r.latency_ms is not None else None,
                "peer_ms": rounded(r.peer_ms) if r.peer_ms is not None else None,
                "cached": r.cached,
                "prompt_tokens": r.prompt_tokens,
                "reused_tokens": r.reused_tokens,
                "peer_cached_tokens": r.peer_cached_tokens,
                "generated_tokens": r.generated_tokens,
            }
            for r in session.requests
        ],
    }
    if bare is not None:
        row["bare_cold_ms"] = summary["bare_cold_ms"]
    f, p = row["fimble_ms"], row["peer_ms"]
    row["p50_to_peer"] = _ratio(f["p50"], p["p50"])
    row["p95_to_peer"] = _ratio(f["p95"], p["p95"])
    row["targets"] = {
        f"p50 <= {TARGET_P50_TO_PEER} x llama-server p50": _verdict(row["p50_to_peer"], TARGET_P50_TO_PEER),
        "p95 <= llama-server p95": _verdict(row["p95_to_peer"], TARGET_P95_TO_PEER),
    }
    return row


def _verdict(ratio: float | None, limit: float) -> str:
    return "n/a" if ratio is None else ("met" if ratio <= limit else "missed")


def table(rows: Sequence[dict[str, Any]]) -> str:
    def ms(d: dict[str, Any]) -> str:
        return " / ".join(str(d[k]) for k in ("p50", "p95", "p25", "p75", "first_quarter_p50", "last_quarter_p50"))

    lines = [
        "latency ms: p50 / p95 / p25 / p75 / first-quarter p50 / last-quarter p50",
        "| file | fimble | fimble, model requests only | llama-server | p50 ratio | p95 ratio | cache hits | reuse "
        "| targets |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        verdicts = ", ".join(f"{k}: {v}" for k, v in row["targets"].items())
        lines.append(
            f"| {Path(row['file']).name} (seed {row['seed']}) | {ms(row['fimble_ms'])} | "
            f"{ms(row['model_ms']) if 'model_ms' in row else '-'} | {ms(row['peer_ms'])} | "
            f"{row['p50_to_peer']} | {row['p95_to_peer']} | {row['cache_hit_rate']} | {row['reuse_rate']} | "
            f"{verdicts} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_typing.py", description=__doc__.split("\n\n")[0], epilog="Other arguments go to each replay."
    )
    parser.add_argument("--limit", type=int, default=40, help="keystrokes per file (default 40)")
    parser.add_argument("--file", action="append", help="FILE[:ROOT[:SEED]] instead of the three defaults")
    parser.add_argument("--peer-url", help="a running llama-server instead of starting one")
    parser.add_argument("--peer-bin", help="llama-server binary (default: scripts/setup_llama_server.sh --cached)")
    parser.add_argument("--no-peer", action="store_true", help="replay without llama-server")
    parser.add_argument("--bare", action="store_true", help="also time bare llama.cpp from a cold cache")
    parser.add_argument("--out", help="write every figure and request as JSON here")
    args, extra = parser.parse_known_args(argv)
    files = default_files()
    if args.file:
        files = []
        for spec in args.file:
            path, _, rest = spec.partition(":")
            root, _, seed = rest.partition(":")
            files.append((Path(path), Path(root or Path(path).parent), int(seed or 0)))
    settings = Settings.from_env().merged(_overrides_of(extra))
    model = str(resolve_model(settings.model).path)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        peer_url = args.peer_url
        if not peer_url and not args.no_peer:
            binary = args.peer_bin or os.environ.get("FIMBLE_LLAMA_SERVER") or cached_llama_server()
            if not binary:
                print("bench_typing: no llama-server (scripts/setup_llama_server.sh builds one)", file=sys.stderr)
                return 2
            log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fimble-peer-"))) / "llama-server.log"
            peer_url = stack.enter_context(llama_server(binary, model, settings, log))
        for file, root, seed in files:
            print(f"replaying {file} (seed {seed}) ...", file=sys.stderr)
            rows.append(replay(file, root, seed, args, extra, peer_url))
    print(table(rows))
    if args.out:
        report = {"model": model, "limit": args.limit, "seconds": round(time.monotonic() - started, 1), "files": rows}
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _overrides_of(extra: Sequence[str]) -> dict[str, Any]:
    from fimble.cli.common import setting_overrides

    known, _ = replay_parser().parse_known_args(list(extra))
    return setting_overrides(known)


if __name__ == "__main__":
    sys.exit(main())
