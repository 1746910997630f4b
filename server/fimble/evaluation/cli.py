"""Arguments of `fimble eval` (kept free of heavy imports: the CLI builds every subparser on each start)."""

from __future__ import annotations

import argparse

SUITES = ("humaneval-single", "humaneval-multi", "repo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite",
        default=None,
        help=f"comma list of {', '.join(SUITES)} (default: the HumanEval suites when --humaneval is given, and repo)",
    )
    parser.add_argument(
        "--humaneval",
        metavar="DIR",
        help="folder with HumanEval-SingleLineInfilling.jsonl.gz and HumanEval-MultiLineInfilling.jsonl.gz",
    )
    parser.add_argument(
        "--repo-source",
        metavar="PKG_OR_DIR",
        action="append",
        help="package name or package folder for repository tasks (repeatable; default: pygls, lsprotocol, "
        "_pytest, gitdb)",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="at most N tasks per suite (drawn with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed for drawing tasks (default 0)")
    parser.add_argument("--out", metavar="FILE", help="write all results as JSON here")
    parser.add_argument(
        "--exec-timeout", type=float, default=10.0, metavar="S", help="wall-clock limit per test run (default 10 s)"
    )
    parser.add_argument(
        "--exec-cpu", type=int, default=5, metavar="S", help="CPU-seconds limit per test run (default 5)"
    )
    parser.add_argument(
        "--exec-memory-mb", type=int, default=1024, metavar="MB", help="address-space limit per test run"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--keep-prompts",
        action="store_true",
        help="keep each task's exact prompt in the --out JSON (to see what the context sources sent)",
    )
