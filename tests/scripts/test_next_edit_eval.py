"""`fimble eval --suite next-edit`: tasks mined from real git repositories built here, scored through the real
next-edit engine with a scripted model (a perfect oracle must score 100%, a model that changes nothing 0), the
release histories of the held-out split, and the command end to end on the tiny model."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

import fimble
from fimble.evaluation.next_edit_harness import (
    Predict,
    Prepared,
    build,
    build_report,
    format_report,
    prepare,
    run_suite,
)
from fimble.evaluation.next_edit_sources import RELEASES, History, default_histories, release_history
from fimble.evaluation.next_edit_tasks import (
    NEARBY,
    SHARES_IDENTIFIER,
    mine_repository,
    pairs_from_versions,
    sample,
    split_lines,
)
from fimble.evaluation.repo_sources import HELD_OUT, HELD_OUT_REPOS, TUNING
from fimble.model.backend import CancelToken
from fimble.next_edit.edit_formats import select_next_edit_format
from fimble.next_edit.predictor import NextEditAnswer, NextEditRequest, predict
from fimble.settings import Settings
from tests.agent.conftest import commit
from tests.scripted import ScriptedBackend
from tests.scripts.helpers import run_script
from tests.scripts.test_repo_sources import FIXTURE

GEOMETRY = """\
def area(width, height):
    return width * height


def report(width, height):
    value = area(width, height)
    print(value)
    return value
"""
# A parameter added, then the call a few lines below passing it: the edit a next-edit model should predict.
GEOMETRY_2 = (
    GEOMETRY.replace("def area(width, height):", "def area(width, height, scale):")
    .replace("return width * height", "return width * height * scale")
    .replace("value = area(width, height)", "value = area(width, height, scale=2)")
)
UNITS = "".join(f"UNIT_{i} = {i}\n" for i in range(30))
# Three changes: lines 2 and 6 (related), and line 28, too far from line 6 for the region to reach.
UNITS_2 = (
    UNITS.replace("UNIT_1 = 1", "UNIT_1 = 10")
    .replace("UNIT_5 = 5", "UNIT_5 = 50")
    .replace("UNIT_27 = 27", "UNIT_27 = 270")
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[git.Repo]:
    """A repository whose second commit changes a Python file in related places, and other files that give no
    tasks: text without a grammar, a vendored copy, a generated file."""
    root = tmp_path / "project"
    root.mkdir()
    repo = git.Repo.init(root)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Test Author")
        cw.set_value("user", "email", "test@example.com")
    vendored = "def f(a):\n    return a\n\n\n\ng = f(1)\n"
    generated = "# @generated\n" + vendored
    commit(repo, {"geometry.py": GEOMETRY, "units.py": UNITS, "notes.txt": "a\nb\nc\nd\n", "vendor/lib.py": vendored,
                  "gen.py": generated}, "initial")  # fmt: skip
    changed = vendored.replace("f(a)", "f(a, b)").replace("f(1)", "f(1, 2)")
    commit(repo, {"geometry.py": GEOMETRY_2, "units.py": UNITS_2, "notes.txt": "a\nB\nc\nD\n",
                  "vendor/lib.py": changed, "gen.py": "# @generated\n" + changed}, "scale the area")  # fmt: skip
    yield repo
    repo.close()


def test_pairs_of_hunks_from_two_versions() -> None:
    tasks = pairs_from_versions("r", TUNING, "c" * 40, "geometry.py", GEOMETRY, GEOMETRY_2)
    assert len(tasks) == 1  # the signature and its body line are one hunk; the call is the second
    task = tasks[0]
    doc = split_lines(task.text)
    # the document: the first hunk applied, not the second; the cursor at the end of the first hunk's last line
    assert doc[0] == "def area(width, height, scale):\n" and doc[5] == "    value = area(width, height)\n"
    assert task.text[: task.offset].endswith("return width * height * scale")
    assert (task.first_line, task.first_before, task.first_after) == (
        0, "def area(width, height):\n    return width * height\n",
        "def area(width, height, scale):\n    return width * height * scale\n",
    )  # fmt: skip
    assert task.expected == GEOMETRY_2
    assert task.text[task.second_start : task.second_end] == "    value = area(width, height)\n"
    assert task.relation == SHARES_IDENTIFIER and task.gap == 3 and task.task_id == "r@ccccccc:geometry.py:6"

    units = pairs_from_versions("r", TUNING, "c" * 40, "units.py", UNITS, UNITS_2)
    assert len(units) == 1 and units[0].relation == NEARBY  # 6 -> 28 is 21 lines apart: not a task
    assert units[0].expected == UNITS.replace("UNIT_1 = 1\n", "UNIT_1 = 10\n").replace("UNIT_5 = 5", "UNIT_5 = 50")
    assert len(pairs_from_versions("r", TUNING, "c" * 40, "units.py", UNITS, UNITS_2, max_gap=30)) == 2
    # blank lines added are layout, not an edit to predict; a file without a final newline is left alone
    assert pairs_from_versions("r", TUNING, "c", "a.py", "a = 1\nb = 2\nc = 3\n", "a = 1\n\nb = 2\n\nc = 3\n") == []
    assert pairs_from_versions("r", TUNING, "c", "a.py", "a = 1\nb = 2\nc = 3", "a = 2\nb = 2\nc = 4") == []
    assert split_lines("a\x0cb\nc") == ["a\x0cb\n", "c"]  # a form feed is not a line break to git or an editor


def test_mining_a_repository_keeps_source_with_a_grammar_only(project: git.Repo) -> None:
    root = Path(project.working_tree_dir or "")
    tasks = mine_repository(root, "project", TUNING)
    assert sorted(t.path for t in tasks) == ["geometry.py", "units.py"]  # not the text, vendored or generated files
    assert {t.commit for t in tasks} == {project.head.commit.hexsha}
    # deterministic draws that differ with the seed only in order
    assert [t.task_id for t in sample(tasks, None, 1)] == [t.task_id for t in sample(tasks, None, 1)]
    assert sorted(t.task_id for t in sample(tasks, None, 2)) == sorted(t.task_id for t in tasks)
    assert len(sample(tasks, 1, 0)) == 1


SWEEP_TOKENS = ("<|file_sep|>", "<|fim_prefix|>", "<|endoftext|>")


def _oracle(tasks: list[Prepared]) -> tuple[list[str], Predict]:
    """A predictor whose scripted model writes, in the engine's own format, exactly the expected region."""
    by_place = {(p.task.path, p.task.text, p.task.offset): p for p in tasks}
    formats: list[str] = []

    def run(request: NextEditRequest) -> NextEditAnswer:
        prepared = by_place[(request.path, request.text, request.offset)]
        # A model trained for next edits (Sweep's tokens and name): the generic format's extra gate for models
        # that are not does not apply to it.
        backend = ScriptedBackend(specials=SWEEP_TOKENS, name="sweep-next-edit-oracle")
        fmt = select_next_edit_format(backend)
        formats.append(fmt.name)
        backend.answers = [fmt.answer_for(prepared.expected_region)]
        return predict(backend, request, CancelToken())

    return formats, run


