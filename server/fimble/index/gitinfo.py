"""What git knows about a workspace, through GitPython: root, ignore rules, uncommitted hunks, co-change history.

Every call can fail (no git binary, a bare or corrupt repository, a huge history); each method then returns an empty
answer and the engine degrades to what it can do without git. Calls run git subprocesses, so they belong on the
indexing thread, never on the keystroke path.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

try:  # GitPython raises ImportError at import time when no git executable is found
    import git as _git

    _GIT_ERRORS: tuple[type[Exception], ...] = (_git.GitError, OSError, ValueError)
except ImportError:  # pragma: no cover - depends on the machine
    _git = None  # type: ignore[assignment]
    _GIT_ERRORS = (OSError, ValueError)
# A repository without commits has no HEAD: GitPython raises ValueError for that.
_HEAD_ERRORS: tuple[type[Exception], ...] = (*_GIT_ERRORS, AttributeError)

MAX_COMMITS = 400
MAX_FILES_PER_COMMIT = 24  # sweeping commits (renames, formatting) say nothing about which files belong together
MAX_DIFF_FILES = 64
MAX_DIFF_LINES_PER_FILE = 160

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class Hunk:
    path: str  # relative to the repository root, '/'-separated
    start: int  # 1-based first line of the hunk in the working-tree file
    lines: tuple[str, ...]  # the hunk's post-image: context and added lines, markers removed
    added: int
    removed: int


class GitInfo:
    """Git facts for a workspace folder, which may be the repository root or any folder inside it: commands run in
    the folder and paths are relative to it (`--relative`), so opening a subfolder of a monorepo indexes only it."""

    def __init__(self, repo: Any, cwd: Path) -> None:
        self._repo = repo
        self._cmd = _git.cmd.Git(str(cwd))
        self.root = cwd
        self.repo_root = Path(repo.working_tree_dir).resolve()

    @staticmethod
    def discover(path: Path) -> GitInfo | None:
        """Git for the folder `path`, or None (not in a repository, bare, broken, or no git executable)."""
        if _git is None:
            return None
        try:
            repo = _git.Repo(path, search_parent_directories=True)
            if repo.bare or repo.working_tree_dir is None:
                return None
            repo.git.rev_parse("--git-dir")  # a corrupt .git fails here rather than later
            return GitInfo(repo, path.resolve())
        except _GIT_ERRORS as exc:
            log.info("no usable git repository at %s: %s", path, exc)
            return None

    def list_files(self) -> list[str] | None:
        """Tracked and untracked files that are not ignored (.gitignore, info/exclude, global excludes)."""
        try:
            out: str = self._cmd.ls_files("-z", "--cached", "--others", "--exclude-standard")
        except _GIT_ERRORS as exc:
            log.warning("git ls-files failed: %s", exc)
            return None
        seen: set[str] = set()
        files = []
        for rel in out.split("\0"):
            if rel and rel not in seen:  # a file both staged-deleted and present shows twice
                seen.add(rel)
                files.append(rel)
        return files

    def ignored(self, rel_paths: list[str]) -> set[str]:
        """The subset git ignores; on failure all of them, because sending an ignored file is the worse mistake."""
        if not rel_paths:
            return set()
        try:
            out: str = self._cmd.check_ignore(*rel_paths)
        except _GIT_ERRORS as exc:
            if getattr(exc, "status", None) == 1:  # check-ignore's "none of them is ignored"
                return set()
            log.warning("git check-ignore failed: %s", exc)
            return set(rel_paths)
        return {line.strip() for line in out.splitlines() if line.strip()}

    def head(self) -> str | None:
        try:
            return str(self._repo.head.commit.hexsha)
        except _HEAD_ERRORS:
            return None

    def diff_hunks(self) -> dict[str, list[Hunk]]:
        """Uncommitted changes (staged and not) per file; against the index when there is no commit yet."""
        args = ["--relative", "--no-color", "--no-ext-diff", "--unified=3", "--diff-filter=AM"]
        try:
            text = self._cmd.diff("HEAD", *args) if self.head() else self._cmd.diff(*args)
        except _GIT_ERRORS as exc:
            log.info("git diff failed: %s", exc)
            return {}
        return parse_diff(text)

    def co_changes(self, max_commits: int = MAX_COMMITS) -> dict[str, Counter[str]]:
        """For each file, how often it changed in the same commit as each other file (recent history)."""
        if self.head() is None:
            return {}
        try:
            text = self._cmd.log(f"-n{max_commits}", "--no-merges", "--relative", "--name-only", "--format=%x1e")
        except _GIT_ERRORS as exc:
            log.info("git log failed: %s", exc)
            return {}
        return parse_co_changes(text)


def parse_diff(text: str) -> dict[str, list[Hunk]]:
    out: dict[str, list[Hunk]] = {}
    path: str | None = None
    start = 0
    lines: list[str] = []
    added = removed = 0

    def flush() -> None:
        if path is not None and lines and (added or removed):
            hunks = out.setdefault(path, [])
            if sum(len(h.lines) for h in hunks) < MAX_DIFF_LINES_PER_FILE:
                hunks.append(Hunk(path, start, tuple(lines[:MAX_DIFF_LINES_PER_FILE]), added, removed))

    for line in text.splitlines():
        if line.startswith("diff --git "):
            flush()
            path, lines, added, removed = None, [], 0, 0
            if len(out) >= MAX_DIFF_FILES:
                break
        elif line.startswith("+++ "):
            target = line[4:].strip()
            path = target[2:] if target.startswith("b/") else None
        elif line.startswith("@@"):
            flush()
            lines, added, removed = [], 0, 0
            m = _HUNK.match(line)
            start = int(m.group(1)) if m else 0
        elif path is not None and line.startswith(("+", " ")) and not line.startswith("+++"):
            lines.append(line[1:])
            added += line.startswith("+")
        elif path is not None and line.startswith("-") and not line.startswith("---"):
            removed += 1
    flush()
    return out


def parse_co_changes(text: str) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for record in text.split("\x1e"):
        files = [f for f in record.split("\n") if f.strip()]
        if len(files) < 2 or len(files) > MAX_FILES_PER_COMMIT:
            continue
        for f in files:
            partners = out.setdefault(f, Counter())
            for g in files:
                if g != f:
                    partners[g] += 1
    return out
