"""The repository suite's report: bootstrap intervals, paired differences, groups per repository and split."""

from __future__ import annotations

from typing import Any

import pytest

from fimble.evaluation.report import ALL, bootstrap_mean, build_report, describe, format_report, groups_of, paired


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = [float(i % 7) for i in range(100)]
    a = bootstrap_mean(values, seed=3)
    assert a is not None and a == bootstrap_mean(values, seed=3)
    assert a.mean == pytest.approx(sum(values) / 100)
    assert a.low < a.mean < a.high
    b = bootstrap_mean(values, seed=4)
    assert b is not None and b != a and b.mean == a.mean  # the interval moves with the seed, the mean does not
    assert bootstrap_mean([], seed=0) is None
    constant = bootstrap_mean([0.5] * 10)
    assert constant is not None and constant.low == constant.high == 0.5


def test_the_interval_narrows_as_tasks_grow() -> None:
    small = bootstrap_mean([1.0, 0.0] * 10)
    large = bootstrap_mean([1.0, 0.0] * 500)
    assert small is not None and large is not None
    assert large.high - large.low < (small.high - small.low) / 4


def test_strata_resample_within_each_repository() -> None:
    # Two repositories whose tasks agree within each: drawing within each keeps the pooled mean fixed, whereas
    # drawing from the pool would move it with how many tasks of each a resample got.
    values = [1.0] * 10 + [0.0] * 30
    strata = ["a"] * 10 + ["b"] * 30
    within = bootstrap_mean(values, strata)
    pooled = bootstrap_mean(values)
    assert within is not None and pooled is not None
    assert within.low == within.high == 0.25
    assert pooled.low < 0.25 < pooled.high


def _task(task_id: str, repo: str, split: str, em: bool, es: float, lp: float | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"task_id": task_id, "repo": repo, "split": split, "exact_match": em, "edit_similarity": es}
    if lp is not None:
        task["target_logprob"] = lp
    return task


def _modes() -> dict[str, list[dict[str, Any]]]:
    none = [_task(f"{r}/{i}", r, s, i % 3 == 0, 0.4, -10.0) for r, s in (("p", "tuning"), ("q", "held-out"))
            for i in range(12)]  # fmt: skip
    # context: better on p by 0.1 similarity and 2 nats on every task, worse on q by 1 nat, the same exact matches
    ctx = [dict(t, edit_similarity=0.5, target_logprob=-8.0) if t["repo"] == "p" else dict(t, target_logprob=-11.0)
           for t in none]  # fmt: skip
    return {"all": ctx, "none": none}


def test_paired_differences_and_counts() -> None:
    modes = _modes()
    diff = paired(modes["all"], modes["none"])
    assert diff["n"] == 24
    assert diff["exact_match"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert diff["edit_similarity"]["mean"] == pytest.approx(0.05)
    assert diff["target_logprob"]["mean"] == pytest.approx(0.5)
    assert diff["likelier"] == 12 and diff["less_likely"] == 12
    # tasks only one side has are left out; a metric a side lacks is not compared
    no_scores = [{k: v for k, v in t.items() if k != "target_logprob"} for t in modes["all"][:5]]
    partial = paired(no_scores, modes["none"])
    assert partial["n"] == 5 and "target_logprob" not in partial and "likelier" not in partial


def test_report_groups_by_repository_split_and_overall() -> None:
    modes = _modes()
    assert groups_of(modes["none"]) == [("tuning", "p"), ("held-out", "q"), (ALL, ALL)]
    report = build_report(modes, "none", seed=1)
    assert report == build_report(modes, "none", seed=1)
    by_group = {(g["split"], g["repo"]): g for g in report["groups"]}
    assert set(by_group) == {("tuning", "p"), ("held-out", "q"), (ALL, ALL)}
    p = by_group[("tuning", "p")]
    assert p["modes"]["none"]["n"] == 12 and p["modes"]["none"]["exact_match"]["mean"] == round(4 / 12, 4)
    assert p["versus_baseline"]["all"]["target_logprob"]["mean"] == pytest.approx(2.0)
    assert by_group[("held-out", "q")]["versus_baseline"]["all"]["target_logprob"]["mean"] == pytest.approx(-1.0)
    assert "none" not in p["versus_baseline"]
    overall = by_group[(ALL, ALL)]
    assert overall["modes"]["all"]["n"] == 24
    assert overall["versus_baseline"]["all"]["edit_similarity"]["mean"] == pytest.approx(0.05)
    table = format_report(report)
    assert "all - none" in table and "held-out" in table
    assert "+2.00 [+2.00, +2.00]" in table  # p's log-probability gain, the same on every task
    assert "33.3 [" in table  # exact match in points


def test_a_split_with_several_repositories_gets_its_own_row() -> None:
    tasks = [_task(f"{r}/{i}", r, "held-out", False, 0.3) for r in ("a", "b") for i in range(3)]
    assert groups_of(tasks) == [("held-out", "a"), ("held-out", "b"), ("held-out", ALL)]
    assert describe(tasks)["n"] == 6 and "target_logprob" not in describe(tasks)
    report = build_report({"none": tasks}, None)
    assert all(not g["versus_baseline"] for g in report["groups"])