def test_a_perfect_oracle_scores_100_and_a_model_that_changes_nothing_0(project: git.Repo) -> None:
    root = Path(project.working_tree_dir or "")
    settings = Settings()
    mined = build([History("project", TUNING, root, "here")], settings, None, None, 0)
    assert [r["pairs"] for r in mined.repositories] == [2] and len(mined.tasks) == 2
    formats, oracle = _oracle(mined.tasks)
    records = run_suite(oracle, mined.tasks, settings, lambda _: None)
    assert formats == ["sweep", "sweep"] and all(r["shown"] for r in records), [r["reason"] for r in records]
    assert all(r["exact_match"] and r["edit_similarity"] == 1.0 for r in records)
    assert all(r["adds_syntax_error"] is False and r["perfect_shown"] for r in records)
    assert all(r["unchanged_similarity"] < 1.0 for r in records)  # showing nothing would not have scored this
    overall = build_report(records, 0)["groups"][-1]
    assert overall["exact_match"]["mean"] == 1.0 and overall["shown"]["mean"] == 1.0
    assert overall["adds_syntax_error"] == 0 and overall["reasons"] == {}

    def unchanged(request: NextEditRequest) -> NextEditAnswer:
        backend = ScriptedBackend()
        prepared = prepare(next(p.task for p in mined.tasks if p.task.text == request.text), 21)
        assert prepared is not None
        backend.answers = [select_next_edit_format(backend).answer_for(prepared.region.text)]
        return predict(backend, request, CancelToken())

    records = run_suite(unchanged, mined.tasks, settings, lambda _: None)
    assert not any(r["shown"] or r["exact_match"] for r in records)
    assert all(r["adds_syntax_error"] is None and r["edit_similarity"] == r["unchanged_similarity"] for r in records)
    report = build_report(records, 0)
    overall = report["groups"][-1]
    assert overall["exact_match"]["mean"] == 0.0 and overall["shown"]["mean"] == 0.0
    assert overall["reasons"] == {"the model wrote the region unchanged": 2}
    table = format_report(report)
    assert "exact match" in table and "   2  the model wrote the region unchanged" in table


def test_a_task_the_region_cannot_reach_is_not_asked(project: git.Repo) -> None:
    (task,) = pairs_from_versions("r", TUNING, "c" * 40, "units.py", UNITS, UNITS_2)
    assert prepare(task, 21) is not None
    assert prepare(task, 3) is None  # the second hunk is 3 lines below the cursor: outside a 3-line region
    prepared = prepare(task, 21)
    assert prepared is not None
    assert prepared.expected_region.count("\n") == prepared.region.text.count("\n")
    assert "UNIT_5 = 50\n" in prepared.expected_region and "UNIT_5 = 5\n" in prepared.region.text


