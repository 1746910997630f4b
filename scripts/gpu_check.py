"""Check GPU offload (the `nGpuLayers` setting) end to end: the same model loaded on the CPU and offloaded to the
GPU must give the same greedy text, llama.cpp must report the layers it offloaded, and the GPU must hold them.

    python scripts/gpu_check.py [--model PATH] [--n-gpu-layers -1] [--out result.json]

Without --model a tiny scripted GGUF is written to a temporary folder (no download). Needs a llama-cpp-python
built with a GPU backend (see README "GPU offload"); on a CPU-only build it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend, gpu_offload_supported
from fimble.settings import Settings
from fimble.trust.files import atomic_write_text

_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


def gpu_memory_used_mib() -> int | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
        return int(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def offload_report(model: Path, n_gpu_layers: int) -> tuple[int, int] | None:
    """(offloaded, total) layers as llama.cpp's own load log states them."""
    code = (
        "import llama_cpp, sys\n"
        f"llama_cpp.Llama(model_path={str(model)!r}, n_gpu_layers={n_gpu_layers}, n_ctx=256, verbose=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    m = _OFFLOADED.search(result.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else None


def run(model: Path, n_gpu_layers: int, prompt: str, max_tokens: int) -> dict[str, object]:
    report: dict[str, object] = {"model": str(model), "gpu_offload_supported": gpu_offload_supported()}
    texts = {}
    for label, layers in (("cpu", 0), ("gpu", n_gpu_layers)):
        before = gpu_memory_used_mib()
        started = time.monotonic()
        backend = LlamaCppBackend(model, Settings(n_gpu_layers=layers, n_ctx=512, n_threads=4))
        load_ms = (time.monotonic() - started) * 1000
        loaded = gpu_memory_used_mib()
        result = backend.generate(backend.encode([prompt]), GenerationParams(max_tokens=max_tokens), CancelToken())
        backend.close()
        texts[label] = result.text
        report[label] = {
            "n_gpu_layers": layers,
            "load_ms": round(load_ms, 1),
            "prompt_ms": round(result.prompt_ms, 2),
            "generate_ms": round(result.generate_ms, 2),
            "tokens_per_second": round(result.tokens_per_second, 1),
            "gpu_memory_delta_mib": None if before is None or loaded is None else loaded - before,
            "text": result.text,
        }
    offloaded = offload_report(model, n_gpu_layers)
    report["llama_cpp_offloaded_layers"] = list(offloaded) if offloaded else None
    report["same_text"] = texts["cpu"] == texts["gpu"]
    report["ok"] = bool(report["gpu_offload_supported"] and offloaded and offloaded[0] > 0 and report["same_text"])
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n-gpu-layers", type=int, default=-1)
    parser.add_argument("--prompt", default="def add(a, b):\n    return ")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not gpu_offload_supported():
        print("This llama-cpp-python build has no GPU backend (CPU only); see README 'GPU offload'.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from fimble_dev.tiny_gguf import SCRIPTED, TinyModelSpec, write_tiny_gguf

            model = write_tiny_gguf(Path(tmp) / "tiny.gguf", TinyModelSpec(name="tiny-gpu", script=SCRIPTED))
        report = run(model, args.n_gpu_layers, args.prompt, args.max_tokens)
    print(f"{'':6} {'layers':>7} {'load ms':>9} {'tok/s':>8} {'GPU MiB':>8}  text")
    for label in ("cpu", "gpu"):
        row = report[label]
        assert isinstance(row, dict)
        print(
            f"{label:6} {row['n_gpu_layers']:>7} {row['load_ms']:>9} {row['tokens_per_second']:>8} "
            f"{row['gpu_memory_delta_mib']!s:>8}  {row['text']!r}"
        )
    print(f"llama.cpp offloaded layers: {report['llama_cpp_offloaded_layers']}; same text: {report['same_text']}")
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
