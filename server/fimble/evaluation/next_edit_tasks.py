"""Next-edit tasks mined from git history: a commit that changed one file in two related places becomes "the user
made the first change; predict the second".

For a pair of hunks of one file (in file order) the document is the parent's file with the first hunk applied, the
cursor at the end of the first hunk's new text, the edit history that one hunk, and the expected text the file with
both hunks applied (only those two: a third hunk elsewhere in the commit is not asked for). The second hunk must lie
within `max_gap` lines of the first, so a fixed window of lines around the cursor (the engine's editable region) can
reach it; the harness checks that against the region the engine actually used.

`pairs_from_versions` is pure (two texts in, tasks out); `mine_repository` reads the history through git.
"""

from __future__ import annotations

import difflib
import itertools
import random
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fimble.errors import FimbleError
from fimble.index.workspace_files import looks_generated_or_binary, skipped_path
from fimble.languages import grammar_name, language_from_path
from fimble.trust import safe_git

MAX_FILE_BYTES = 200_000  # nobody types in a generated giant; the engine's region checks would parse it per task
MAX_GAP_LINES = 10  # about half the engine's editable region: the second hunk is within its reach of the cursor
MAX_HUNK_LINES = 12  # a hunk larger than this rewrites a block, not an edit a next-edit model is asked for
DEFAULT_MAX_COMMITS = 1000
GIT_TIMEOUT_S = 120.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NEARBY = "nearby"
SHARES_IDENTIFIER = "shares-identifier"


class NextEditTaskError(FimbleError):
    """A repository for next-edit tasks cannot be read."""


@dataclass(frozen=True)
class LineHunk:
    """One change between two versions of a file: old lines [old_start, old_end) became new lines
    [new_start, new_end) (0-based)."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int


@dataclass(frozen=True)
class NextEditTask:
    task_id: str  # "REPO@COMMIT7:PATH:LINE" (1-based line of the second hunk in the document)
    repo: str
    split: str
    commit: str
    path: str  # relative to the repository root, "/"-separated
    language_id: str
    text: str  # the document: the parent's file with the first hunk applied
    offset: int  # the cursor: the end of the first hunk's new text
    first_line: int  # 0-based line where the first hunk's new text starts in the document
    first_before: str  # the first hunk's old lines (each with its newline)
    first_after: str  # its new lines, as they are in the document
    expected: str  # the file with both hunks applied
    second_start: int  # offsets in the document of the lines the second hunk replaces
    second_end: int
    relation: str  # NEARBY, or SHARES_IDENTIFIER when the second hunk uses a name the first one changed
    gap: int  # lines between the two hunks


def line_hunks(old: Sequence[str], new: Sequence[str]) -> list[LineHunk]:
    """The changed runs of lines, as a diff with no context shows them."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [LineHunk(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def split_lines(text: str) -> list[str]:
    """Lines with their newlines, split at "\n" only (as editors and git count lines; `str.splitlines` would also
    split at form feeds and Unicode separators)."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    return [*out, lines[-1]] if lines[-1] else out


def changed_identifiers(before: str, after: str) -> set[str]:
    """Names one side of an edit has and the other lacks: a rename's old and new name, an added argument."""
    return set(_IDENTIFIER.findall(before)) ^ set(_IDENTIFIER.findall(after))


def _blank(lines: Sequence[str]) -> bool:
    return all(not line.strip() for line in lines)


