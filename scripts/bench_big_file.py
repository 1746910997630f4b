#!/usr/bin/env python3
"""The first suggestion in a freshly opened 5,000-line file (and with one thread), and the server's own cost per
keystroke there: a thin wrapper around `fimble_dev.big_file` (see `--help`).

Examples:
    flock /work/notes/bench.lock scripts/bench_big_file.py --out big-file.json
    scripts/bench_big_file.py --runs overhead --limit 100
"""

from __future__ import annotations

import sys

from fimble_dev.big_file import main

if __name__ == "__main__":
    sys.exit(main())
