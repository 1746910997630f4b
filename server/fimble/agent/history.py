"""What git knows about a file, through GitPython: the recent diff of the buffer against HEAD (fix prompts) and the
last commits that touched some lines (explanations). Blocking: call from a thread. Every git command has a timeout,
and any failure (no repository, untracked file, git missing) just means no history."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import git

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 10.0
_HEADER = re.compile(r"^([0-9a-f]{40}) \d+ \d+")


@dataclass(frozen=True)
class Commit:
    short: str
    date: str  # YYYY-MM-DD
    subject: str
    author: str = ""

    def line(self) -> str:
        return f"{self.short} {self.date} {self.subject}"


def _repo_and_rel(path: Path) -> tuple[git.Repo, str] | None:
    try:
        repo = git.Repo(path.parent, search_parent_directories=True)
    except Exception:
        return None
    top = Path(repo.working_tree_dir or "")
    try:
        rel = path.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        repo.close()
        return None
    return repo, rel


def repo_root(path: Path) -> Path | None:
    """The working tree holding `path`, or None outside a repository."""
    try:
        repo = git.Repo(path.resolve().parent, search_parent_directories=True)
    except Exception:
        return None
    try:
        return Path(repo.working_tree_dir).resolve() if repo.working_tree_dir else None
    finally:
        repo.close()


def recent_diff(path: Path | None, buffer_text: str, max_lines: int = 80) -> str:
    """Unified diff of the file at HEAD against the editor's text: what the user changed recently."""
    if path is None:
        return ""
    found = _repo_and_rel(path)
    if found is None:
        return ""
    repo, rel = found
    try:
        head = repo.git.show(f"HEAD:{rel}", kill_after_timeout=GIT_TIMEOUT_S, strip_newline_in_stdout=False)
    except Exception:
        return ""  # untracked, or no commit yet
    finally:
        repo.close()
    lines = list(
        difflib.unified_diff(head.splitlines(), buffer_text.splitlines(), f"a/{rel}", f"b/{rel}", n=2, lineterm="")
    )
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more diff lines)"]
    return "\n".join(lines)


def line_commits(path: Path | None, buffer_text: str, first: int, last: int, limit: int = 5) -> list[Commit]:
    """The commits that last touched lines first..last (1-based, inclusive) of the editor's text, newest first.

    Blame runs on the buffer (`--contents`), so line numbers match what the user sees even with unsaved edits;
    lines not committed yet are skipped.
    """
    if path is None:
        return []
    found = _repo_and_rel(path)
    if found is None:
        return []
    repo, rel = found
    fd, tmp = tempfile.mkstemp(prefix="fimble-blame-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(buffer_text)
        out = repo.git.blame(
            "--porcelain", f"-L{first},{last}", "--contents", tmp, "--", rel, kill_after_timeout=GIT_TIMEOUT_S
        )
    except Exception as exc:
        log.debug("git blame failed for %s: %s", rel, exc)
        return []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        repo.close()
    return _parse_porcelain(out)[:limit]


def _parse_porcelain(out: str) -> list[Commit]:
    info: dict[str, dict[str, str]] = {}
    current = ""
    for line in out.splitlines():
        m = _HEADER.match(line)
        if m:
            current = m.group(1)
            info.setdefault(current, {})
            continue
        if not current or line.startswith("\t"):
            continue
        key, _, value = line.partition(" ")
        if key in ("summary", "committer-time", "author"):
            info[current].setdefault(key, value)
    commits: list[tuple[int, Commit]] = []
    for sha, fields in info.items():
        if set(sha) == {"0"}:
            continue  # "Not Committed Yet"
        stamp = int(fields.get("committer-time", "0") or 0)
        date = datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d")
        commits.append((stamp, Commit(sha[:8], date, fields.get("summary", ""), fields.get("author", ""))))
    commits.sort(key=lambda c: c[0], reverse=True)
    return [c for _, c in commits]


def file_log(path: Path | None, limit: int = 3) -> list[Commit]:
    """The last commits that touched the file (git log), for when blame has nothing committed to say."""
    if path is None:
        return []
    found = _repo_and_rel(path)
    if found is None:
        return []
    repo, rel = found
    try:
        out = repo.git.log(f"-n{limit}", "--format=%H%x09%cs%x09%an%x09%s", "--", rel, kill_after_timeout=GIT_TIMEOUT_S)
    except Exception:
        return []
    finally:
        repo.close()
    commits = []
    for line in out.splitlines():
        parts = line.split("\t", 3)
        if len(parts) == 4:
            commits.append(Commit(parts[0][:8], parts[1], parts[3], parts[2]))
    return commits