def pairs_from_versions(
    repo: str,
    split: str,
    commit: str,
    path: str,
    old_text: str,
    new_text: str,
    max_gap: int = MAX_GAP_LINES,
) -> list[NextEditTask]:
    """The tasks of one file changed by one commit: each consecutive pair of related hunks, in file order."""
    old, new = split_lines(old_text), split_lines(new_text)
    # A last line without its newline would glue onto the next line when hunks are joined; compare whole lines.
    if any(lines and not lines[-1].endswith("\n") for lines in (old, new)):
        return []
    hunks = line_hunks(old, new)
    language_id = language_from_path(path)
    out: list[NextEditTask] = []
    for first, second in itertools.pairwise(hunks):
        gap = second.old_start - first.old_end
        first_old, first_new = old[first.old_start : first.old_end], new[first.new_start : first.new_end]
        second_old, second_new = old[second.old_start : second.old_end], new[second.new_start : second.new_end]
        if gap > max_gap:
            continue
        if max(len(first_old), len(first_new), len(second_old), len(second_new)) > MAX_HUNK_LINES:
            continue
        if _blank(first_old + first_new) or _blank(second_old + second_new):
            continue  # blank lines added or removed: layout, not an edit anyone predicts
        doc_lines = old[: first.old_start] + first_new + old[first.old_end :]
        text = "".join(doc_lines)
        expected = "".join(old[: first.old_start] + first_new + old[first.old_end : second.old_start] + second_new
                           + old[second.old_end :])  # fmt: skip
        starts = [0]
        for line in doc_lines:
            starts.append(starts[-1] + len(line))
        after = "".join(first_new)
        # The cursor where typing the new text leaves it: at the end of its last line, before that line's newline.
        offset = starts[first.old_start] + len(after.removesuffix("\n"))
        shift = len(first_new) - len(first_old)
        doc_second = second.old_start + shift
        names = changed_identifiers("".join(first_old), after)
        shares = bool(names & set(_IDENTIFIER.findall("".join(second_old + second_new))))
        out.append(
            NextEditTask(
                task_id=f"{repo}@{commit[:7]}:{path}:{doc_second + 1}",
                repo=repo,
                split=split,
                commit=commit,
                path=path,
                language_id=language_id,
                text=text,
                offset=offset,
                first_line=first.old_start,
                first_before="".join(first_old),
                first_after=after,
                expected=expected,
                second_start=starts[doc_second],
                second_end=starts[doc_second + len(second_old)],
                relation=SHARES_IDENTIFIER if shares else NEARBY,
                gap=gap,
            )
        )
    return out


def minable_path(path: str) -> bool:
    """Source in a language with a grammar (the engine's syntax check needs one), not vendored or generated."""
    return not skipped_path(path) and grammar_name(None, path) is not None


def decode_source(data: bytes) -> str | None:
    """The text of a blob worth mining; None for binary, generated, oversized or non-UTF-8 content."""
    if len(data) > MAX_FILE_BYTES or looks_generated_or_binary(data):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if "\r" not in text else None  # CRLF files: offsets would differ from what an editor sends


# -- git ------------------------------------------------------------------------------------------------------


