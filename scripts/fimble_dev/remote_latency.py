"""Latency of one engine (a development tool, not shipped): the same measurement for the in-process model and a
shared server, so teams can see what moving the model to a GPU box costs or gains per keystroke.

    from fimble_dev.remote_latency import measure_latency
    report = measure_latency(Settings(backend="llama-server", url="http://gpu-box:8080"), runs=10)

Each run completes a growing prefix (one more line per run, like typing), so prompt-cache reuse is part of what is
measured; the first run includes connecting and learning the model.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Sequence
from typing import Any

from fimble.model.backend import CancelToken, GenerationParams, ModelBackend
from fimble.model.runtime import load_backend, resolve_for, run_on
from fimble.settings import Settings

SAMPLE_LINES: tuple[str, ...] = (
    "import os\n",
    "import sys\n",
    "\n",
    "\n",
    "def read_config(path):\n",
    '    """Read KEY=VALUE lines into a dict."""\n',
    "    result = {}\n",
    "    with open(path) as fh:\n",
    "        for line in fh:\n",
    "            line = line.strip()\n",
    "            if not line or line.startswith('#'):\n",
    "                continue\n",
    "            key, _, value = line.partition('=')\n",
    "            result[key.strip()] = value.strip()\n",
    "    return result\n",
    "\n",
    "\n",
    "def main(argv):\n",
    "    config = read_config(argv[1])\n",
    "    for key in sorted(config):\n",
)


def _run_once(backend: ModelBackend, prefix: str, max_tokens: int) -> dict[str, Any]:
    fmt = backend.info.format
    t0 = time.monotonic()
    ids = backend.encode(fmt.render(fmt.fim, prefix=prefix, suffix="", path="bench.py"))
    t1 = time.monotonic()
    first: list[float] = []

    def on_text(_: str) -> None:
        if not first:
            first.append(time.monotonic())

    result = backend.generate(ids, GenerationParams(max_tokens=max_tokens), CancelToken(), on_text)
    t2 = time.monotonic()
    return {
        "encode_ms": (t1 - t0) * 1000,
        "first_token_ms": ((first[0] if first else t2) - t0) * 1000,
        "total_ms": (t2 - t0) * 1000,
        "prompt_tokens": result.prompt_tokens,
        "reused_tokens": result.reused_tokens,
        "generated_tokens": result.generated_tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "stop_reason": result.stop_reason,
    }


def measure_latency(
    settings: Settings, *, runs: int = 5, max_tokens: int = 16, lines: Sequence[str] = SAMPLE_LINES
) -> dict[str, Any]:
    """Load the engine `settings.backend` names and time `runs` completions; medians plus every run."""
    started = time.monotonic()
    backend = load_backend(resolve_for(settings), settings)
    load_ms = (time.monotonic() - started) * 1000
    try:
        samples = []
        for i in range(max(1, runs)):
            prefix = "".join(lines[: min(len(lines), 4 + i)])
            samples.append(run_on(backend, functools.partial(_run_once, prefix=prefix, max_tokens=max_tokens)))
        info = backend.info
        return {
            "backend": settings.backend,
            "url": settings.url if settings.backend != "llama.cpp" else None,
            "model": info.name,
            "format": info.format.name,
            "n_ctx": info.n_ctx,
            "load_ms": round(load_ms, 1),
            "median_first_token_ms": round(statistics.median(s["first_token_ms"] for s in samples), 1),
            "median_total_ms": round(statistics.median(s["total_ms"] for s in samples), 1),
            "runs": samples,
        }
    finally:
        backend.close()
