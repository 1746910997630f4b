"""What loading the model without mmap costs: load time and memory with llama.cpp's default (the file mapped) and
with `use_mmap=False` (fimble's choice: a mapped file truncated or rewritten in place kills the server with SIGBUS).

    python scripts/bench_model_load.py [--model PATH] [--repeat 3] [--out result.json]

Without --model the model fimble would load (`fimble models path`; the embedded Gemma 3 270M by default). Each load
runs in a fresh process, the two ways alternating, after one untimed read of the file so both find it in the page
cache. Memory is the process's resident set after the load and after one short generation (a mapped model's pages
count once they are touched), split into anonymous memory (the process's own) and file pages (shared with the page
cache and with other processes that map the same file).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from fimble.model.resolve import resolve_model
from fimble.settings import Settings
from fimble.trust.files import atomic_write_text

CHILD = r"""
import json, sys, time
import llama_cpp

def memory():
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields

path, use_mmap = sys.argv[1], sys.argv[2] == "1"
started = time.perf_counter()
llm = llama_cpp.Llama(model_path=path, use_mmap=use_mmap, n_ctx=2048, n_threads=2, verbose=False)
load_ms = (time.perf_counter() - started) * 1000
loaded = memory()
started = time.perf_counter()
llm.create_completion("def fibonacci(n):\n", max_tokens=16, temperature=0.0)
first_ms = (time.perf_counter() - started) * 1000
print(json.dumps({"load_ms": load_ms, "first_ms": first_ms, "loaded": loaded, "generated": memory()}))
"""


def measure(model: Path, use_mmap: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), "1" if use_mmap else "0"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out.strip().splitlines()[-1]))


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    def med(get: Any) -> float:
        return round(statistics.median(get(r) for r in runs), 1)

    return {
        "load_ms": med(lambda r: r["load_ms"]),
        "first_generation_ms": med(lambda r: r["first_ms"]),
        "rss_loaded_mb": med(lambda r: r["loaded"]["VmRSS"]),
        "rss_generated_mb": med(lambda r: r["generated"]["VmRSS"]),
        "anon_generated_mb": med(lambda r: r["generated"].get("RssAnon", 0.0)),
        "file_generated_mb": med(lambda r: r["generated"].get("RssFile", 0.0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a .gguf (default: the model fimble would load)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    model = args.model or resolve_model(Settings.from_env().model).path
    with model.open("rb") as fh:  # warm the page cache, so neither way pays for the disk
        while fh.read(1 << 24):
            pass
    runs: dict[str, list[dict[str, Any]]] = {"mmap": [], "no mmap": []}
    for _ in range(args.repeat):
        runs["mmap"].append(measure(model, True))
        runs["no mmap"].append(measure(model, False))
    summary = {label: summarise(r) for label, r in runs.items()}
    size_mb = model.stat().st_size / 2**20
    print(f"model: {model} ({size_mb:.0f} MB), median of {args.repeat} loads each")
    print("| load | load ms | first generation ms | RSS loaded MB | RSS after generation MB | anon MB | file MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, s in summary.items():
        print(
            f"| {label} | {s['load_ms']} | {s['first_generation_ms']} | {s['rss_loaded_mb']} | "
            f"{s['rss_generated_mb']} | {s['anon_generated_mb']} | {s['file_generated_mb']} |"
        )
    report = {"model": str(model), "size_mb": round(size_mb, 1), "summary": summary, "runs": runs}
    print(json.dumps(report["summary"]))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
