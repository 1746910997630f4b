#!/usr/bin/env python3
"""Completion quality harness: a thin wrapper around `fimble eval` (see `fimble eval --help`).

Examples:
    scripts/eval.py --humaneval /path/to/humaneval-infilling --suite humaneval-single --limit 20
    scripts/eval.py --suite repo --limit 20 --out results.json
"""

from __future__ import annotations

import sys

from fimble.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
