"""`fimble eval`: completion quality through the real pipeline.

HumanEval infilling scores pass@1 (greedy, one sample) by running the tests and exact match against the hole;
repository tasks score exact match and edit similarity of the completed line, once with the context sources the
settings choose and once with the cursor window only, so the difference is what context buys.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fimble import __version__
from fimble.completion.pipeline import Completion
from fimble.errors import SettingsError
from fimble.evaluation import humaneval, next_edit_harness, repo_sources, repo_tasks
from fimble.evaluation.cli import SUITES
from fimble.evaluation.metrics import edit_similarity, exact_match, first_line, mean, rounded
from fimble.evaluation.pipeline_runner import Engine
from fimble.evaluation.report import build_report, format_report
from fimble.evaluation.sandbox import Limits, network_namespace_prefix, run_program
from fimble.prompt.assemble import Prompt
from fimble.settings import ALL_CONTEXT_SOURCES, Settings
from fimble.syntax.error_nodes import count_errors
from fimble.syntax.grammars import get_parser
from fimble.trust.files import atomic_write_text

CONTEXT_OFF = "none"


@dataclass
class SuiteResult:
    suite: str
    context: str  # the context sources in effect, comma-separated, or "none"
    tasks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        n = len(self.tasks)
        out: dict[str, Any] = {"n": n}
        if self.suite.startswith("humaneval"):
            out["pass_at_1"] = _rate(t["passed"] for t in self.tasks)
            out["status"] = dict(Counter(t["status"] for t in self.tasks))
        generated = [t for t in self.tasks if "suggestion" in t]  # none in a score-only run
        out["exact_match"] = _rate(t["exact_match"] for t in generated)
        if self.suite == "repo":
            out["edit_similarity"] = rounded(mean([t["edit_similarity"] for t in generated]), 3)
            scored = [t["target_logprob"] for t in self.tasks if "target_logprob" in t]
            out["mean_target_logprob"] = rounded(mean(scored), 2) if scored else None
        out["empty"] = sum(1 for t in generated if not t["suggestion"])
        shown = [t["adds_syntax_error"] for t in self.tasks if t.get("adds_syntax_error") is not None]
        out["adds_syntax_error"] = _rate(shown) if shown else None
        for key in ("prompt_tokens", "generated_tokens", "total_ms"):
            out[f"mean_{key}"] = rounded(mean([float(t["stats"][key]) for t in self.tasks if key in t["stats"]]))
        out["seconds"] = round(self.seconds, 1)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "context": self.context, "summary": self.summary(), "tasks": self.tasks}


def _rate(values: Any) -> float | None:
    items = [bool(v) for v in values]
    return round(sum(items) / len(items), 4) if items else None


def _sources(settings: Settings) -> str:
    return ",".join(settings.context_sources) or CONTEXT_OFF


def _stats(result: Completion) -> dict[str, Any]:
    stats: dict[str, Any] = dict(result.stats())
    stats["prompt_parts"] = _parts(result.prompt)
    return stats


def _parts(prompt: Prompt) -> dict[str, int]:
    """How many prompt tokens each context source filled: shows whether context was there at all."""
    parts: dict[str, int] = {}
    for part in prompt.parts:
        parts[part.source] = parts.get(part.source, 0) + part.tokens
    return parts


Progress = Callable[[str], None]


class Completer(Protocol):
    """What the suites need from `Engine` (tests substitute a scripted one to check the scoring)."""

    def complete(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Completion: ...

    def prompt(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Prompt: ...

    def file_changed(self, root: Path, rel_path: str) -> None: ...

    def drop_context(self, root: Path) -> None: ...


# -- HumanEval ------------------------------------------------------------------------------------------------


def adds_syntax_error(text: str, offset: int, suggestion: str, reference: str) -> bool | None:
    """Whether the suggestion, inserted as shown, leaves the file with more syntax errors than the reference
    solution does (tree-sitter); None when nothing was suggested."""
    if not suggestion:
        return None
    parser = get_parser("python")
    if parser is None:
        return None

    def errors(middle: str) -> int:
        tree = parser.parse((text[:offset] + middle + text[offset:]).encode("utf-8", "surrogatepass"))
        return count_errors(tree).nodes

    return errors(suggestion) > errors(reference)


def run_humaneval(
    engine: Completer,
    suite: str,
    tasks: list[humaneval.InfillTask],
    settings: Settings,
    limits: Limits,
    progress: Progress,
    keep_prompts: bool = False,
) -> SuiteResult:
    out = SuiteResult(suite, _sources(settings))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fimble-eval-humaneval-") as tmp:
        root = Path(tmp) / "humaneval"
        root.mkdir()
        for i, task in enumerate(tasks, 1):
            text, offset = task.document()
            rel = f"{task.entry_point}.py"
            # The file exists on disk, as an editor's file would, for context sources that read the workspace.
            atomic_write_text(root / rel, text)
            result = engine.complete(root, rel, text, offset, settings)
            engine.drop_context(root)  # each task is its own one-file workspace
            answer = humaneval.candidate(suite, result.text)
            run = run_program(task.program(answer), limits)
            record: dict[str, Any] = {
                "task_id": task.task_id,
                "suggestion": result.text,
                "raw": result.generation.text,  # before the filters: shows what a filter kept or dropped
                "scored": answer,
                "canonical_solution": task.canonical_solution,
                "passed": run.passed,
                "status": run.status,
                "detail": run.detail,
                "exact_match": exact_match(answer, task.canonical_solution),
                "adds_syntax_error": adds_syntax_error(text, offset, result.text, task.canonical_solution),
                "stats": _stats(result),
                "exec_ms": round(run.ms, 1),
            }
            if keep_prompts:
                record["prompt"] = result.prompt.text()
            out.tasks.append(record)
            progress(
                f"[{suite} {i}/{len(tasks)}] {task.task_id}: {run.status}"
                f"{' (exact)' if record['exact_match'] else ''}, {record['stats']['total_ms']:.0f} ms"
            )
    out.seconds = time.monotonic() - started
    return out


# -- repository line completion -------------------------------------------------------------------------------


class Checkpoint:
    """Each finished repository task appended to a JSON-lines file as it comes, so a long run that stopped (killed,
    crashed, the machine restarted) resumes where it was instead of starting over."""

    def __init__(self, path: Path | None, resume: bool) -> None:
        self.path = path
        self._done: dict[tuple[str, bool], dict[str, dict[str, Any]]] = {}
        if path is None:
            return
        if resume and path.is_file():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n")  # after a line the stop cut short, the next record starts a line of its own
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    key = (str(entry["mode"]), bool(entry["score_only"]))
                    self._done.setdefault(key, {})[entry["record"]["task_id"]] = entry["record"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by the stop
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")

    def done(self, mode: str, score_only: bool) -> dict[str, dict[str, Any]]:
        return self._done.get((mode, score_only), {})

    def add(self, mode: str, score_only: bool, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"mode": mode, "score_only": score_only, "record": record}, ensure_ascii=False) + "\n")

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def run_repo(
    engine: Completer,
    tasks: list[repo_tasks.RepoTask],
    trees: dict[str, repo_tasks.SourceTree],
    settings: Settings,
    progress: Progress,
    keep_prompts: bool = False,
    splits: dict[str, str] | None = None,
    score_only: bool = False,
    label: str | None = None,
    checkpoint: Checkpoint | None = None,
) -> SuiteResult:
    """Each task once with `settings`. `splits`: package -> split, recorded with each task for the report.
    `score_only`: build the prompt and score the true line, without generating (a faster run for tuning, where the
    log-probability is the signal). `checkpoint`: tasks it holds for this setting are taken from it, not run."""
    out = SuiteResult("repo", label or _sources(settings))
    done = checkpoint.done(out.context, score_only) if checkpoint is not None else {}
    started = time.monotonic()
    score = getattr(engine, "score", None)  # optional: engines that can score a line by teacher forcing
    workspaces: dict[str, repo_tasks.Workspace] = {}
    # Run in file order: the window-only prompts of two lines of one file share their text up to the first masked
    # line, and the model's cache serves that part again (the report pairs tasks by id, not by order).
    ordered = sorted(tasks, key=lambda t: (t.package, t.rel_path, t.line))
    ran = 0
    try:
        for i, task in enumerate(ordered, 1):
            if task.task_id in done:
                out.tasks.append(done[task.task_id])
                continue
            ran += 1
            ws = workspaces.get(task.package)
            if ws is None:
                ws = workspaces[task.package] = repo_tasks.Workspace(trees[task.package])
            with ws.masked(task):
                engine.file_changed(ws.root, task.rel_path)
                if score_only:
                    prompt = engine.prompt(ws.root, task.rel_path, task.text, task.offset, settings)
                    result = None
                else:
                    result = engine.complete(ws.root, task.rel_path, task.text, task.offset, settings)
                    prompt = result.prompt
            engine.file_changed(ws.root, task.rel_path)
            record: dict[str, Any] = {
                "task_id": task.task_id,
                "repo": task.package,
                "split": (splits or {}).get(task.package, ""),
                "names": list(task.names),
                "target": task.target,
            }
            if result is not None:
                prediction = first_line(result.text).strip()
                record.update(
                    suggestion=result.text,
                    raw=result.generation.text,
                    scored=prediction,
                    exact_match=exact_match(prediction, task.target),
                    edit_similarity=round(edit_similarity(prediction, task.target), 4),
                    stats=_stats(result),
                )
            else:
                record["stats"] = {"prompt_tokens": len(prompt.ids), "prompt_parts": _parts(prompt)}
            if score is not None:
                lp = score(prompt, task.target + "\n")
                if lp is not None:
                    record["target_logprob"] = round(lp, 3)
            if keep_prompts:
                record["prompt"] = prompt.text()
            out.tasks.append(record)
            if checkpoint is not None:
                checkpoint.add(out.context, score_only, record)
            shown = f"es {record['edit_similarity']:.2f}" if result is not None else ""
            if "target_logprob" in record:
                shown += f"{', ' if shown else ''}logprob {record['target_logprob']:.2f}"
            progress(
                f"[repo context={out.context} {i}/{len(tasks)}] {task.task_id}: {shown}"
                f"{' (exact)' if record.get('exact_match') else ''}, {(time.monotonic() - started) / ran:.1f} s/task"
            )
    finally:
        for ws in workspaces.values():
            engine.drop_context(ws.root)
            ws.close()
    out.seconds = time.monotonic() - started
    return out


def compare_lines(with_context: SuiteResult, without: SuiteResult) -> dict[str, int] | None:
    """On how many tasks context made the true line likelier, and less likely (teacher-forced log-probability)."""
    before = {t["task_id"]: t["target_logprob"] for t in without.tasks if "target_logprob" in t}
    pairs = [(t["target_logprob"], before[t["task_id"]]) for t in with_context.tasks if t["task_id"] in before]
    if not pairs:
        return None
    return {
        "likelier": sum(1 for a, b in pairs if a > b),
        "less_likely": sum(1 for a, b in pairs if a < b),
        "same": sum(1 for a, b in pairs if a == b),
    }


# -- the command ------------------------------------------------------------------------------------------------


def parse_suites(args: argparse.Namespace) -> list[str]:
    if args.suite:
        suites = [s.strip() for s in args.suite.split(",") if s.strip()]
        unknown = [s for s in suites if s not in SUITES]
        if unknown:
            raise SettingsError(f"Unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITES)}.")
        if any(s.startswith("humaneval") for s in suites) and not args.humaneval:
            raise SettingsError("The HumanEval suites need --humaneval DIR (the folder with the .jsonl.gz files).")
        return suites
    return (["humaneval-single", "humaneval-multi"] if args.humaneval else []) + ["repo"]


def format_table(results: list[SuiteResult]) -> str:
    header = (
        "suite", "context", "n", "pass@1", "exact", "edit-sim", "logprob", "empty", "syn-err", "prompt tok", "gen tok",
        "ms/task",
    )  # fmt: skip
    rows = [header]
    for r in results:
        s = r.summary()
        rows.append(
            (
                r.suite, r.context, str(s["n"]), _fmt(s.get("pass_at_1")), _fmt(s.get("exact_match")),
                _fmt(s.get("edit_similarity")), _fmt(s.get("mean_target_logprob"), 2), str(s["empty"]),
                _fmt(s.get("adds_syntax_error")),
                _fmt(s["mean_prompt_tokens"], 0),
                _fmt(s["mean_generated_tokens"], 1), _fmt(s["mean_total_ms"], 0),
            )
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def parse_mode(spec: str, settings: Settings) -> tuple[str, Settings]:
    """A context setting to compare: `all` (the sources the settings choose), `none` (the cursor window alone), a
    comma list of sources, or `all-SOURCE[-SOURCE]` (the settings' sources less those). Returns (label, settings)."""
    spec = spec.strip()
    if spec == CONTEXT_OFF:
        sources: tuple[str, ...] = ()
    elif spec == "all" or spec.startswith("all-"):
        drop = set(spec.split("-")[1:])
        unknown = sorted(drop - set(ALL_CONTEXT_SOURCES))
        if unknown:
            raise SettingsError(f"Unknown context source(s) {', '.join(unknown)} in --mode {spec}.")
        sources = tuple(s for s in settings.context_sources if s not in drop)
    else:
        sources = tuple(s.strip() for s in spec.split(",") if s.strip())
        unknown = [s for s in sources if s not in ALL_CONTEXT_SOURCES]
        if unknown or not sources:
            raise SettingsError(
                f"Unknown --mode {spec!r}: all, none, a comma list of {', '.join(ALL_CONTEXT_SOURCES)}, or "
                "all-SOURCE (all but that one)."
            )
    return mode_label(sources), settings.merged({"context_sources": list(sources)})


def mode_label(sources: tuple[str, ...]) -> str:
    if not sources:
        return CONTEXT_OFF
    missing = [s for s in ALL_CONTEXT_SOURCES if s not in sources]
    if len(missing) <= 2:
        return "-".join(["all", *missing])
    return ",".join(sources)


def repo_sources_of(args: argparse.Namespace) -> list[repo_sources.Repo]:
    if args.repo_source:
        return [repo_sources.parse_repo(spec) for spec in args.repo_source]
    return list(repo_sources.REPO_SETS[args.repos])


def repo_task_list(
    args: argparse.Namespace, progress: Progress
) -> tuple[list[repo_tasks.RepoTask], dict[str, repo_tasks.SourceTree], dict[str, str]]:
    """The tasks, the source tree of each package and the split of each package."""
    trees: dict[str, repo_tasks.SourceTree] = {}
    splits: dict[str, str] = {}
    groups = []
    cache = Path(args.repo_cache) if args.repo_cache else None
    for repo in repo_sources_of(args):
        if repo.dist:
            progress(f"repository {repo.label} ({repo.split}): source distribution, cached in "
                     f"{cache or repo_sources.default_cache()}")  # fmt: skip
        tree = repo_sources.resolve(repo, cache)
        if tree.name in trees:
            raise SettingsError(f"Two repository sources are both package {tree.name!r}.")
        trees[tree.name] = tree
        splits[tree.name] = repo.split
        groups.append(repo_tasks.build_tasks(tree, args.per_repo, args.seed))
    return repo_tasks.interleave(groups, None if args.per_repo else args.limit), trees, splits


def run_eval(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    if args.report_from:
        return _report_from(args)
    suites = parse_suites(args)
    settings = Settings.from_env().merged(overrides)
    limits = Limits(timeout_s=args.exec_timeout, cpu_s=args.exec_cpu, memory_mb=args.exec_memory_mb)
    if args.limit is not None and args.limit < 1:
        raise SettingsError("--limit must be at least 1.")
    if args.per_repo is not None and args.per_repo < 1:
        raise SettingsError("--per-repo must be at least 1.")

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    # Build every task list before loading the model, so bad inputs fail in a second, not after a model load.
    humaneval_tasks = {
        suite: humaneval.select(humaneval.load_tasks(Path(args.humaneval), suite), args.limit, args.seed)
        for suite in suites
        if suite.startswith("humaneval")
    }
    trees: dict[str, repo_tasks.SourceTree] = {}
    splits: dict[str, str] = {}
    repo_list: list[repo_tasks.RepoTask] = []
    modes: list[tuple[str, Settings]] = []
    if "repo" in suites:
        repo_list, trees, splits = repo_task_list(args, progress)
        # Context first, then the window alone: each pass keeps its prompts' shared prefixes in the KV cache.
        specs = args.mode or ["all", CONTEXT_OFF]
        modes = [parse_mode(spec, settings) for spec in specs]
        modes = list({label: mode for label, mode in modes}.items())  # each setting once

    next_edit = None
    report_next_edit: dict[str, Any] = {}
    if next_edit_harness.SUITE in suites:
        histories = next_edit_harness.histories_of(args)
        next_edit = next_edit_harness.build(histories, settings, args.limit, args.per_repo, args.seed)
        for repo in next_edit.repositories:
            progress(f"next-edit tasks from {repo['repo']} ({repo['split']}, {repo['source']}): {repo['pairs']} pairs "
                     f"of hunks, {repo['reachable']} within the editable region, {repo['drawn']} drawn")  # fmt: skip

    checkpoint = Checkpoint(Path(f"{args.out}.partial.jsonl") if args.out and repo_list else None, args.resume)
    started = time.monotonic()
    # A run of the next-edit suite alone loads only the model that suite uses.
    alone = suites == [next_edit_harness.SUITE]
    engine = Engine(
        next_edit_harness.model_settings(settings) if alone else settings, Path(args.memo) if args.memo else None
    )
    results: list[SuiteResult] = []
    try:
        progress(
            f"model: {engine.info.name} ({engine.info.format.name} format), loaded in {engine.info.load_ms:.0f} ms"
        )
        for suite, tasks in humaneval_tasks.items():
            results.append(run_humaneval(engine, suite, tasks, settings, limits, progress, args.keep_prompts))
        if repo_list:
            for label, mode in modes:
                run = run_repo(
                    engine, repo_list, trees, mode, progress, args.keep_prompts, splits, args.score_only, label,
                    checkpoint,
                )  # fmt: skip
                results.append(run)
        if next_edit is not None:
            report_next_edit = next_edit_harness.run_with(engine, next_edit, settings, args.seed, progress)
    finally:
        engine.close()

    repo_results = [r for r in results if r.suite == "repo"]
    by_label = {r.context: r for r in repo_results}
    versus = (
        compare_lines(repo_results[0], by_label[CONTEXT_OFF])
        if len(repo_results) >= 2 and CONTEXT_OFF in by_label and repo_results[0].context != CONTEXT_OFF
        else None
    )
    report = {
        "fimble_version": __version__,
        "model": {"name": engine.info.name, "path": engine.info.path, "format": engine.info.format.name},
        "settings": {k: v for k, v in settings.lsp_dict().items() if k in _REPORTED_SETTINGS},
        "seed": args.seed,
        "limit": args.limit,
        "per_repo": args.per_repo,
        "score_only": args.score_only,
        "repositories": [_describe_repo(r, trees) for r in repo_sources_of(args)] if repo_list else [],
        "sandbox": {
            "timeout_s": limits.timeout_s,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "network_namespace": bool(network_namespace_prefix()),
        },
        "seconds": round(time.monotonic() - started, 1),
        "memo": {"file": args.memo, "answered": engine.memo.hits, "asked": engine.memo.misses} if engine.memo else None,
        "results": [r.to_json() for r in results],
        "repo_context_vs_none": versus,
    }
    if results:
        print(format_table(results))
    if next_edit is not None:
        report["next_edit"] = report_next_edit
        print(next_edit_harness.format_report(report_next_edit["report"]))
    if versus is not None:
        print(
            f"repo: context made the true line likelier on {versus['likelier']} tasks and less likely on "
            f"{versus['less_likely']} (teacher-forced log-probability)"
        )
    if repo_results:
        repo_report = build_report(
            {r.context: r.tasks for r in repo_results}, CONTEXT_OFF if CONTEXT_OFF in by_label else None, args.seed
        )
        report["repo_report"] = repo_report
        print()
        print(format_report(repo_report))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        checkpoint.finish()
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _describe_repo(repo: repo_sources.Repo, trees: dict[str, repo_tasks.SourceTree]) -> dict[str, str]:
    tree = trees.get(repo.package)
    return {
        "package": repo.package,
        "split": repo.split,
        "source": repo.label,
        "licence": repo.licence,
        "path": str(tree.path) if tree is not None else "",
    }


def _report_from(args: argparse.Namespace) -> int:
    """The repository report from earlier runs' JSON (`--out`), without a model: runs of the same tasks with
    different context settings (say the window alone once, then each change tried) are compared as if one run."""
    modes: dict[str, list[dict[str, Any]]] = {}
    for name in args.report_from:
        try:
            data = json.loads(Path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SettingsError(f"Cannot read the results file {name}: {exc}") from exc
        for result in data.get("results", []):
            if result.get("suite") == "repo":
                label = result["context"]
                if label in modes:
                    label = f"{label} ({Path(name).stem})"
                modes[label] = result["tasks"]
    if not modes:
        raise SettingsError("No repository-suite results in the given files.")
    ids = [{t["task_id"] for t in tasks} for tasks in modes.values()]
    if any(i != ids[0] for i in ids):
        print("note: the runs hold different tasks; differences use the tasks both hold", file=sys.stderr)
    baseline = args.baseline if args.baseline else (CONTEXT_OFF if CONTEXT_OFF in modes else None)
    if baseline is not None and baseline not in modes:
        raise SettingsError(f"No run labelled {baseline!r}; have: {', '.join(modes)}.")
    repo_report = build_report(modes, baseline, args.seed)
    print(format_report(repo_report))
    if args.out:
        atomic_write_text(args.out, json.dumps({"repo_report": repo_report}, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


_REPORTED_SETTINGS = ("model", "nCtx", "nThreads", "maxTokens", "temperature", "contextSources", "backend", "url")
