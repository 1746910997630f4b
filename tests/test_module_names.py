"""Names that say where you are: no two modules of the product package share a file name, so a name in a traceback,
a log line or a grep hit points at one module."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import fimble

PACKAGE = Path(fimble.__file__).parent
# The `fimble explain` command is named after what it runs (agent/explain.py), as every CLI command is.
SAME_JOB = {"explain.py": {"cli/explain.py", "agent/explain.py"}}


def test_no_two_modules_share_a_name() -> None:
    by_name: defaultdict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            by_name[path.name].add(path.relative_to(PACKAGE).as_posix())
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1 and SAME_JOB.get(name) != paths}
    assert shared == {}
