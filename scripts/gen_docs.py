"""Write the settings table (generated from server/fimble/settings.py) into README.md and editor-clients/PROTOCOL.md.

Each file has one section between `<!-- settings:begin -->` and `<!-- settings:end -->`; only that part is
rewritten. `--check` changes nothing and exits 1 when a file differs from what would be written
(tests/test_settings_docs.py runs the same check).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fimble.settings_docs import splice

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "editor-clients" / "PROTOCOL.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        new = splice(text)
        if new == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    if args.check and stale:
        print("out of date: " + ", ".join(str(p.relative_to(ROOT)) for p in stale), file=sys.stderr)
        print("run: python scripts/gen_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
