"""`fimble eval --suite next-edit`: next-edit predictions on edits mined from git history, through the engine the
server runs (`fimble.next_edit.predictor.predict`: region, prompt, one greedy rewrite, checks).

Each task's document is a file with the first of two related hunks applied and the cursor after it; the expected
text has the second one applied too. Scored over the editable region the engine used: exact match of the region
after applying the shown edits against the expected region, their edit similarity (next to the similarity of the
untouched region, which is what showing nothing scores), the share of tasks with an edit shown, the share of shown
edits that add a syntax error (tree-sitter errors before and after; the engine's own check should make it 0), and
the reasons for empty answers. Tasks whose second hunk lies outside the region are not asked (counted apart); the
"ceiling" is the share of asked tasks where the perfect rewrite of the region passes the engine's checks.

The engine gets no context sources here (a workspace at each commit would have to be checked out and indexed): the
figures measure the region and the edit history.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fimble.agent.edits import apply_replacements
from fimble.evaluation.metrics import edit_similarity, exact_match, mean, rounded
from fimble.evaluation.next_edit_sources import History, default_histories, parse_history
from fimble.evaluation.next_edit_tasks import (
    DEFAULT_MAX_COMMITS,
    Git,
    NextEditTask,
    NextEditTaskError,
    interleave,
    mine_repository,
    sample,
)
from fimble.evaluation.pipeline_runner import Engine
from fimble.evaluation.report import ALL, CONFIDENCE, RESAMPLES, bootstrap_mean, groups_of
from fimble.model.backend import CancelToken
from fimble.next_edit.checks import check_rewrite, refusal
from fimble.next_edit.edit_formats import next_edit_format_by_name
from fimble.next_edit.predictor import NextEditAnswer, NextEditRequest, followed_names, predict
from fimble.next_edit.prompt import original_region
from fimble.next_edit.recent_edits import Hunk
from fimble.next_edit.region import Region, editable_region
from fimble.settings import Settings
from fimble.syntax.error_nodes import count_errors
from fimble.syntax.grammars import get_parser

Predict = Callable[[NextEditRequest], NextEditAnswer]
Progress = Callable[[str], None]
SUITE = "next-edit"
# Figures reported with a bootstrap interval (rates and similarities per task), in the table's order.
METRICS = ("exact_match", "edit_similarity", "unchanged_similarity", "shown", "perfect_shown")


@dataclass(frozen=True)
class Prepared:
    """A task with the region the engine will rewrite and what that region should read afterwards."""

    task: NextEditTask
    region: Region
    expected_region: str


def prepare(task: NextEditTask, lines: int) -> Prepared | None:
    """None when the second hunk is not inside the editable region around the cursor (no rewrite can reach it)."""
    region = editable_region(task.text, task.offset, lines)
    if not region.start <= task.second_start <= task.second_end <= region.end:
        return None
    # Both texts agree outside the region: the expected region is what lies between the same unchanged ends.
    expected_region = task.expected[region.start : len(task.expected) - (len(task.text) - region.end)]
    return Prepared(task, region, expected_region)


def history_of(task: NextEditTask) -> tuple[Hunk, ...]:
    return (Hunk(task.path, task.first_line, task.first_before, task.first_after),)


def request_for(task: NextEditTask, settings: Settings) -> NextEditRequest:
    return NextEditRequest(
        text=task.text,
        offset=task.offset,
        language_id=task.language_id,
        path=task.path,
        hunks=history_of(task),
        settings=settings,
    )


def perfect_reason(prepared: Prepared, format_name: str = "") -> str:
    """Why the engine would drop even a perfect rewrite of the region (empty when it would show it): the checks'
    verdict on the expected region, as the engine reaches it with the model's prompt format (`format_name`)."""
    task, region = prepared.task, prepared.region
    refused = refusal(task.text, task.language_id, task.path, region)
    if refused:
        return refused
    history = history_of(task)
    original = original_region(region, task.path, history)
    must_follow = bool(format_name) and next_edit_format_by_name(format_name).must_follow
    follows = followed_names(history) if must_follow else None
    checked = check_rewrite(
        task.text, task.language_id, task.path, region, prepared.expected_region, original, follows=follows
    )
    return checked.reason


def syntax_errors(text: str, language_id: str, path: str) -> int:
    parser = get_parser(language_id, path)
    if parser is None:
        return 0
    return count_errors(parser.parse(text.encode("utf-8", "surrogatepass"))).nodes


def result_region(prepared: Prepared, new_text: str) -> str:
    """The region's lines in the document after the shown edits (they all lie inside the region)."""
    return new_text[prepared.region.start : len(new_text) - (len(prepared.task.text) - prepared.region.end)]


