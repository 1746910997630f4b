"""The embedded default model (Gemma 3 270M, prefix-only) through the real CLI, as the README's first command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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
