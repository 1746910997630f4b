"""Locate and read the prompt data files shipped as the `fimble.prompts` package."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any


def prompts_root() -> Traversable:
    return resources.files("fimble.prompts")


@cache
def load_folder(folder: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, parsed TOML) for every .toml in a prompts sub-folder, sorted by name."""
    root = prompts_root().joinpath(folder)
    items = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            items.append((entry.name, tomllib.loads(entry.read_text(encoding="utf-8"))))
    return tuple(items)


@cache
def load_text(relative: str) -> str:
    return prompts_root().joinpath(relative).read_text(encoding="utf-8")