def score(prepared: Prepared, answer: NextEditAnswer) -> dict[str, Any]:
    """One task's record: the scores, the reason when nothing was shown, and what the engine did."""
    task = prepared.task
    if (answer.region.start, answer.region.end) != (prepared.region.start, prepared.region.end):
        raise AssertionError(f"{task.task_id}: the engine used another region than the harness computed")
    new_text = apply_replacements(task.text, answer.replacements)
    got = result_region(prepared, new_text)
    shown = bool(answer.replacements)
    adds_error = None
    if shown:
        before = syntax_errors(task.text, task.language_id, task.path)
        adds_error = syntax_errors(new_text, task.language_id, task.path) > before
    generation = answer.generation
    perfect = perfect_reason(prepared, answer.format)
    return {
        "task_id": task.task_id,
        "repo": task.repo,
        "split": task.split,
        "commit": task.commit,
        "path": task.path,
        "relation": task.relation,
        "gap": task.gap,
        "shown": shown,
        "reason": answer.reason if not shown else "",
        "exact_match": exact_match(got, prepared.expected_region),
        "edit_similarity": round(edit_similarity(got, prepared.expected_region), 4),
        "unchanged_similarity": round(edit_similarity(prepared.region.text, prepared.expected_region), 4),
        "adds_syntax_error": adds_error,
        "perfect_shown": not perfect,
        "perfect_reason": perfect,
        "format": answer.format,
        "history": {"line": task.first_line, "before": task.first_before, "after": task.first_after},
        "region": prepared.region.text,
        "expected": prepared.expected_region,
        "result": got,
        "rewritten": answer.rewritten,
        "stats": {
            "prompt_tokens": generation.prompt_tokens if generation is not None else 0,
            "generated_tokens": generation.generated_tokens if generation is not None else 0,
            **{f"{k}_ms": round(v, 1) for k, v in answer.timings_ms.items()},
        },
    }


def run_suite(
    predict: Predict, tasks: Sequence[Prepared], settings: Settings, progress: Progress
) -> list[dict[str, Any]]:
    records = []
    started = time.monotonic()
    for i, prepared in enumerate(tasks, 1):
        answer = predict(request_for(prepared.task, settings))
        record = score(prepared, answer)
        records.append(record)
        outcome = "exact" if record["exact_match"] else f"es {record['edit_similarity']:.2f}"
        shown = "shown" if record["shown"] else f"nothing shown: {record['reason']}"
        progress(
            f"[next-edit {i}/{len(tasks)}] {record['task_id']}: {shown}, {outcome}, "
            f"{(time.monotonic() - started) / i:.1f} s/task"
        )
    return records


# -- the tasks ----------------------------------------------------------------------------------------------------


@dataclass
class Mined:
    tasks: list[Prepared]
    repositories: list[dict[str, Any]]  # per history: where from, its head, pairs mined, reachable, drawn


def build(
    histories: Sequence[History],
    settings: Settings,
    limit: int | None,
    per_repo: int | None,
    seed: int,
    max_commits: int = DEFAULT_MAX_COMMITS,
) -> Mined:
    """Each history's tasks whose second hunk the region reaches, drawn with `seed`: `per_repo` from each, or
    `limit` in all spread over the repositories (None: all)."""
    groups: list[list[Prepared]] = []
    described = []
    names = [h.name for h in histories]
    for history in histories:
        if names.count(history.name) > 1:
            raise NextEditTaskError(f"Two next-edit repositories are both named {history.name!r}.")
        mined = mine_repository(history.root, history.name, history.split, max_commits=max_commits)
        reachable = [p for t in mined if (p := prepare(t, settings.next_edit_lines)) is not None]
        drawn = sample([p.task for p in reachable], per_repo, seed)
        index = {p.task.task_id: p for p in reachable}
        groups.append([index[t.task_id] for t in drawn])
        described.append(
            {
                "repo": history.name,
                "split": history.split,
                "source": history.source,
                "path": str(history.root),
                "head": Git(history.root).head(),
                "pairs": len(mined),
                "reachable": len(reachable),
            }
        )
    tasks = interleave_prepared(groups, None if per_repo else limit)
    for entry in described:
        entry["drawn"] = sum(1 for p in tasks if p.task.repo == entry["repo"])
    return Mined(tasks, described)


def interleave_prepared(groups: Sequence[Sequence[Prepared]], limit: int | None) -> list[Prepared]:
    index = {p.task.task_id: p for group in groups for p in group}
    return [index[t.task_id] for t in interleave([[p.task for p in g] for g in groups], limit)]


# -- the report ---------------------------------------------------------------------------------------------------


def _members(records: Sequence[Mapping[str, Any]], split: str, repo: str) -> list[Mapping[str, Any]]:
    return [r for r in records if (split == ALL or r.get("split") == split) and (repo == ALL or r.get("repo") == repo)]


