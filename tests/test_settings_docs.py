"""Every copy of the settings outside settings.py agrees with its fields: the generated tables in README.md and
PROTOCOL.md, the VS Code manifest and settings.ts, and the defaults the Neovim plugin shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from fimble.settings import SettingField, setting_fields
from fimble.settings_docs import BEGIN, END, json_value, splice

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editor-clients" / "vscode"
NVIM = ROOT / "editor-clients" / "nvim"
DOCS = (ROOT / "README.md", ROOT / "editor-clients" / "PROTOCOL.md")  # what scripts/gen_docs.py writes
# Set by the client from the editor's own state, never a user setting (VS Code: workspace.isTrusted).
CLIENT_STATE = {"workspaceTrusted"}
JSON_TYPES = {
    "integer": ("integer", None),
    "number": ("number", None),
    "boolean": ("boolean", None),
    "string": ("string", None),
    "string[]": ("array", "string"),
    "string[][]": ("array", "array"),
}
TS_TYPES = {
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "string": "string",
    "string[]": "string[]",
    "string[][]": "string[][]",
}


def editor_fields() -> list[SettingField]:
    return [f for f in setting_fields() if f.key not in CLIENT_STATE]


def editor_default(f: SettingField) -> Any:
    """The default as an editor's settings hold it: "" for unset text."""
    return "" if f.default is None else json_value(f.default)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_settings_tables_are_generated(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1, f"{doc.name} needs one settings section"
    assert splice(text) == text, f"{doc.name} is out of date: run python scripts/gen_docs.py"


def test_a_drifted_table_is_caught() -> None:
    text = DOCS[0].read_text(encoding="utf-8")
    drifted = text.replace("| `nCtx` | `FIMBLE_N_CTX` | `--n-ctx` | integer | `4096` |", "| `nCtx` | | | int | `0` |")
    assert drifted != text and splice(drifted) == text


def test_vscode_manifest_has_every_setting_with_its_type_default_and_range() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    props = manifest["contributes"]["configuration"]["properties"]
    problems = []
    for f in editor_fields():
        entry = props.get(f"fimble.{f.key}")
        if entry is None:
            problems.append(f"fimble.{f.key} is missing")
            continue
        kind, items = JSON_TYPES[f.kind]
        if entry["type"] != kind or (items and entry.get("items", {}).get("type") != items):
            problems.append(f"fimble.{f.key}: type {entry['type']}, the server's is {f.kind}")
        if entry.get("default") != editor_default(f):
            problems.append(f"fimble.{f.key}: default {entry.get('default')!r}, the server's is {f.default!r}")
        if entry.get("minimum") != f.lowest or entry.get("maximum") != f.spec.maximum:
            problems.append(
                f"fimble.{f.key}: range {entry.get('minimum')}..{entry.get('maximum')}, the server's is {f.allowed}"
            )
        enum = entry.get("enum") or entry.get("items", {}).get("enum")
        if f.spec.choices and enum != list(f.spec.choices):
            problems.append(f"fimble.{f.key}: choices {enum}, the server's are {list(f.spec.choices)}")
    assert not problems, "\n".join(problems)
    assert "fimble.workspaceTrusted" not in props


def test_vscode_settings_ts_sends_every_setting_with_the_servers_default() -> None:
    source = (VSCODE / "src" / "settings.ts").read_text(encoding="utf-8")
    interface = _block(source, "export interface ServerSettings {")
    keys = _block(source, "export const SERVER_KEYS = [")
    defaults = _block(source, "export const DEFAULTS = {")
    problems = []
    for f in setting_fields():
        declared = re.search(rf"^\s*{f.key}: ([\w\[\]]+);", interface, re.MULTILINE)
        if declared is None or declared.group(1) != TS_TYPES[f.kind]:
            problems.append(f"ServerSettings.{f.key}: {declared and declared.group(1)}, the server's is {f.kind}")
        if f.key in CLIENT_STATE:
            continue
        if f'"{f.key}"' not in keys:
            problems.append(f"SERVER_KEYS lacks {f.key}")
        written = re.search(rf"^\s*{f.key}: (.+?)(?: as .*)?,$", defaults, re.MULTILINE)
        if written is None or _ts_value(written.group(1)) != editor_default(f):
            problems.append(f"DEFAULTS.{f.key}: {written and written.group(1)}, the server's is {f.default!r}")
        clamp = re.search(rf'int\(cfg\.get\("{f.key}"\), DEFAULTS\.{f.key}, (-?\d+)\)', source)
        if clamp is not None and int(clamp.group(1)) != f.lowest:
            problems.append(f"readServerSettings clamps {f.key} at {clamp.group(1)}, the server's range is {f.allowed}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "start"),
    [
        (NVIM / "README.md", "with the defaults:"),
        (NVIM / "doc" / "fimble.txt", "*fimble-setup*"),
        (NVIM / "lua" / "fimble" / "config.lua", "M.defaults = {"),
    ],
    ids=lambda v: v.name if isinstance(v, Path) else "",
)
def test_neovim_defaults_are_the_servers(path: Path, start: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert start in text
    table = _lua_table(text[text.index(start) :], "settings = {")
    shown = dict(re.findall(r"\b(\w+) = ('[^']*'|\"[^\"]*\"|-?[\d.]+|true|false|\{[^}]*\})", table))
    by_key = {f.key: f for f in setting_fields()}
    problems = [
        f"{key} = {value}, the server's default is {by_key[key].default!r}"
        for key, value in shown.items()
        if key in by_key and by_key[key].default is not None and "..." not in value
        if _lua_value(value) != json_value(by_key[key].default)
    ]
    assert not problems, f"{path.name}: " + "; ".join(problems)


def _block(source: str, start: str) -> str:
    """The text from `start` to the bracket that closes it."""
    begin = source.index(start) + len(start)
    return source[begin : _closing(source, begin, start[-1])]


def _lua_table(text: str, start: str) -> str:
    begin = text.index(start) + len(start)
    return text[begin : _closing(text, begin, "{")]


def _closing(text: str, begin: int, opener: str) -> int:
    closer = {"{": "}", "[": "]"}[opener]
    depth = 1
    for i in range(begin, len(text)):
        depth += (text[i] == opener) - (text[i] == closer)
        if depth == 0:
            return i
    raise AssertionError(f"no closing {closer}")


def _ts_value(text: str) -> Any:
    return json.loads(re.sub(r"(?<=\d)_(?=\d)", "", text).replace("'", '"'))  # 1_000_000


def _lua_value(text: str) -> Any:
    if text.startswith("{"):
        return [_lua_value(v.strip()) for v in text.strip("{} ").split(",") if v.strip()]
    return json.loads(text.replace("'", '"'))
