"""Which source trees the repository suite masks lines in, and where they come from.

Two splits, reported separately and together: the *tuning* repositories, the packages installed here that the
context engine was tuned on, and the *held-out* ones, published source distributions that no tuning looked at,
fetched with pip at evaluation time (pinned versions, so the tasks are the same on every machine) into a cache
folder. A figure measured on the held-out split says what context does for a repository nobody fitted it to.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fimble.evaluation.repo_tasks import RepoTaskError, SourceTree, source_tree

TUNING = "tuning"
HELD_OUT = "held-out"
SPLITS = (TUNING, HELD_OUT)
PIP_TIMEOUT_S = 600.0
# Folders of a source distribution that hold no package code worth masking.
_NOT_PACKAGES = frozenset({"tests", "test", "testing", "docs", "doc", "examples", "benchmarks", "scripts", "tasks"})


@dataclass(frozen=True)
class Repo:
    package: str  # the import name: the package folder whose lines are masked
    split: str  # TUNING or HELD_OUT
    dist: str = ""  # the PyPI distribution fetched as a source distribution; "" = installed here (or a folder)
    version: str = ""
    licence: str = ""
    path: str = ""  # a package folder given on the command line

    @property
    def label(self) -> str:
        return f"{self.dist}=={self.version}" if self.dist else self.path or self.package


TUNING_REPOS = (
    Repo("pygls", TUNING, licence="Apache-2.0"),
    Repo("lsprotocol", TUNING, licence="MIT"),
    Repo("_pytest", TUNING, licence="MIT"),
    Repo("gitdb", TUNING, licence="BSD-3-Clause"),
)
# Pure-Python packages whose modules import each other a lot, under permissive licences; none of them was looked at
# while the context engine was tuned.
HELD_OUT_REPOS = (
    Repo("click", HELD_OUT, "click", "8.1.7", "BSD-3-Clause"),
    Repo("httpx", HELD_OUT, "httpx", "0.27.0", "BSD-3-Clause"),
    Repo("rich", HELD_OUT, "rich", "13.7.1", "MIT"),
    Repo("werkzeug", HELD_OUT, "werkzeug", "3.0.3", "BSD-3-Clause"),
)
REPO_SETS = {TUNING: TUNING_REPOS, HELD_OUT: HELD_OUT_REPOS, "all": TUNING_REPOS + HELD_OUT_REPOS}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)(?:/([A-Za-z_][A-Za-z0-9_]*))?$")


def parse_repo(spec: str) -> Repo:
    """`[tuning:|held-out:]WHAT`, where WHAT is `DIST==VERSION[/PACKAGE]` (a source distribution from the package
    index; held-out unless said otherwise), or an installed package's name or a package folder (tuning unless said
    otherwise)."""
    split = ""
    for name in SPLITS:
        if spec.startswith(name + ":"):
            split, spec = name, spec[len(name) + 1 :]
    pin = _PIN.match(spec)
    if pin:
        dist, version, package = pin.groups()
        return Repo(package or _import_name(dist), split or HELD_OUT, dist, version)
    if not spec:
        raise RepoTaskError("An empty repository source.")
    path = Path(spec).expanduser()
    if path.is_dir():
        return Repo(path.resolve().name, split or TUNING, path=str(path.resolve()))
    return Repo(spec, split or TUNING)


def _import_name(dist: str) -> str:
    return re.sub(r"[-.]+", "_", dist).lower()


def default_cache() -> Path:
    """Where fetched source distributions are kept (one folder per pinned version)."""
    from fimble.model.resolve import cache_dir

    return cache_dir() / "eval-repos"


def resolve(repo: Repo, cache: Path | None = None) -> SourceTree:
    """The source tree of `repo`: an installed package, a folder, or a source distribution fetched and unpacked into
    `cache` the first time (later runs use the unpacked copy without the network)."""
    if repo.dist:
        tree = fetch_sdist(repo.dist, repo.version, cache or default_cache())
        return SourceTree(repo.package, find_package_dir(tree, repo.package))
    return source_tree(repo.path or repo.package)


def fetch_sdist(dist: str, version: str, cache: Path) -> Path:
    """The unpacked source distribution `dist==version`, downloaded by pip (`pip download --no-binary :all:`, the
    package index and settings of the environment) on first use."""
    target = cache / f"{_import_name(dist)}-{version}"
    if (target / ".complete").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fimble-sdist-", dir=cache) as tmp:
        download = Path(tmp) / "download"
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
            "--dest", str(download), f"{dist}=={version}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RepoTaskError(f"Could not run pip to fetch {dist}=={version}: {exc}") from exc
        archives = sorted(download.glob("*")) if download.is_dir() else []
        if done.returncode != 0 or len(archives) != 1:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise RepoTaskError(
                f"pip could not fetch the source distribution {dist}=={version} (needs the package index once; the "
                f"unpacked copy is kept in {cache}):\n{tail}"
            )
        unpacked = Path(tmp) / "unpacked"
        unpack(archives[0], unpacked)
        entries = list(unpacked.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        (top / ".complete").write_text(f"{archives[0].name}\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(top, target)
    return target


def unpack(archive: Path, dest: Path) -> None:
    """A .tar.gz or .zip source distribution into `dest`, refusing members that would land outside it."""
    dest.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            root = dest.resolve()
            for name in zf.namelist():
                if not (dest / name).resolve().is_relative_to(root):
                    raise RepoTaskError(f"{archive.name}: member {name!r} points outside the archive.")
            zf.extractall(dest)
        return
    try:
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")  # no absolute paths, no links out, no devices
            else:  # Python before 3.11.4: plain files and folders only, all inside `dest`
                root = dest.resolve()
                members = [m for m in tf.getmembers() if m.isfile() or m.isdir()]
                if any(not (dest / m.name).resolve().is_relative_to(root) for m in members):
                    raise RepoTaskError(f"{archive.name}: a member points outside the archive.")
                tf.extractall(dest, members=members)
    except (tarfile.TarError, OSError) as exc:
        raise RepoTaskError(f"Cannot unpack {archive.name}: {exc}") from exc


def find_package_dir(root: Path, package: str) -> Path:
    """The folder of `package` in an unpacked source distribution: `src/PACKAGE` or `PACKAGE`, whichever holds an
    `__init__.py` nearest the top (a test folder's copy of the name does not count)."""
    found = [
        init.parent
        for init in root.rglob("__init__.py")
        if init.parent.name == package and not _NOT_PACKAGES & set(init.parent.relative_to(root).parts[:-1])
    ]
    if not found:
        raise RepoTaskError(f"No package folder {package!r} in {root.name}.")
    return min(found, key=lambda p: (len(p.relative_to(root).parts), str(p)))