class Git:
    """git in one repository, bytes in and out, with the environment of `safe_git` (the git resolved from trusted
    PATH entries, every program the repository's config could name disabled), computed once for the repository."""

    def __init__(self, root: Path, init: bool = False) -> None:
        """`init`: make `root` a new, empty repository first."""
        git = safe_git.executable()
        if git is None:
            raise NextEditTaskError("Next-edit tasks need git 2.31 or newer on PATH.")
        self.root = root
        self.path = git.path
        try:
            self.env = safe_git.safe_env(root)
        except safe_git.GitError as exc:
            raise NextEditTaskError(f"Cannot read the git config of {root}: {exc}") from exc
        if init:
            self("init", "--quiet")

    def __call__(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        try:
            done = subprocess.run(
                [self.path, "--no-pager", *args], cwd=self.root, env={**self.env, **(env or {})}, input=stdin,
                capture_output=True,
                timeout=GIT_TIMEOUT_S, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NextEditTaskError(f"Could not run git in {self.root}: {exc}") from exc
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise NextEditTaskError(
                f"git {args[0]} failed in {self.root}: {message[-1] if message else done.returncode}"
            )
        return done.stdout

    def head(self, rev: str = "HEAD") -> str:
        return self("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()

    def commits(self, rev: str, max_commits: int) -> list[str]:
        """Non-merge commits with a parent, newest first."""
        return self("rev-list", "--no-merges", "--min-parents=1", f"--max-count={max_commits}", rev).decode().split()

    def modified_files(self, commit: str) -> list[tuple[str, str, str]]:
        """(path, old blob, new blob) of the regular files `commit` modified in place (renamed, added and deleted
        files hold no pair of versions to mine)."""
        raw = self("diff-tree", "-r", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", f"{commit}^", commit)
        fields = raw.decode("utf-8", "surrogateescape").split("\0")
        out = []
        for meta, path in zip(fields[::2], fields[1::2], strict=False):
            parts = meta.lstrip(":").split()
            if len(parts) == 5 and parts[4] == "M" and parts[0] == parts[1] == "100644":
                out.append((path, parts[2], parts[3]))
        return out

    def blobs(self, shas: Sequence[str]) -> dict[str, bytes]:
        """Blob contents by id, all read by one `git cat-file --batch` (which applies no filter)."""
        if not shas:
            return {}
        data = self("cat-file", "--batch", stdin="\n".join(shas).encode() + b"\n")
        pos, out = 0, {}
        for sha in shas:
            end = data.index(b"\n", pos)
            header = data[pos:end].split()
            pos = end + 1
            if len(header) != 3:
                continue  # "<sha> missing"
            size = int(header[2])
            out[sha] = data[pos : pos + size]
            pos += size + 1
        return out


def head_commit(root: Path, rev: str = "HEAD") -> str:
    return Git(root).head(rev)


def mine_repository(
    root: Path,
    repo: str,
    split: str,
    rev: str = "HEAD",
    max_commits: int = DEFAULT_MAX_COMMITS,
    max_gap: int = MAX_GAP_LINES,
) -> list[NextEditTask]:
    """Every task of the last `max_commits` non-merge commits reachable from `rev`, newest commit first."""
    if not (root / ".git").exists():
        raise NextEditTaskError(f"{root} is not a git repository (next-edit tasks come from its history).")
    git = Git(root)
    out: list[NextEditTask] = []
    for commit in git.commits(rev, max_commits):
        files = [(p, a, b) for p, a, b in git.modified_files(commit) if minable_path(p)]
        blobs = git.blobs([sha for _, a, b in files for sha in (a, b)])
        for path, a, b in files:
            old = decode_source(blobs.get(a, b""))
            new = decode_source(blobs.get(b, b""))
            if old is None or new is None:
                continue
            out.extend(pairs_from_versions(repo, split, commit, path, old, new, max_gap))
    return out


# -- sampling ---------------------------------------------------------------------------------------------------


def sample(tasks: Sequence[NextEditTask], limit: int | None, seed: int) -> list[NextEditTask]:
    """A deterministic draw that spreads over commits and files: one task from each file of each commit (in a
    shuffled order), then a second from each, and so on, so one large commit or file does not fill a short run."""
    by_file: dict[tuple[str, str], list[NextEditTask]] = {}
    for task in tasks:
        by_file.setdefault((task.commit, task.path), []).append(task)
    rng = random.Random(f"{seed}:next-edit")
    keys = sorted(by_file)
    rng.shuffle(keys)
    queues = []
    for key in keys:
        queue = sorted(by_file[key], key=lambda t: t.task_id)
        rng.shuffle(queue)
        queues.append(queue)
    picked = list(_round_robin(queues))
    return picked[:limit] if limit is not None else picked


def interleave(groups: Sequence[Sequence[NextEditTask]], limit: int | None) -> list[NextEditTask]:
    """Tasks of several repositories, alternating, so a short run covers each."""
    out = list(_round_robin(groups))
    return out[:limit] if limit is not None else out


def _round_robin(groups: Sequence[Sequence[NextEditTask]]) -> Iterator[NextEditTask]:
    for i in range(max((len(g) for g in groups), default=0)):
        yield from (g[i] for g in groups if i < len(g))
