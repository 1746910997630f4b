#!/usr/bin/env python
"""Benchmark the context engine: per-source latency on every keystroke, index build time and memory, re-indexing.

By default it builds a ~2,000-file git repository from Python packages installed in this environment (mypy, numpy,
hypothesis, pydantic...) and types into a ~5,800-line file of it (numpy/lib/_function_base_impl.py): each keystroke
is a didChange through the document store (incremental tree update) followed by one `gather` with every source on.

    .venv/bin/python scripts/bench_context.py                # table on stdout
    .venv/bin/python scripts/bench_context.py --json out.json
    .venv/bin/python scripts/bench_context.py --repo ~/src/project --file src/big_module.py

Targets (issue 3): all context for one request under 15 ms p50 and 50 ms p99; re-indexing one file under 50 ms.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from fimble.context.engine import ContextEngine
from fimble.context.source_types import ContextQuery
from fimble.documents import DocumentStore
from fimble.index.gitinfo import GitInfo
from fimble.index.workspace import WorkspaceIndex
from fimble.prompt.budget import TokenEstimator
from fimble.trust.files import atomic_write_text

PACKAGES = ("mypy", "numpy", "hypothesis", "pydantic", "pydantic_core", "fastapi", "pygls", "lsprotocol", "git")
DEFAULT_FILE = "numpy/lib/_function_base_impl.py"
SOURCES = ("scope", "definitions", "similar", "ring", "git")
TYPED = "result = np.asarray(a, dtype=float)"
BUDGET_TOKENS = int((4096 - 64 - 16) * 0.4)  # the pipeline's context share of a 4k context


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def build_repo(dest: Path, max_files: int) -> Path:
    """Copy Python sources of installed packages into a fresh git repository, with some history and some
    uncommitted edits, so every source has something to do."""
    site = Path(sysconfig.get_paths()["purelib"])
    copied = 0
    for package in PACKAGES:
        src = site / package
        if not src.is_dir():
            continue
        for path in sorted(src.rglob("*")):
            if copied >= max_files:
                break
            if path.suffix not in (".py", ".pyi") or "__pycache__" in path.parts or not path.is_file():
                continue
            target = dest / path.relative_to(site)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            copied += 1
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "import")
    # history: files that change together
    pairs = [
        ("numpy/lib/_function_base_impl.py", "numpy/lib/_shape_base_impl.py"),
        ("mypy/checker.py", "mypy/nodes.py"),
    ]
    for n in range(3):
        for pair in pairs:
            for rel in pair:
                path = dest / rel
                if path.exists():
                    with path.open("a") as fh:
                        fh.write(f"\n# history {n}\n")
        git(dest, "commit", "-qam", f"change {n}")
    # uncommitted edits in a few files: the git source's "recent changes"
    for rel in ("numpy/lib/_shape_base_impl.py", "numpy/_core/fromnumeric.py", "mypy/nodes.py"):
        path = dest / rel
        if path.exists():
            with path.open("a") as fh:
                fh.write("\n\ndef bench_uncommitted_helper(values, axis=None):\n    return values\n")
    return dest


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def code_lines(text: str, count: int, seed: int = 7) -> list[int]:
    """Rows of indented code lines (inside function bodies) spread over the file."""
    lines = text.split("\n")
    rows = [
        i
        for i, line in enumerate(lines)
        if line.startswith("        ") and line.strip() and not line.strip().startswith(("#", '"', "'"))
    ]
    rng = random.Random(seed)
    return sorted(rng.sample(rows, min(count, len(rows))))


def bench_keystrokes(engine: ContextEngine, root: Path, rel: str, positions: int, keys: int) -> dict[str, list[float]]:
    store = DocumentStore()
    engine.attach(store)
    # other files the user looked at and edited fill the ring
    for other in sorted(root.rglob("*.py"))[:40:4]:
        doc = store.open(other.as_uri(), other.read_text("utf-8", "replace"), 1, "python")
        store.change(doc.uri, 2, [("\n", (min(10, doc.line_count - 1), 0), (min(10, doc.line_count - 1), 0))])
    path = root / rel
    text = path.read_text("utf-8", "replace")
    doc = store.open(path.as_uri(), text, 1, "python")
    engine.wait_idle()
    count = TokenEstimator()
    timings: dict[str, list[float]] = {name: [] for name in ("syntax", *SOURCES, "total", "total (cpu)")}
    version = 2
    for row in code_lines(text, positions):
        # a new statement under an existing line, typed one character at a time (transient syntax errors included)
        line = doc.line(row)
        indent = line[: len(line) - len(line.lstrip())]
        store.change(doc.uri, version, [("\n" + indent, (row, len(line)), (row, len(line)))])
        version += 1
        row += 1
        for k, ch in enumerate(TYPED[:keys]):
            character = len(indent) + k
            store.change(doc.uri, version, [(ch, (row, character), (row, character))])
            version += 1
            offset = doc.offset_at(row, character + 1)
            lo = max(0, offset - 6000)
            query = ContextQuery(doc.text, offset, "python", rel, doc.uri, (lo, min(len(doc.text), offset + 1500)))
            c0 = time.thread_time()
            t0 = time.perf_counter()
            result = engine.gather(query, SOURCES, BUDGET_TOKENS, count, time.monotonic() + 0.05)
            total = (time.perf_counter() - t0) * 1000
            timings["total"].append(total)
            # CPU time of this thread: what the request costs without other processes competing for the cores
            timings["total (cpu)"].append((time.thread_time() - c0) * 1000)
            for name in ("syntax", *SOURCES):
                timings[name].append(result.timings_ms.get(name, 0.0))
    full, incremental = engine.trees.stats(doc.uri)
    timings["_parses"] = [float(full), float(incremental)]
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, help="an existing repository (default: build one from site-packages)")
    parser.add_argument("--file", default=DEFAULT_FILE, help="file to type into, relative to the repository")
    parser.add_argument("--files", type=int, default=2000, help="files in the generated repository")
    parser.add_argument("--positions", type=int, default=30, help="cursor positions to type at")
    parser.add_argument("--keys", type=int, default=12, help="keystrokes per position")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) tracemalloc pass")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fimble-bench-"))
    try:
        root = args.repo.resolve() if args.repo else build_repo(tmp / "repo", args.files)
        rel = args.file
        if not (root / rel).is_file():
            print(f"{rel} is not a file in {root}", file=sys.stderr)
            return 2
        results: dict[str, Any] = {
            "repo": str(root),
            "file": rel,
            "file_lines": (root / rel).read_text().count("\n"),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }
        cache = tmp / "index.json"

        # -- index: cold, persisted, one file changed -------------------------------------------------------
        gc.collect()
        rss0 = rss_mb()
        t0 = time.perf_counter()
        index = WorkspaceIndex(root, GitInfo.discover(root), cache)
        stats = index.build()
        cold_s = time.perf_counter() - t0
        index.save()
        rss1 = rss_mb()
        t0 = time.perf_counter()
        warm = WorkspaceIndex(root, GitInfo.discover(root), cache)
        warm_stats = warm.build()
        warm_s = time.perf_counter() - t0
        target = root / rel
        original = target.read_text()
        reindex_ms = []
        for n in range(20):
            target.write_text(original + f"\n\ndef bench_reindexed_{n}(x):\n    return x\n")
            t0 = time.perf_counter()
            warm.update_path(rel)
            reindex_ms.append((time.perf_counter() - t0) * 1000)
        target.write_text(original)
        small = next(p for p in sorted(index.files.paths) if (root / p).stat().st_size < 8000)
        small_ms = []
        for n in range(20):
            (root / small).write_text((root / small).read_text() + f"\n# {n}\n")
            t0 = time.perf_counter()
            warm.update_path(small)
            small_ms.append((time.perf_counter() - t0) * 1000)
        results["index"] = {
            "files_listed": stats.listed,
            "files_indexed": stats.indexed,
            "symbols": stats.symbols,
            "cold_build_s": round(cold_s, 2),
            "persisted_build_s": round(warm_s, 3),
            "persisted_reused": warm_stats.reused,
            "rss_growth_mb": round(rss1 - rss0, 1),
            "reindex_big_file_ms_p50": round(statistics.median(reindex_ms), 1),
            "reindex_small_file_ms_p50": round(statistics.median(small_ms), 2),
            "cache_file_mb": round(cache.stat().st_size / 2**20, 1),
        }
        del index

        # -- keystrokes -------------------------------------------------------------------------------------
        engine = ContextEngine(root, cache_file=cache)
        engine.index_now()
        timings = bench_keystrokes(engine, root, rel, args.positions, args.keys)
        parses = timings.pop("_parses")
        results["requests"] = len(timings["total"])
        results["tree_parses"] = {"full": int(parses[0]), "incremental": int(parses[1])}
        results["latency_ms"] = {
            name: {
                "p50": round(percentile(values, 50), 2),
                "p99": round(percentile(values, 99), 2),
                "max": round(max(values), 2),
            }
            for name, values in timings.items()
        }
        engine.close()

        # -- memory of the index (tracemalloc slows Python down, so apart from the timings) -------------------
        if not args.no_memory:
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.take_snapshot()
            mem_index = WorkspaceIndex(root, GitInfo.discover(root), cache)
            mem_index.build()
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
            results["index"]["python_heap_mb"] = round(size / 2**20, 1)
            del mem_index

        report(results)
        if args.json:
            atomic_write_text(args.json, json.dumps(results, indent=2))
        print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(results: dict[str, Any]) -> None:
    idx = results["index"]
    print(f"repository: {results['repo']}")
    print(f"file: {results['file']} ({results['file_lines']} lines), {results['requests']} keystrokes")
    print(f"machine: {results['cpus']} CPUs, load average {results['load_average_1m']} at the start")
    print(f"tree parses during typing: {results['tree_parses']}")
    print()
    print(f"{'source':<14}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, row in results["latency_ms"].items():
        print(f"{name:<14}{row['p50']:>10.2f}{row['p99']:>10.2f}{row['max']:>10.2f}")
    print()
    print(
        f"index: {idx['files_indexed']} files ({idx['files_listed']} listed), {idx['symbols']} symbols; "
        f"cold build {idx['cold_build_s']} s, from the persisted cache {idx['persisted_build_s']} s "
        f"({idx['persisted_reused']} reused); cache file {idx['cache_file_mb']} MB"
    )
    print(
        f"re-index one file: {idx['reindex_big_file_ms_p50']} ms ({results['file_lines']}-line file), "
        f"{idx['reindex_small_file_ms_p50']} ms (small file)"
    )
    memory = f"RSS growth {idx['rss_growth_mb']} MB"
    if "python_heap_mb" in idx:
        memory += f", index Python heap {idx['python_heap_mb']} MB"
    print(f"memory: {memory}")
    print()


if __name__ == "__main__":
    sys.exit(main())
