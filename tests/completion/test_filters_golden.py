"""Golden tests: each filter (and the default chain) against the cases in golden/<name>.toml.

A case gives the document around the cursor (`before`, `after`), the model's `raw` output and the `expected`
suggestion ("<dropped>" when the filter must drop it), optionally `replace_suffix` and `language` (python).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from fimble.completion import filters as chain
from fimble.completion.filters import FilterContext, Suggestion, apply_filters
from fimble.completion.filters.basic import normalize_newlines

GOLDEN = Path(__file__).parent / "golden"
FILTERS = {f.__name__: f for f in chain.DEFAULT_FILTERS}


def cases() -> list[Any]:
    out = []
    for path in sorted(GOLDEN.glob("*.toml")):
        for case in tomllib.loads(path.read_text())["case"]:
            out.append(pytest.param(path.stem, case, id=f"{path.stem}: {case['name']}"))
    return out


@pytest.mark.parametrize(("name", "case"), cases())
def test_golden(name: str, case: dict[str, Any]) -> None:
    language = case.get("language", "python")
    ctx = FilterContext(prefix=case["before"], suffix=case["after"], language_id=language)
    steps = chain.DEFAULT_FILTERS if name == "default_filters" else (normalize_newlines, FILTERS[name])
    result = apply_filters(Suggestion(case["raw"]), ctx, steps)
    if case["expected"] == "<dropped>":
        assert result is None
    else:
        assert result is not None, "dropped"
        assert result.text == case["expected"]
        if "replace_suffix" in case:
            assert result.replace_suffix == case["replace_suffix"]


def test_every_default_filter_has_golden_cases() -> None:
    covered = {p.stem for p in GOLDEN.glob("*.toml")}
    trivial = {"normalize_newlines", "trim_trailing_whitespace", "drop_empty"}  # covered by default_filters cases
    assert set(FILTERS) - trivial <= covered
