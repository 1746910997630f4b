"""The embedded default model (Gemma 3 270M, prefix-only) through the real CLI, as the README's first command."""

from __future__ import annotations

import json
import os
from contextlib import closing
from pathlib import Path

import pytest

from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.model.resolve import default_model_path
from fimble.settings import Settings
from tests.test_cli import fimble

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.default_model
def test_fimble_complete_with_the_embedded_model() -> None:
    env = {key: "" for key in ("FIMBLE_MODEL",) if key in os.environ}
    result = fimble(
        "complete", str(REPO / "scripts/examples/fibonacci.py") + ":5:5", "--json", "--n-threads", "2", env=env
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"].lower().startswith("gemma 3")
    assert data["format"] == "prefix-only"
    assert data["suggestion"].strip(), data


def _handlers(n: int) -> str:
    return "".join(
        f'def handler_{i}(request, registry):\n    """Handle request {i}."""\n'
        f"    value = registry.get('key_{i}', {i})\n    return value * {i % 7} + request.size\n\n\n"
        for i in range(n)
    )


@pytest.mark.default_model
def test_sliding_window_cache_goes_back_through_checkpoints() -> None:
    """Gemma 3's sliding-window layers keep only their recent positions, and a saved state holds only its last
    window. A prompt that parts from the last one early continues from a checkpoint of those layers; one that comes
    back after another prompt is restored from a snapshot and its checkpoint near the end."""
    path = default_model_path()
    params = GenerationParams(max_tokens=8)
    with closing(LlamaCppBackend(path, Settings(n_threads=2))) as backend:
        assert backend._n_swa == 512  # the point of this test
        a = backend.tokenize(_handlers(60))[:1200]
        b = a[:600] + backend.tokenize("# a note\n" * 40)[:300] + a[600:1000]
        other = backend.tokenize("import os\n" * 300)[:700]
        c = a[:-2] + backend.tokenize(" x = 1\n")
        backend.generate(a, params, CancelToken())
        from_checkpoint = backend.generate(b, params, CancelToken())
        assert from_checkpoint.reused_tokens == 512  # the checkpoint one window in
        backend.generate(other, params, CancelToken())
        # `a` again with its last tokens changed: the snapshot of `a`, back to its checkpoint 16 tokens before the end.
        from_snapshot = backend.generate(c, params, CancelToken())
        assert from_snapshot.reused_tokens == len(a) - 16
    # What the model writes is what a fresh context writes. (Not bit for bit: restored cells sit in another order,
    # and llama.cpp's sums are no more stable than its batch sizes, which move logits by tenths too.)
    for prompt, result in ((b, from_checkpoint), (c, from_snapshot)):
        with closing(LlamaCppBackend(path, Settings(n_threads=2))) as fresh:
            assert fresh.generate(prompt, params, CancelToken()).text == result.text