def describe(records: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(records)}
    strata = [str(r.get("repo", "")) for r in records]
    for metric in METRICS:
        interval = bootstrap_mean([float(r[metric]) for r in records], strata, seed)
        if interval is not None:
            out[metric] = interval.to_json()
    shown = [r for r in records if r["shown"]]
    out["shown_count"] = len(shown)
    out["adds_syntax_error"] = sum(1 for r in shown if r["adds_syntax_error"])
    out["reasons"] = dict(Counter(r["reason"] for r in records if not r["shown"]).most_common())
    out["mean_total_ms"] = rounded(mean([float(r["stats"]["total_ms"]) for r in records if "total_ms" in r["stats"]]))
    return out


def build_report(records: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """Per repository, per split and overall: each figure with its bootstrap interval (pooled figures resample
    within each repository), shown edits that added a syntax error, and the reasons nothing was shown."""
    groups = [
        {"split": split, "repo": repo, **describe(_members(records, split, repo), seed)}
        for split, repo in groups_of(records)
    ]
    return {
        "bootstrap": {"resamples": RESAMPLES, "confidence": CONFIDENCE, "seed": seed, "pooled": "within each repo"},
        "groups": groups,
    }


def _cell(figure: Mapping[str, float] | None) -> str:
    if not figure:
        return "-"
    mean_, low, high = (figure[k] * 100 for k in ("mean", "low", "high"))
    return f"{mean_:.1f} [{low:.1f}, {high:.1f}]"


def format_report(report: Mapping[str, Any]) -> str:
    """A row per repository, split and overall (rates and similarities in points, 0-100), then the reasons."""
    header = (
        "split", "repo", "n", "exact match", "edit similarity", "unchanged", "shown", "syntax err", "ceiling", "ms/task",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    for g in report["groups"]:
        ms = g.get("mean_total_ms")
        rows.append(
            (
                g["split"], g["repo"], str(g["n"]), _cell(g.get("exact_match")), _cell(g.get("edit_similarity")),
                _points(g.get("unchanged_similarity")), _points(g.get("shown")),
                f"{g['adds_syntax_error']}/{g['shown_count']}", _points(g.get("perfect_shown")),
                "-" if ms is None or math.isnan(ms) else f"{ms:.0f}",
            )
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    overall = report["groups"][-1] if report["groups"] else None
    if overall and overall["reasons"]:
        lines.append("")
        lines.append(f"nothing shown ({overall['split']}/{overall['repo']}):")
        lines.extend(f"  {count:4d}  {reason}" for reason, count in overall["reasons"].items())
    return "\n".join(line.rstrip() for line in lines)


def _points(figure: Mapping[str, float] | None) -> str:
    return f"{figure['mean'] * 100:.1f}" if figure else "-"


# -- the command ---------------------------------------------------------------------------------------------------


def histories_of(args: argparse.Namespace) -> list[History]:
    """`--next-edit-repo` paths, else the default histories of the `--repos` split(s)."""
    if args.next_edit_repo:
        return [parse_history(spec) for spec in args.next_edit_repo]
    return default_histories(args.repos, Path(args.repo_cache) if args.repo_cache else None)


def model_settings(settings: Settings) -> Settings:
    """The settings to load the next-edit model with: `nextEditModel` when set, else the completion model."""
    return settings.merged({"model": settings.next_edit_model}) if settings.next_edit_model else settings


def engine_predict(engine: Engine) -> Predict:
    """Predictions on the engine's model worker, as the server makes them (no deadline: quality should not depend
    on how loaded the machine is)."""

    def run(request: NextEditRequest) -> NextEditAnswer:
        return engine.runtime.run_sync(lambda backend: predict(backend, request, CancelToken()))

    return run


def run_with(engine: Engine, mined: Mined, settings: Settings, seed: int, progress: Progress) -> dict[str, Any]:
    """The suite on `engine`'s model, or on `nextEditModel` loaded for it when that is another file; the report."""
    wanted = model_settings(settings)
    own = Engine(wanted) if wanted.model != engine.settings.model else None
    used = own or engine
    started = time.monotonic()
    try:
        progress(f"next-edit model: {used.info.name} ({used.info.path})")
        records = run_suite(engine_predict(used), mined.tasks, settings, progress)
    finally:
        if own is not None:
            own.close()
    return {
        "model": {"name": used.info.name, "path": used.info.path},
        "next_edit_lines": settings.next_edit_lines,
        "context_sources": [],
        "repositories": mined.repositories,
        "seconds": round(time.monotonic() - started, 1),
        "report": build_report(records, seed),
        "tasks": records,
    }
