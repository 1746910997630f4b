"""What git knows about a file: the recent diff of the buffer against HEAD (fix prompts) and the last commits that
touched some lines (explanations). Blocking: call from a thread. Git runs through `fimble.trust.safe_git` (the
repository's own programs disabled, nothing at all for an untrusted workspace), every command has a timeout, and any
failure (no repository, untracked file, git missing, not trusted) just means no history."""

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

from fimble.trust import safe_git
from fimble.trust.safe_git import GitError

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


def _repo_and_rel(path: Path, trusted: bool) -> tuple[Path, str] | None:
    """The working tree holding the file `path`, and the file's path in it."""
    top = safe_git.toplevel(path.parent, trusted=trusted)
    if top is None:
        return None
    try:
        rel = path.resolve().relative_to(top).as_posix()
    except (ValueError, OSError):
        return None
    return top, rel


def repo_root(path: Path, *, trusted: bool) -> Path | None:
    """The working tree holding `path`, or None outside a repository (or without trust)."""
    return safe_git.toplevel(path.resolve().parent, trusted=trusted)


def recent_diff(path: Path | None, buffer_text: str, *, trusted: bool, max_lines: int = 80) -> str:
    """Unified diff of the file at HEAD against the editor's text: what the user changed recently."""
    if path is None:
        return ""
    found = _repo_and_rel(path, trusted)
    if found is None:
        return ""
    top, rel = found
    try:
        # The blob as stored: cat-file applies no textconv and no filter.
        head = safe_git.run(["cat-file", "blob", f"HEAD:{rel}"], top, trusted=trusted, timeout=GIT_TIMEOUT_S)
    except GitError:
        return ""  # untracked, or no commit yet
    lines = list(
        difflib.unified_diff(head.splitlines(), buffer_text.splitlines(), f"a/{rel}", f"b/{rel}", n=2, lineterm="")
    )
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more diff lines)"]
    return "\n".join(lines)


def line_commits(
    path: Path | None, buffer_text: str, first: int, last: int, *, trusted: bool, limit: int = 5
) -> list[Commit]:
    """The commits that last touched lines first..last (1-based, inclusive) of the editor's text, newest first.

    Blame runs on the buffer (`--contents`), so line numbers match what the user sees even with unsaved edits;
    lines not committed yet are skipped.
    """
    if path is None:
        return []
    found = _repo_and_rel(path, trusted)
    if found is None:
        return []
    top, rel = found
    fd, tmp = tempfile.mkstemp(prefix="fimble-blame-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(buffer_text)
        args = ["blame", "--porcelain", "--no-textconv", f"-L{first},{last}", "--contents", tmp, "--", rel]
        out = safe_git.run(args, top, trusted=trusted, timeout=GIT_TIMEOUT_S)
    except (GitError, OSError) as exc:
        log.debug("git blame failed for %s: %s", rel, exc)
        return []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
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


def file_log(path: Path | None, *, trusted: bool, limit: int = 3) -> list[Commit]:
    """The last commits that touched the file (git log), for when blame has nothing committed to say."""
    if path is None:
        return []
    found = _repo_and_rel(path, trusted)
    if found is None:
        return []
    top, rel = found
    try:
        args = ["log", f"-n{limit}", "--no-textconv", "--no-ext-diff", "--format=%H%x09%cs%x09%an%x09%s", "--", rel]
        out = safe_git.run(args, top, trusted=trusted, timeout=GIT_TIMEOUT_S)
    except GitError:
        return []
    commits = []
    for line in out.splitlines():
        parts = line.split("\t", 3)
        if len(parts) == 4:
            commits.append(Commit(parts[0][:8], parts[1], parts[3], parts[2]))
    return commits
