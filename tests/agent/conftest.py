"""Fixtures for the agent's tests: a scripted model behind a real ModelRuntime, and throwaway git repositories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import git
import pytest

from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings
from tests.scripted import Answer, ScriptedBackend, scripted_factory

RuntimeFactory = Callable[..., tuple[ModelRuntime, ScriptedBackend]]


@pytest.fixture
def scripted() -> Iterator[RuntimeFactory]:
    """make(answers, **backend_options) -> (runtime, backend): the runtime drives the scripted backend on its worker
    thread exactly as it drives llama.cpp."""
    runtimes: list[ModelRuntime] = []

    def make(answers: list[Answer], **options: object) -> tuple[ModelRuntime, ScriptedBackend]:
        backend = ScriptedBackend(answers=list(answers), **options)  # type: ignore[arg-type]
        runtime = ModelRuntime(factory=scripted_factory(backend))
        runtime.load(Settings(model="scripted"))
        runtimes.append(runtime)
        return runtime, backend

    yield make
    for runtime in runtimes:
        runtime.shutdown()


def commit(repo: git.Repo, files: dict[str, str], message: str, date: str | None = None) -> git.Commit:
    root = Path(repo.working_tree_dir or "")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    repo.index.add(list(files))
    if date is None:
        return repo.index.commit(message)
    return repo.index.commit(message, author_date=date, commit_date=date)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[git.Repo]:
    root = tmp_path / "project"
    root.mkdir()
    r = git.Repo.init(root)
    with r.config_writer() as cw:
        cw.set_value("user", "name", "Test Author")
        cw.set_value("user", "email", "test@example.com")
    yield r
    r.close()


def worktrees(repo: git.Repo) -> list[str]:
    """Paths of the repository's worktrees besides the main one."""
    out = repo.git.worktree("list", "--porcelain")
    paths = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]
    return paths[1:]
