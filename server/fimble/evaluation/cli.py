"""Arguments of `fimble eval` (kept free of heavy imports: the CLI builds every subparser on each start)."""

from __future__ import annotations

import argparse

SUITES = ("humaneval-single", "humaneval-multi", "repo", "next-edit")
REPO_SETS = ("tuning", "held-out", "all")  # the keys of repo_sources.REPO_SETS (not imported: heavy)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite",
        default=None,
        help=f"comma list of {', '.join(SUITES)} (default: the HumanEval suites when --humaneval is given, and repo; "
        "next-edit: the edit after an edit, on pairs of related hunks mined from git history)",
    )
    parser.add_argument(
        "--humaneval",
        metavar="DIR",
        help="folder with HumanEval-SingleLineInfilling.jsonl.gz and HumanEval-MultiLineInfilling.jsonl.gz",
    )
    parser.add_argument(
        "--repos",
        choices=REPO_SETS,
        default="all",
        help="repository tasks from the tuning repositories (pygls, lsprotocol, _pytest, gitdb: installed here), the "
        "held-out ones (click, httpx, rich, werkzeug: pinned source distributions pip fetches once into the cache), "
        "or both (default), reported separately and together",
    )
    parser.add_argument(
        "--repo-source",
        metavar="SPEC",
        action="append",
        help="instead of --repos: an installed package's name or a package folder (tuning split), or "
        "DIST==VERSION[/PACKAGE], a source distribution fetched by pip (held-out split); prefix tuning: or held-out: "
        "to choose the split (repeatable)",
    )
    parser.add_argument("--repo-cache", metavar="DIR", help="where fetched source distributions are unpacked")
    parser.add_argument(
        "--next-edit-repo",
        metavar="[SPLIT:]PATH",
        action="append",
        help="next-edit tasks: a local git repository to mine instead of --repos (fimble's own history for tuning, "
        "the held-out packages' release histories built from their sdists); prefix held-out: for that split "
        "(repeatable)",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="at most N tasks per suite (drawn with --seed)")
    parser.add_argument(
        "--per-repo", type=int, metavar="N", help="repository tasks: N from each repository (instead of --limit)"
    )
    parser.add_argument(
        "--mode",
        action="append",
        metavar="SOURCES",
        help="repository tasks: a context setting to run, repeatable: all, none (the cursor window alone), a comma "
        "list of sources, or all-SOURCE[-SOURCE] (all but those); default: all, then none. Each is compared with none",
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="repository tasks: only the true line's log-probability under each prompt, no generation (faster)",
    )
    parser.add_argument(
        "--report-from",
        nargs="+",
        metavar="FILE",
        help="no model: the repository report from earlier runs' --out files (the same tasks, different settings)",
    )
    parser.add_argument("--baseline", metavar="LABEL", help="with --report-from: the run the others are compared with")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for drawing tasks and for the bootstrap intervals (default 0)"
    )
    parser.add_argument("--out", metavar="FILE", help="write all results as JSON here")
    parser.add_argument(
        "--memo",
        metavar="FILE",
        help="answer prompts the model was given before (same model file, same prompt tokens) from FILE, and add the "
        "new answers: a run that changes few prompts costs only those",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="repository tasks: take the tasks an earlier, stopped run with the same --out finished from its "
        "FILE.partial.jsonl instead of running them again",
    )
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
