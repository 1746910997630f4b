"""What git knows about a workspace: root, ignore rules, uncommitted hunks, co-change history.

Every call can fail (no git binary, a bare or corrupt repository, a huge history, an untrusted workspace); each
method then returns an empty answer and the engine degrades to what it can do without git. Calls run git
subprocesses through `fimble.trust.safe_git` (the repository's own programs disabled), so they belong on the indexing
thread, never on the keystroke path.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fimble.trust import safe_git
from fimble.trust.safe_git import GitError

log = logging.getLogger(__name__)

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
    the folder and paths are relative to it (`--relative`), so opening a subfolder of a monorepo indexes only it.
    Only `discover` makes one, and only for a trusted workspace."""

    def __init__(self, cwd: Path, repo_root: Path, trusted: bool) -> None:
        self.root = cwd
        self.repo_root = repo_root
        self.trusted = trusted

    @staticmethod
    def discover(path: Path, *, trusted: bool = True) -> GitInfo | None:
        """Git for the folder `path`, or None (not trusted, not in a repository, bare, broken, or no usable git)."""
        if not trusted:
            return None
        top = safe_git.toplevel(path, trusted=trusted)
        if top is None:
            log.info("no usable git repository at %s", path)
            return None
        return GitInfo(path.resolve(), top, trusted)

    def _git(self, *args: str, ok: tuple[int, ...] = (0,), stdin: bytes | None = None) -> str:
        return safe_git.run(args, self.root, trusted=self.trusted, ok=ok, stdin=stdin)

    def list_files(self) -> list[str] | None:
        """Tracked and untracked files that are not ignored (.gitignore, info/exclude, global excludes)."""
        try:
            out = self._git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
        except GitError as exc:
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
            # Exit 1 is check-ignore's "none of them is ignored".
            paths = "".join(f"{rel}\0" for rel in rel_paths).encode("utf-8", "surrogateescape")
            out = self._git("check-ignore", "-z", "--stdin", ok=(0, 1), stdin=paths)
        except GitError as exc:
            log.warning("git check-ignore failed: %s", exc)
            return set(rel_paths)
        return {rel for rel in out.split("\0") if rel}

    def head(self) -> str | None:
        """The commit HEAD names; None in a repository without commits."""
        try:
            out = self._git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", ok=(0, 1))
        except GitError:
            return None
        return out.strip() or None

    def diff_hunks(self) -> dict[str, list[Hunk]]:
        """Uncommitted changes (staged and not) per file; against the index when there is no commit yet."""
        # Prefixes spelled out: a repository's diff.noprefix or diff.mnemonicPrefix would change what parse_diff reads.
        args = [
            "--relative",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--unified=3",
            "--diff-filter=AM",
            "--src-prefix=a/",
            "--dst-prefix=b/",
        ]
        try:
            text = self._git("diff", "HEAD", *args) if self.head() else self._git("diff", *args)
        except GitError as exc:
            log.info("git diff failed: %s", exc)
            return {}
        return parse_diff(text)

    def co_changes(self, max_commits: int = MAX_COMMITS) -> dict[str, Counter[str]]:
        """For each file, how often it changed in the same commit as each other file (recent history)."""
        if self.head() is None:
            return {}
        try:
            args = ["--no-merges", "--relative", "--name-only", "--no-textconv", "--no-ext-diff", "--format=%x1e"]
            text = self._git("log", f"-n{max_commits}", *args)
        except GitError as exc:
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
