"""Which git histories the next-edit suite mines, and where they come from.

The *tuning* split is fimble's own history (the checkout this fimble runs from): the engine's prompts and checks were
written while looking at it. The *held-out* split is the release history of the packages the repository suite holds
out (click, httpx, rich, werkzeug): consecutive pinned source distributions, fetched by pip into the same cache as
that suite's, committed one after another into a throwaway git repository, so each release's diff is a commit to
mine. Patch releases change a few lines in a few places: the kind of related edits a next-edit model is asked for.
Any local repository can be given instead (`--next-edit-repo`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fimble
from fimble.evaluation.next_edit_tasks import Git, NextEditTaskError
from fimble.evaluation.repo_sources import HELD_OUT, HELD_OUT_REPOS, SPLITS, TUNING, default_cache, fetch_sdist

# Releases leading up to each held-out package's pinned version (the last one, HELD_OUT_REPOS' version).
RELEASES: dict[str, tuple[str, ...]] = {
    "click": ("8.1.3", "8.1.4", "8.1.5", "8.1.6", "8.1.7"),
    "httpx": ("0.25.2", "0.26.0", "0.27.0"),
    "rich": ("13.6.0", "13.7.0", "13.7.1"),
    "werkzeug": ("3.0.0", "3.0.1", "3.0.2", "3.0.3"),
}
# What a source distribution holds besides the project's files: metadata written by the build, not edited by anyone.
_NOT_COMMITTED = frozenset({".complete", "PKG-INFO"})
# A fixed identity and date, so the throwaway repository's commit ids (and so task ids) are the same everywhere.
_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "fimble eval",
    "GIT_AUTHOR_EMAIL": "eval@fimble.invalid",
    "GIT_COMMITTER_NAME": "fimble eval",
    "GIT_COMMITTER_EMAIL": "eval@fimble.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}


@dataclass(frozen=True)
class History:
    name: str  # the repository's label in task ids and the report
    split: str  # TUNING or HELD_OUT
    root: Path  # a git working tree
    source: str  # where it came from, in words: a path, or "click 8.1.3..8.1.7 (source distributions)"


def fimble_checkout() -> Path:
    """The git checkout this fimble runs from (an editable install or a source tree)."""
    root = Path(fimble.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        raise NextEditTaskError(
            f"fimble runs from {root}, which is not a git checkout: give repositories with --next-edit-repo PATH."
        )
    return root


def parse_history(spec: str) -> History:
    """`[tuning:|held-out:]PATH`: a local git repository (tuning unless said otherwise)."""
    split = TUNING
    for name in SPLITS:
        if spec.startswith(name + ":"):
            split, spec = name, spec[len(name) + 1 :]
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise NextEditTaskError(f"No folder {spec!r} (--next-edit-repo takes a local git repository).")
    root = path.resolve()
    return History(root.name, split, root, str(root))


def default_histories(which: str, cache: Path | None = None) -> list[History]:
    """`which`: tuning (fimble's own history), held-out (the release histories) or all."""
    out: list[History] = []
    if which in (TUNING, "all"):
        out.append(History("fimble", TUNING, fimble_checkout(), "this checkout"))
    if which in (HELD_OUT, "all"):
        for repo in HELD_OUT_REPOS:
            versions = RELEASES[repo.dist]
            root = release_history(repo.dist, versions, cache or default_cache())
            out.append(History(repo.package, HELD_OUT, root, f"{repo.dist} {versions[0]}..{versions[-1]} (sdists)"))
    return out


def release_history(dist: str, versions: tuple[str, ...], cache: Path) -> Path:
    """A git repository with one commit per release of `dist` (its unpacked source distribution), oldest first;
    built once in `cache` and kept (the source distributions are fetched by pip on first use)."""
    target = cache / "next-edit" / f"{dist}-{versions[0]}..{versions[-1]}"
    if (target / ".git" / "fimble-complete").is_file():
        return target
    trees = [fetch_sdist(dist, version, cache) for version in versions]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fimble-releases-", dir=target.parent) as tmp:
        work = Path(tmp) / "repo"
        work.mkdir()
        git = Git(work, init=True)
        for version, tree in zip(versions, trees, strict=True):
            for entry in work.iterdir():
                if entry.name != ".git":
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            for entry in tree.iterdir():
                if entry.name in _NOT_COMMITTED:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, work / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, work / entry.name, follow_symlinks=False)
            git("add", "-A", "--force")
            git(
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--allow-empty",
                "--no-verify",
                "-m",
                f"{dist} {version}",
                env=_COMMIT_ENV,
            )
        (work / ".git" / "fimble-complete").write_text(" ".join(versions) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    return target