def _sdist(index: Path, version: str, edit: dict[str, list[tuple[str, str]]]) -> None:
    """The tinyshapes fixture as source distribution `version`, with (old, new) replacements in some files."""
    with tarfile.open(index / f"tinyshapes-{version}.tar.gz", "w:gz") as tf:
        for path in sorted(FIXTURE.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            rel = path.relative_to(FIXTURE).as_posix()
            data = path.read_text(encoding="utf-8")
            for old, new in edit.get(rel, []):
                data = data.replace(old, new)
            if rel in ("pyproject.toml", "backend.py"):
                data = data.replace("0.1", version)  # the metadata pip checks against the file name
            info = tarfile.TarInfo(f"tinyshapes-{version}/{rel}")
            raw = data.encode()
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))


def test_a_release_history_is_one_commit_per_source_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "index"
    index.mkdir()
    _sdist(index, "0.1", {})
    renamed = [("self.side = side", "self.length = side"), ("self.side * self.side", "self.length * self.length")]
    _sdist(index, "0.2", {"src/tinyshapes/shapes.py": renamed})
    _sdist(index, "0.3", {"src/tinyshapes/shapes.py": renamed, "src/tinyshapes/draw.py": [("\n", "\n\n")]})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    cache = tmp_path / "cache"
    root = release_history("tinyshapes", ("0.1", "0.2", "0.3"), cache)
    repo = git.Repo(root)
    assert [c.message.strip() for c in repo.iter_commits()] == ["tinyshapes 0.3", "tinyshapes 0.2", "tinyshapes 0.1"]
    assert "PKG-INFO" not in {e.path for e in repo.head.commit.tree.traverse()}  # type: ignore[union-attr]
    head = repo.head.commit.hexsha
    repo.close()
    # built once: a second call uses it (the index can be gone), and the commit ids do not depend on when it was built
    for archive in index.iterdir():
        archive.unlink()
    assert release_history("tinyshapes", ("0.1", "0.2", "0.3"), cache) == root
    tasks = mine_repository(root, "tinyshapes", HELD_OUT)
    assert {t.path for t in tasks} == {"src/tinyshapes/shapes.py"}
    assert all(t.commit != head for t in tasks)  # 0.3 only added blank lines
    assert git.Repo(root).head.commit.hexsha == head


def test_the_default_histories() -> None:
    """Tuning: fimble's own history, from the checkout it runs from; held-out: release histories ending at the
    versions the repository suite pins."""
    (tuning,) = default_histories(TUNING)
    assert (tuning.name, tuning.split) == ("fimble", TUNING)
    assert tuning.root == Path(fimble.__file__).resolve().parents[2] and (tuning.root / ".git").exists()
    assert set(RELEASES) == {r.dist for r in HELD_OUT_REPOS}
    for repo in HELD_OUT_REPOS:
        assert RELEASES[repo.dist][-1] == repo.version and len(RELEASES[repo.dist]) >= 3


def test_the_command_on_the_tiny_model(project: git.Repo, tmp_path: Path, tiny_model: Path) -> None:
    root = Path(project.working_tree_dir or "")
    out = tmp_path / "next-edit.json"
    result = run_script(
        "eval.py", "--suite", "next-edit", "--next-edit-repo", str(root), "--next-edit-repo", f"held-out:{root}/.",
        "--model", str(tiny_model), "--limit", "3", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 2 and "both named 'project'" in result.stderr
    result = run_script(
        "eval.py", "--suite", "next-edit", "--next-edit-repo", str(root), "--model", str(tiny_model), "--limit", "3",
        "--seed", "4", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 pairs of hunks, 2 within the editable region, 2 drawn" in result.stderr
    assert "exact match" in result.stdout and "pass@1" not in result.stdout  # only this suite's table
    report = json.loads(out.read_text())
    section = report["next_edit"]
    assert section["model"]["name"] == "tiny-plain" and report["results"] == []
    assert [(r["repo"], r["split"], r["head"]) for r in section["repositories"]] == [
        ("project", TUNING, project.head.commit.hexsha)
    ]
    tasks = section["tasks"]
    assert len(tasks) == 2 and {t["path"] for t in tasks} == {"geometry.py", "units.py"}
    for task in tasks:
        assert task["shown"] or task["reason"]  # a reason for every empty answer
        assert task["adds_syntax_error"] in (None, False)
        # The tiny model gets the generic format, whose gate drops even a perfect edit that shares no name with
        # the first one: the ceiling says so.
        follows = task["perfect_reason"] == "the edit does not follow the user's recent edits"
        assert (task["perfect_shown"] or follows) and task["stats"]["prompt_tokens"] > 0
    overall = section["report"]["groups"][-1]
    assert overall["n"] == 2 and sum(overall["reasons"].values()) == 2 - overall["shown_count"]


def test_bad_repositories_exit_2(tmp_path: Path) -> None:
    result = run_script("eval.py", "--suite", "next-edit", "--next-edit-repo", str(tmp_path / "missing"))
    assert result.returncode == 2 and "No folder" in result.stderr
    result = run_script("eval.py", "--suite", "next-edit", "--next-edit-repo", str(tmp_path))
    assert result.returncode == 2 and "not a git repository" in result.stderr and "Traceback" not in result.stderr
