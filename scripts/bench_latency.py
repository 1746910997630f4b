#!/usr/bin/env python3
"""Keystroke-to-suggestion latency of `fimble serve` against bare llama.cpp: a thin wrapper around
`fimble_dev.latency` (see `--help`).

Examples:
    scripts/bench_latency.py --limit 30 --out latency.json
    scripts/bench_latency.py --model ~/models/qwen2.5-coder-1.5b-q8_0.gguf --peer-url http://127.0.0.1:8080
"""

from __future__ import annotations

import sys

from fimble_dev.latency import main

if __name__ == "__main__":
    sys.exit(main())
