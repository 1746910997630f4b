"""GPU offload through the `nGpuLayers` setting. Runs only with a GPU build of llama-cpp-python (it skips, saying
why, on the CPU build CI uses); on a GPU machine: `pytest tests/test_gpu.py --noconftest`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fimble.model.llama_cpp_backend import gpu_offload_supported

pytestmark = pytest.mark.skipif(not gpu_offload_supported(), reason="llama-cpp-python was built without a GPU backend")


def test_offloaded_model_matches_the_cpu(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, str(script), "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    report = json.loads(out.read_text())
    offloaded, total = report["llama_cpp_offloaded_layers"]
    assert offloaded == total > 0
    assert report["same_text"] and report["gpu"]["text"]
