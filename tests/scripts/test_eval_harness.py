"""`fimble eval` / scripts/eval.py: scoring with a scripted completer, and the whole harness on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from fimble.evaluation.harness import SuiteResult, run_humaneval
from fimble.evaluation.humaneval import candidate
from fimble.evaluation.metrics import edit_similarity, percentile
from fimble.evaluation.sandbox import Limits
from fimble.settings import Settings
from tests.scripted import ScriptedCompleter
from tests.scripts.helpers import TASKS, run_script, write_dataset
from tests.scripts.test_repo_sources import make_index


def test_scoring_counts_a_right_answer_and_a_wrong_one() -> None:
    right, wrong, empty = TASKS
    answers = {
        right.prompt: right.canonical_solution.rstrip("\n") + "\n    # and more\n",  # extra lines: first one scored
        wrong.prompt: "        if x % 2 == 1:",
    }
    out = run_humaneval(ScriptedCompleter(answers), "humaneval-single", TASKS, Settings(), Limits(), lambda _: None)
    assert isinstance(out, SuiteResult)
    by_id = {t["task_id"]: t for t in out.tasks}
    assert by_id[right.task_id]["passed"] and by_id[right.task_id]["exact_match"]
    assert not by_id[wrong.task_id]["passed"] and not by_id[wrong.task_id]["exact_match"]
    assert by_id[empty.task_id]["status"] == "failed" and by_id[empty.task_id]["suggestion"] == ""
    summary = out.summary()
    assert summary["n"] == 3 and summary["pass_at_1"] == round(1 / 3, 4) and summary["exact_match"] == round(1 / 3, 4)


def test_candidate_and_metrics() -> None:
    assert candidate("humaneval-single", "\n    return x\n    y = 1") == "    return x"
    assert candidate("humaneval-multi", "    a = 1\n    b = 2\n") == "    a = 1\n    b = 2"
    assert edit_similarity("abc", "abc") == 1.0 and edit_similarity("", "abcd") == 0.0
    assert edit_similarity("return x", "return y") == 1 - 1 / 8
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([5], 95) == 5


def test_eval_on_three_tasks_with_the_tiny_model(tmp_path: Path, tiny_model: Path) -> None:
    data = write_dataset(tmp_path / "humaneval")
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("def helper(x):\n    return x + 1\n")
    (pkg / "main.py").write_text("from .util import helper\n\n\ndef run(y):\n    value = helper(y)\n    return value\n")
    out = tmp_path / "results.json"
    result = run_script(
        "eval.py", "--model", str(tiny_model), "--humaneval", str(data), "--repo-source", str(pkg),
        "--limit", "3", "--max-tokens", "8", "--seed", "1", "--out", str(out), "--keep-prompts",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "humaneval-single" in result.stdout and "pass@1" in result.stdout  # the table
    report = json.loads(out.read_text())
    assert report["model"]["name"] == "tiny-plain" and report["seed"] == 1 and report["limit"] == 3
    suites = [(r["suite"], r["context"]) for r in report["results"]]
    assert suites == [
        ("humaneval-single", "scope,definitions,similar,ring,git"),
        ("humaneval-multi", "scope,definitions,similar,ring,git"),
        ("repo", "all"),
        ("repo", "none"),
    ]
    single = report["results"][0]
    assert single["summary"]["n"] == 3 and set(single["summary"]) >= {"pass_at_1", "exact_match", "status"}
    task = single["tasks"][0]
    assert set(task) >= {"task_id", "suggestion", "scored", "passed", "status", "exact_match", "stats"}
    assert task["stats"]["prompt_tokens"] > 0 and "cursor window" in task["stats"]["prompt_parts"]
    repo_on, repo_off = report["results"][2:]
    assert repo_on["summary"]["n"] == 1 and repo_on["tasks"][0]["target"] == "value = helper(y)"
    assert "edit_similarity" in repo_on["summary"]
    # the true line's log-probability under each prompt (teacher forcing), and which prompt made it likelier
    for suite in (repo_on, repo_off):
        assert -1e4 < suite["tasks"][0]["target_logprob"] < 0
        assert suite["summary"]["mean_target_logprob"] == round(suite["tasks"][0]["target_logprob"], 2)
    assert sum(report["repo_context_vs_none"].values()) == 1
    assert "context made the true line likelier on" in result.stdout
    assert list(repo_off["tasks"][0]["stats"]["prompt_parts"]) == ["cursor window"]
    # --keep-prompts: the exact prompt, where the cross-file definition shows up only with context on
    assert "def helper(x)" in repo_on["tasks"][0]["prompt"]
    assert "def helper(x)" not in repo_off["tasks"][0]["prompt"]
    assert repo_off["tasks"][0]["prompt"].endswith("def run(y):\n    ")


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    result = run_script("eval.py", "--suite", "nonsense")
    assert result.returncode == 2 and "Unknown suite" in result.stderr
    result = run_script("eval.py", "--suite", "humaneval-single")
    assert result.returncode == 2 and "--humaneval" in result.stderr
    result = run_script("eval.py", "--suite", "humaneval-single", "--humaneval", str(tmp_path))
    assert result.returncode == 2 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_repo_suite_with_a_held_out_source_distribution(tmp_path: Path, tiny_model: Path) -> None:
    """`fimble eval --suite repo` end to end: a tuning package folder and a held-out source distribution fetched by
    pip (from a local folder standing in for the package index), each setting scored and reported per repository,
    per split and overall with intervals; then the report again from the saved runs, without a model."""
    tuning = tmp_path / "src" / "pkg"
    tuning.mkdir(parents=True)
    (tuning / "__init__.py").write_text("")
    (tuning / "util.py").write_text("def helper(x):\n    return x + 1\n")
    (tuning / "main.py").write_text(
        "from .util import helper\n\n\ndef run(y):\n    value = helper(y)\n    other = helper(value)\n    return other\n"
    )
    index = make_index(tmp_path / "index")
    out = tmp_path / "results.json"
    cache = tmp_path / "cache"
    result = run_script(
        "eval.py", "--model", str(tiny_model), "--suite", "repo", "--repo-source", str(tuning),
        "--repo-source", "tinyshapes==0.1", "--repo-cache", str(cache), "--per-repo", "3", "--max-tokens", "6",
        "--mode", "all", "--mode", "all-similar", "--mode", "none", "--out", str(out),
        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["per_repo"] == 3
    assert [(r["package"], r["split"], r["source"]) for r in report["repositories"]] == [
        ("pkg", "tuning", str(tuning)),
        ("tinyshapes", "held-out", "tinyshapes==0.1"),
    ]
    runs = {r["context"]: r for r in report["results"]}
    assert list(runs) == ["all", "all-similar", "none"]
    tasks = runs["all"]["tasks"]
    assert {(t["repo"], t["split"]) for t in tasks} == {("pkg", "tuning"), ("tinyshapes", "held-out")}
    assert sum(t["repo"] == "pkg" for t in tasks) == 2 and sum(t["repo"] == "tinyshapes" for t in tasks) == 3
    groups = {(g["split"], g["repo"]): g for g in report["repo_report"]["groups"]}
    assert set(groups) == {("tuning", "pkg"), ("held-out", "tinyshapes"), ("all", "all")}
    held_out = groups[("held-out", "tinyshapes")]
    assert held_out["modes"]["none"]["n"] == 3
    for metric in ("exact_match", "edit_similarity", "target_logprob"):
        figure = held_out["modes"]["all"][metric]
        assert figure["low"] <= figure["mean"] <= figure["high"]
        assert metric in held_out["versus_baseline"]["all-similar"]
    assert "all - none" in result.stdout and "tinyshapes" in result.stdout
    # the sdist was unpacked once; the package's own folder was masked, not its tests' namesake
    assert (cache / "tinyshapes-0.1" / ".complete").is_file()
    assert all(t["task_id"].startswith("tinyshapes/") for t in tasks if t["repo"] == "tinyshapes")

    again = run_script("eval.py", "--report-from", str(out), "--seed", "0")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == result.stdout.strip().split("\n\n", 1)[1].strip()


def test_score_only_run_and_a_bad_mode(tmp_path: Path, tiny_model: Path) -> None:
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("def helper(x):\n    return x + 1\n")
    (pkg / "main.py").write_text("from .util import helper\n\n\ndef run(y):\n    value = helper(y)\n    return value\n")
    out = tmp_path / "results.json"
    result = run_script(
        "eval.py", "--model", str(tiny_model), "--suite", "repo", "--repo-source", str(pkg), "--score-only",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["score_only"] and [r["context"] for r in report["results"]] == ["all", "none"]
    task = report["results"][0]["tasks"][0]
    assert "suggestion" not in task and -1e4 < task["target_logprob"] < 0
    bad = run_script("eval.py", "--suite", "repo", "--repo-source", str(pkg), "--mode", "scope,nonsense")
    assert bad.returncode == 2 and "Unknown --mode" in bad.stderr


def test_a_memo_answers_the_prompts_an_earlier_run_sent(tmp_path: Path, tiny_model: Path) -> None:
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("def helper(x):\n    return x + 1\n")
    (pkg / "main.py").write_text(
        "from .util import helper\n\n\ndef run(y):\n    value = helper(y)\n    other = helper(value)\n    return other\n"
    )
    memo = tmp_path / "memo.jsonl"
    runs = []
    for name in ("first", "second"):
        out = tmp_path / f"{name}.json"
        result = run_script(
            "eval.py", "--model", str(tiny_model), "--suite", "repo", "--repo-source", str(pkg), "--max-tokens", "6",
            "--memo", str(memo), "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(out.read_text()))
    first, second = runs
    tasks = 2 * len(first["results"][0]["tasks"])
    # per task and setting: one generation and one scoring
    assert first["memo"]["asked"] == 2 * tasks and first["memo"]["answered"] == 0
    assert second["memo"]["asked"] == 0 and second["memo"]["answered"] == 2 * tasks
    for a, b in zip(first["results"], second["results"], strict=True):
        for x, y in zip(a["tasks"], b["tasks"], strict=True):
            assert (x["suggestion"], x["target_logprob"]) == (y["suggestion"], y["target_logprob"])
    # another model file is another model: nothing carries over
    other = tmp_path / "other.gguf"
    other.write_bytes(tiny_model.read_bytes())
    out = tmp_path / "third.json"
    result = run_script(
        "eval.py", "--model", str(other), "--suite", "repo", "--repo-source", str(pkg), "--max-tokens", "6",
        "--memo", str(memo), "--out", str(out), "--mode", "none",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["memo"]["answered"] == 0
