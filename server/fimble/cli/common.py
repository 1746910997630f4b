"""What every `fimble` command shares: the setting flags (generated from settings.py), exit codes, output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from fimble.settings import FLAG, parse, setting_fields

EXIT_USAGE = 2  # bad input or a model problem: one readable message on stderr
_METAVARS = {"integer": "N", "number": "X", "string": "TEXT", "string[]": "A,B|none"}


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every setting that has one (settings.py), e.g. --n-ctx, --context, --fix-allow-unverified."""
    group = parser.add_argument_group("settings (override FIMBLE_* and editor settings; `fimble doctor --settings`)")
    for f in setting_fields():
        if f.flag is None:
            continue
        text = f.spec.doc.replace("%", "%%") + (f" [{f.allowed}]" if f.allowed else "")
        if f.spec.env:
            text += f" (env {f.spec.env})"
        if f.type is bool:
            group.add_argument(f.flag, dest=f.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            # Read as text and parsed by settings.py, so a bad value is blamed on the setting with its range.
            metavar = "|".join(f.spec.choices) if f.kind == "string" and f.spec.choices else _METAVARS[f.kind]
            group.add_argument(f.flag, dest=f.name, metavar=metavar, help=text)


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The setting flags given on the command line, parsed; a bad value raises SettingsError (exit 2)."""
    out: dict[str, Any] = {}
    for f in setting_fields():
        value = getattr(args, f.name, None) if f.flag is not None else None
        if value is not None:
            out[f.name] = parse(f.name, value, FLAG)
    return out


def setup_logging(level: str, log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    # pygls logs every message at INFO; keep its chatter out of the log unless asked for DEBUG.
    if level != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
