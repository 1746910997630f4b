"""Where the repository suite's source trees come from: installed packages, folders, and pinned source
distributions fetched by pip (here from a local folder standing in for the package index: no network)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from fimble.evaluation import repo_sources
from fimble.evaluation.repo_sources import (
    HELD_OUT,
    HELD_OUT_REPOS,
    TUNING,
    TUNING_REPOS,
    Repo,
    fetch_sdist,
    find_package_dir,
    parse_repo,
    resolve,
    unpack,
)
from fimble.evaluation.repo_tasks import RepoTaskError, build_tasks

FIXTURE = Path(__file__).parent / "fixtures" / "sdist" / "tinyshapes-0.1"


def make_index(folder: Path) -> Path:
    """A find-links folder holding the fixture as pip would find it on the package index: NAME-VERSION.tar.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "tinyshapes-0.1.tar.gz", "w:gz") as tf:
        tf.add(FIXTURE, arcname="tinyshapes-0.1", filter=lambda info: None if "__pycache__" in info.name else info)
    return folder


@pytest.fixture
def offline_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip (a subprocess) reads its index settings from the environment: only the local folder, never the network."""
    links = make_index(tmp_path / "index")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def test_parse_repo_specs(tmp_path: Path) -> None:
    assert parse_repo("click==8.1.7") == Repo("click", HELD_OUT, "click", "8.1.7")
    assert parse_repo("Foo-Bar==1.0") == Repo("foo_bar", HELD_OUT, "Foo-Bar", "1.0")
    assert parse_repo("attrs==23.2.0/attr") == Repo("attr", HELD_OUT, "attrs", "23.2.0")
    assert parse_repo("tuning:click==8.1.7").split == TUNING
    assert parse_repo("gitdb") == Repo("gitdb", TUNING)
    assert parse_repo("held-out:gitdb") == Repo("gitdb", HELD_OUT)
    folder = tmp_path / "mypkg"
    folder.mkdir()
    assert parse_repo(str(folder)) == Repo("mypkg", TUNING, path=str(folder.resolve()))
    with pytest.raises(RepoTaskError):
        parse_repo("held-out:")


def test_the_splits_do_not_overlap_and_pin_their_versions() -> None:
    tuning = {r.package for r in TUNING_REPOS}
    held_out = {r.package for r in HELD_OUT_REPOS}
    assert tuning == {"pygls", "lsprotocol", "_pytest", "gitdb"}
    assert len(held_out) >= 3 and not tuning & held_out
    assert all(r.dist and r.version and r.licence and r.split == HELD_OUT for r in HELD_OUT_REPOS)
    assert all(r.split == TUNING and not r.dist for r in TUNING_REPOS)


def test_fetch_unpacks_once_and_finds_the_package(tmp_path: Path, offline_index: Path) -> None:
    cache = tmp_path / "cache"
    tree = resolve(parse_repo("tinyshapes==0.1"), cache)
    # src/tinyshapes, not the test folder of the same name
    assert tree.name == "tinyshapes" and tree.path == cache / "tinyshapes-0.1" / "src" / "tinyshapes"
    assert (tree.path / "draw.py").is_file() and (cache / "tinyshapes-0.1" / ".complete").is_file()
    assert [p.name for p in cache.iterdir()] == ["tinyshapes-0.1"]  # the download folder is gone
    # The unpacked copy serves later runs without pip: the index can be gone.
    for archive in offline_index.iterdir():
        archive.unlink()
    assert fetch_sdist("tinyshapes", "0.1", cache) == cache / "tinyshapes-0.1"
    targets = {t.target for t in build_tasks(tree)}
    assert {"square = Square(side)", "corners = shapes.SIDES", "total = area_of(square)"} <= targets


def test_a_version_the_index_lacks_is_a_clear_error(tmp_path: Path, offline_index: Path) -> None:
    with pytest.raises(RepoTaskError, match=r"pip could not fetch the source distribution tinyshapes==9\.9"):
        fetch_sdist("tinyshapes", "9.9", tmp_path / "cache")
    assert not (tmp_path / "cache" / "tinyshapes-9.9").exists()


def test_unpack_refuses_members_outside_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"x = 1\n"
        info = tarfile.TarInfo("../outside.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(RepoTaskError):
        unpack(archive, tmp_path / "dest")
    assert not (tmp_path / "outside.py").exists()


def test_find_package_dir_prefers_the_shallowest_real_package(tmp_path: Path) -> None:
    for rel in ("pkg/__init__.py", "src/pkg/__init__.py", "tests/pkg/__init__.py", "src/pkg/sub/pkg/__init__.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert find_package_dir(tmp_path, "pkg") == tmp_path / "pkg"
    (tmp_path / "pkg" / "__init__.py").unlink()
    assert find_package_dir(tmp_path, "pkg") == tmp_path / "src" / "pkg"
    with pytest.raises(RepoTaskError, match="No package folder"):
        find_package_dir(tmp_path, "other")


def test_default_cache_follows_fimble_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIMBLE_CACHE_DIR", str(tmp_path))
    assert repo_sources.default_cache() == tmp_path / "eval-repos"
