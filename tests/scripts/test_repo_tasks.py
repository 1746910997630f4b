"""The repository-level task builder on a small fixture package, and the masked workspace copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from fimble.evaluation.harness import Checkpoint, run_repo
from fimble.evaluation.repo_tasks import RepoTask, SourceTree, Workspace, build_tasks, interleave, source_tree
from fimble.settings import Settings
from tests.scripted import ScriptedCompleter

FILES = {
    "__init__.py": "from .models import Thing\n",
    "models.py": (
        "LIMIT = 10\n\n\nclass Thing:\n    def __init__(self, size):\n        self.size = size\n\n\n"
        "def make(size):\n    return Thing(size)\n"
    ),
    "sub/__init__.py": "",
    "sub/tools.py": "def double(x):\n    return 2 * x\n",
    "app.py": (
        "from . import models\n"
        "from pkg.sub.tools import double\n"
        "from pkg import Thing\n"
        "\n\n"
        "def local_helper(x):\n"
        "    return x\n"
        "\n\n"
        "def build(n):\n"
        "    thing = models.make(n)\n"
        "    size = double(thing.size)  # a trailing comment: not a whole-statement line\n"
        "    other = local_helper(n)\n"
        "    if n > models.LIMIT:\n"
        "        raise ValueError(n)\n"
        "    assert isinstance(thing, Thing)\n"
        "    return double(size) + other\n"
    ),
}


@pytest.fixture
def package(tmp_path: Path) -> SourceTree:
    root = tmp_path / "pkg"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return source_tree(str(root))


def test_masks_lines_that_use_names_from_other_files(package: SourceTree) -> None:
    tasks = {t.target: t for t in build_tasks(package, per_file=None)}
    assert set(tasks) == {
        "thing = models.make(n)",  # module alias + attribute defined in models.py
        "if n > models.LIMIT:",  # a one-line compound header
        "assert isinstance(thing, Thing)",  # re-exported through pkg/__init__.py, defined in models.py
        "return double(size) + other",  # absolute import from a subpackage
    }
    # Not masked: names from the same file (local_helper), a line with a trailing comment, multi-line headers.
    task = tasks["thing = models.make(n)"]
    assert task.rel_path == "pkg/app.py" and task.package == "pkg" and task.task_id == "pkg/app.py:11"
    assert task.names == ("models.make",)
    assert task.prefix.endswith("def build(n):\n    ") and task.suffix.startswith("\n    size = double(")
    assert task.text == FILES["app.py"].replace("thing = models.make(n)", "", 1)
    assert task.text[task.offset - 4 : task.offset] == "    "
    assert tasks["return double(size) + other"].names == ("double",)
    assert tasks["assert isinstance(thing, Thing)"].names == ("Thing",)


def test_selection_is_seeded_and_spread_over_files(package: SourceTree) -> None:
    first = build_tasks(package, seed=3)
    assert first == build_tasks(package, seed=3)
    assert len(first) == 4  # every candidate, all in app.py
    assert build_tasks(package, limit=1, seed=3) == first[:1]
    assert build_tasks(package, seed=3, per_file=2) == first[:2]
    a = [_task("a", i) for i in range(3)]
    b = [_task("b", i) for i in range(1)]
    assert [t.task_id for t in interleave([a, b], None)] == ["a0", "b0", "a1", "a2"]
    assert len(interleave([a, b], 2)) == 2


def test_a_short_draw_takes_one_line_from_each_file_first(tmp_path: Path) -> None:
    root = tmp_path / "many"
    (root / "__init__.py").parent.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "base.py").write_text("def f(x):\n    return x\n")
    for n in range(4):
        body = "".join(f"    v{i} = f({i} + n)\n" for i in range(5))
        (root / f"user{n}.py").write_text(f"from .base import f\n\n\ndef g(n):\n{body}    return n\n")
    tree = source_tree(str(root))
    tasks = build_tasks(tree, seed=1)
    assert len(tasks) == 20
    assert len({t.rel_path for t in tasks[:4]}) == 4  # one from each file before a second from any
    assert {t.rel_path for t in tasks[4:8]} == {t.rel_path for t in tasks[:4]}
    assert build_tasks(tree, seed=2) != tasks  # another seed, another draw


def test_workspace_holds_the_masked_file_only_while_completing(package: SourceTree) -> None:
    right = build_tasks(package)[0]
    ws = Workspace(package)
    try:
        copy = ws.root / "pkg" / "app.py"
        assert copy.read_text() == FILES["app.py"]
        with ws.masked(right) as path:
            assert path == copy and copy.read_text() == right.text
        assert copy.read_text() == FILES["app.py"]
    finally:
        ws.close()
    assert not ws.root.exists() and (package.path / "app.py").read_text() == FILES["app.py"]


def test_repo_suite_scores_the_first_line(package: SourceTree) -> None:
    right, wrong = build_tasks(package, per_file=2)
    # The first line of a suggestion is scored; later lines are the model running on.
    engine = ScriptedCompleter({right.prefix: right.target + "\n    more()", wrong.prefix: "print(n)"})
    result = run_repo(engine, [right, wrong], {"pkg": package}, Settings(), lambda _: None, splits={"pkg": "tuning"})
    # ScriptedCompleter checks that the file on disk is the masked text during each call; the index is told both ways.
    assert [rel for _, rel, _ in engine.calls] == ["pkg/app.py", "pkg/app.py"]
    assert engine.changed == ["pkg/app.py"] * 4
    # run in file order (the window-only prompts of one file share their start), whatever order they were drawn in
    assert [offset for _, _, offset in engine.calls] == sorted(t.offset for t in (right, wrong))
    by_id = {t["task_id"]: t for t in result.tasks}
    first, second = by_id[right.task_id], by_id[wrong.task_id]
    assert first["exact_match"] and first["edit_similarity"] == 1.0 and first["scored"] == right.target
    assert not second["exact_match"] and second["edit_similarity"] < 0.5
    assert first["repo"] == "pkg" and first["split"] == "tuning"
    summary = result.summary()
    assert summary["n"] == 2 and summary["exact_match"] == 0.5 and summary["edit_similarity"] is not None


def test_score_only_builds_prompts_without_generating(package: SourceTree) -> None:
    tasks = build_tasks(package, per_file=2)
    engine = ScriptedCompleter({})
    result = run_repo(engine, tasks, {"pkg": package}, Settings(), lambda _: None, score_only=True, label="x")
    assert result.context == "x" and not engine.calls and len(engine.prompts) == 2
    # the scripted prompt is the text before the cursor, one token a character
    prefixes = {t.task_id: len(t.prefix) for t in tasks}
    assert all("suggestion" not in t and t["stats"]["prompt_tokens"] == prefixes[t["task_id"]] for t in result.tasks)
    summary = result.summary()
    assert summary["n"] == 2 and summary["exact_match"] is None and summary["empty"] == 0


def test_unknown_package_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="not installed"):
        source_tree("no_such_package_for_fimble_tests")


def _task(prefix: str, i: int) -> RepoTask:
    return RepoTask(f"{prefix}{i}", prefix, "x.py", i, "", "", "t", ())


def test_a_stopped_run_resumes_from_its_checkpoint(package: SourceTree, tmp_path: Path) -> None:
    tasks = build_tasks(package, per_file=2)
    path = tmp_path / "out.json.partial.jsonl"
    first = ScriptedCompleter({t.prefix: t.target for t in tasks})
    run_repo(first, tasks[:1], {"pkg": package}, Settings(), lambda _: None, checkpoint=Checkpoint(path, False))
    path.write_text(path.read_text() + '{"mode": "all", "record": ')  # the line the kill cut short
    again = ScriptedCompleter({t.prefix: t.target for t in tasks})
    checkpoint = Checkpoint(path, resume=True)
    result = run_repo(again, tasks, {"pkg": package}, Settings(), lambda _: None, checkpoint=checkpoint)
    assert len(again.calls) == 1  # only the task the first run did not finish
    assert {t["task_id"] for t in result.tasks} == {t.task_id for t in tasks}
    assert all(t["exact_match"] for t in result.tasks)
    # another setting, or a score-only run, finds nothing of this one's
    assert not checkpoint.done("none", False) and not checkpoint.done(result.context, True)
    assert len(Checkpoint(path, resume=True).done(result.context, False)) == 2
    Checkpoint(path, resume=False)  # a fresh run starts a fresh file
    assert path.read_text() == ""
