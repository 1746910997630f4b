"""The settings as documentation: the Markdown table of README.md and PROTOCOL.md and `fimble doctor --settings`,
generated from the fields of settings.py so that no copy can drift."""

from __future__ import annotations

import json
import re
from typing import Any

from fimble.settings import Composed, SettingField, setting_fields

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
_SECTION = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.DOTALL)
_NOTE = "<!-- generated from server/fimble/settings.py by `python scripts/gen_docs.py`; edit the fields there -->"


def json_value(value: Any) -> Any:
    """A setting's value as an editor writes it (lists, not tuples)."""
    if isinstance(value, tuple):
        return [json_value(v) for v in value]
    return value


def shown(value: Any) -> str:
    """A value for people: JSON, and "unset" for None."""
    return "unset" if value is None else json.dumps(json_value(value))


def markdown_table() -> str:
    """The settings table: LSP key, environment variable, flag, type, default, allowed values, meaning."""
    rows = ["| key | env | flag | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in setting_fields():
        cells = (
            f"`{f.key}`",
            _code(f.spec.env),
            _code(f.flag),
            f.kind,
            "unset" if f.default is None else f"`{shown(f.default)}`",
            f.allowed,
            f.spec.doc,
        )
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)


def splice(text: str, table: str | None = None) -> str:
    """`text` with the part between the settings markers replaced by the generated table."""
    body = f"{BEGIN}\n{_NOTE}\n{markdown_table() if table is None else table}\n{END}"
    if not _SECTION.search(text):
        raise ValueError(f"no {BEGIN} ... {END} section")
    return _SECTION.sub(lambda _: body, text)


def report(composed: Composed) -> list[dict[str, Any]]:
    """Every setting with its value and where that came from, for `fimble doctor --settings --json`."""
    return [_row(f, composed) for f in setting_fields()]


def report_lines(composed: Composed) -> list[str]:
    """`fimble doctor --settings` as aligned text."""
    rows = [
        (r["key"], shown(r["value"]), r["source"], r["type"], shown(r["default"]), r["allowed"])
        for r in report(composed)
    ]
    head = ("setting", "value", "source", "type", "default", "allowed")
    widths = [min(max(len(row[i]) for row in (head, *rows)), 40) for i in range(len(head) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in (head, *rows)
    ]


def _row(f: SettingField, composed: Composed) -> dict[str, Any]:
    return {
        "key": f.key,
        "value": json_value(getattr(composed.settings, f.name)),
        "source": composed.sources[f.name],
        "type": f.kind,
        "default": json_value(f.default),
        "allowed": f.allowed,
        "env": f.spec.env,
        "flag": f.flag,
    }


def _code(text: str | None) -> str:
    return f"`{text}`" if text else ""
