"""The repository suite's report: per repository, per split and overall, each figure with a bootstrap interval, and
each context setting's paired difference from the cursor window alone.

A hundred masked lines give an exact-match rate to within about +-8 points, so a difference of two points between two
runs says nothing by itself; the intervals show how much a figure may move with another draw of tasks. The paired
difference (the same task with and without context) is much tighter than the two intervals side by side, and the
teacher-forced log-probability of the true line is tighter still: it moves with every task, where exact match moves
only when a whole line flips.

Pure functions over the harness's task records (dicts with "task_id", "repo", "split" and the metrics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = ("exact_match", "edit_similarity", "target_logprob")
RESAMPLES = 2000
CONFIDENCE = 0.95
ALL = "all"  # the group of every task of a split, or of both splits


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def to_json(self, digits: int = 4) -> dict[str, float]:
        return {"mean": round(self.mean, digits), "low": round(self.low, digits), "high": round(self.high, digits)}


def bootstrap_mean(
    values: Sequence[float], strata: Sequence[str] | None = None, seed: int = 0, resamples: int = RESAMPLES
) -> Interval | None:
    """The mean of `values` and its percentile bootstrap interval. With `strata` (a repository per value) each
    resample draws within each stratum, keeping its size: a pooled figure then varies only as the tasks of each
    repository could, not by how many tasks each repository happened to get."""
    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    if strata is None:
        index = rng.integers(0, n, size=(resamples, n))
    else:
        labels = np.asarray(strata)
        parts = []
        for label in sorted(set(strata)):
            members = np.flatnonzero(labels == label)
            parts.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
        index = np.concatenate(parts, axis=1)
    means = data[index].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(data.mean()), float(low), float(high))


def _value(task: Mapping[str, Any], metric: str) -> float | None:
    value = task.get(metric)
    if value is None or isinstance(value, str):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def describe(tasks: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """n and each metric's mean with its interval (metrics the tasks do not have are left out)."""
    out: dict[str, Any] = {"n": len(tasks)}
    for metric in METRICS:
        pairs = [(v, str(t.get("repo", ""))) for t in tasks if (v := _value(t, metric)) is not None]
        interval = bootstrap_mean([v for v, _ in pairs], [r for _, r in pairs], seed) if pairs else None
        if interval is not None:
            out[metric] = interval.to_json()
    return out


def paired(tasks: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Per metric, the mean of (task with this setting - the same task with the baseline) and its interval; for the
    log-probability also on how many tasks the true line got likelier and less likely."""
    before = {t["task_id"]: t for t in baseline}
    matched = [(t, before[t["task_id"]]) for t in tasks if t["task_id"] in before]
    out: dict[str, Any] = {"n": len(matched)}
    for metric in METRICS:
        diffs: list[float] = []
        strata: list[str] = []
        for now, then in matched:
            a, b = _value(now, metric), _value(then, metric)
            if a is not None and b is not None:
                diffs.append(a - b)
                strata.append(str(now.get("repo", "")))
        interval = bootstrap_mean(diffs, strata, seed) if diffs else None
        if interval is None:
            continue
        out[metric] = interval.to_json()
        if metric == "target_logprob":
            out["likelier"] = sum(1 for d in diffs if d > 0)
            out["less_likely"] = sum(1 for d in diffs if d < 0)
    return out


def groups_of(tasks: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(split, repo) for each repository, then (split, ALL) for each split, then (ALL, ALL) when there are two."""
    splits: dict[str, list[str]] = {}
    for task in tasks:
        repos = splits.setdefault(str(task.get("split", "")), [])
        if task.get("repo", "") not in repos:
            repos.append(str(task.get("repo", "")))
    out = [(split, repo) for split, repos in splits.items() for repo in repos]
    out += [(split, ALL) for split, repos in splits.items() if len(repos) > 1]
    if len(splits) > 1:
        out.append((ALL, ALL))
    return out


def _members(tasks: Sequence[Mapping[str, Any]], split: str, repo: str) -> list[Mapping[str, Any]]:
    return [
        t for t in tasks if (split == ALL or t.get("split", "") == split) and (repo == ALL or t.get("repo", "") == repo)
    ]


def build_report(
    modes: Mapping[str, Sequence[Mapping[str, Any]]], baseline: str | None, seed: int = 0
) -> dict[str, Any]:
    """`modes`: the task records of each context setting (the same tasks in each). For every repository, split and
    overall: each setting's figures, and each setting's paired difference from `baseline` (None: no differences)."""
    first = next(iter(modes.values()), [])
    groups = []
    for split, repo in groups_of(first):
        entry: dict[str, Any] = {"split": split, "repo": repo, "modes": {}, "versus_baseline": {}}
        for mode, tasks in modes.items():
            entry["modes"][mode] = describe(_members(tasks, split, repo), seed)
        if baseline is not None and baseline in modes:
            base = _members(modes[baseline], split, repo)
            for mode, tasks in modes.items():
                if mode != baseline:
                    entry["versus_baseline"][mode] = paired(_members(tasks, split, repo), base, seed)
        groups.append(entry)
    return {
        "baseline": baseline,
        "bootstrap": {"resamples": RESAMPLES, "confidence": CONFIDENCE, "seed": seed, "pooled": "within each repo"},
        "groups": groups,
    }


# -- the table ------------------------------------------------------------------------------------------------


def _cell(figure: Mapping[str, float] | None, scale: float, digits: int, signed: bool = False) -> str:
    if not figure:
        return "-"
    sign = "+" if signed else ""
    mean, low, high = (figure[k] * scale for k in ("mean", "low", "high"))
    return f"{mean:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def format_report(report: Mapping[str, Any]) -> str:
    """One row per repository (and split, and overall) and setting, then a row per setting's difference from the
    baseline. Exact match and edit similarity in points (0-100), the log-probability in nats per line."""
    header = ("split", "repo", "context", "n", "exact match", "edit similarity", "log-prob of true line", "likelier")
    rows: list[tuple[str, ...]] = [header]
    baseline = report.get("baseline")
    for group in report["groups"]:
        where = (group["split"], group["repo"])
        for mode, fig in group["modes"].items():
            rows.append(
                (*where, mode, str(fig["n"]), _cell(fig.get("exact_match"), 100, 1),
                 _cell(fig.get("edit_similarity"), 100, 1), _cell(fig.get("target_logprob"), 1, 2), "")
            )  # fmt: skip
            where = ("", "")
        for mode, diff in group["versus_baseline"].items():
            likelier = f"{diff['likelier']}/{diff['n']}" if "likelier" in diff else ""
            rows.append(
                ("", "", f"{mode} - {baseline}", str(diff["n"]), _cell(diff.get("exact_match"), 100, 1, True),
                 _cell(diff.get("edit_similarity"), 100, 1, True), _cell(diff.get("target_logprob"), 1, 2, True),
                 likelier)
            )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
