"""Paths from URIs and from the workspace itself are judged where they really lead: inside the folders or nowhere."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from fimble.context.passage_search import ChunkCache
from fimble.index.workspace import WorkspaceIndex
from fimble.index.workspace_files import read_source
from fimble.trust.paths import OnceLog, WorkspaceFolders, confine, file_name, uri_to_path

SECRET = "def elsewhere_secret(x):\n    return 'ELSEWHERE_DISK_SECRET'\n"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """tmp/ws (the workspace) and tmp/elsewhere (not), with symlinks from the one into the other."""
    ws, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    (ws / "pkg").mkdir(parents=True)
    elsewhere.mkdir()
    (ws / "pkg" / "inside.py").write_text("def inside(x):\n    return x\n")
    (elsewhere / "x.py").write_text(SECRET)
    (ws / "link.py").symlink_to(elsewhere / "x.py")
    (ws / "linkdir").symlink_to(elsewhere, target_is_directory=True)
    (ws / "pkg" / "alias.py").symlink_to(ws / "pkg" / "inside.py")
    return ws, elsewhere


def test_uri_to_path_takes_local_file_uris_only() -> None:
    assert uri_to_path("file:///a/b.py") == Path("/a/b.py")
    assert uri_to_path("file://localhost/a/b%20c.py") == Path("/a/b c.py")
    assert uri_to_path("file:///a/%2e%2e/b.py") == Path("/a/../b.py")  # decoded, judged later
    for uri in ("untitled:Untitled-1", "https://x/a.py", "file://evil.host/a.py", "file:///a%00b.py", "a.py", ""):
        assert uri_to_path(uri) is None, uri


def test_locate_resolves_dots_and_symlinks_before_judging(layout: tuple[Path, Path]) -> None:
    ws, elsewhere = layout
    folders = WorkspaceFolders.from_uris([ws.as_uri()])
    base = ws.as_uri()
    found = folders.locate(f"{base}/pkg/inside.py")
    assert found is not None and found.rel == "pkg/inside.py" and found.folder == ws.resolve()
    inside_dots = folders.locate(f"{base}/pkg/../pkg/inside.py")
    assert inside_dots is not None and inside_dots.rel == "pkg/inside.py"
    alias = folders.locate(f"{base}/pkg/alias.py")  # a symlink that stays inside is named by its target
    assert alias is not None and alias.rel == "pkg/inside.py"
    for uri in (
        f"{base}/../elsewhere/x.py",
        f"{base}/pkg/../../elsewhere/x.py",
        f"{base}/%2e%2e/elsewhere/x.py",
        f"{base}/pkg/%2E%2E/%2e%2e%2Felsewhere%2Fx.py",
        f"{base}/link.py",
        f"{base}/linkdir/x.py",
        elsewhere.joinpath("x.py").as_uri(),
        "file:///etc/passwd",
        f"{base}/pkg/inside.py%00.txt",
    ):
        assert folders.locate(uri) is None, uri
    assert WorkspaceFolders().locate(f"{base}/pkg/inside.py") is None  # no workspace: nothing is inside


def test_dots_after_a_symlinked_directory_apply_to_its_target(layout: tuple[Path, Path]) -> None:
    """`ws/linkdir/../ws/pkg/inside.py` is `elsewhere/../ws/pkg/inside.py` to the kernel: lexical normalisation would
    name `ws/ws/pkg/inside.py`, a file that does not exist; the path is judged as the kernel opens it."""
    ws, _ = layout
    folders = WorkspaceFolders.from_uris([ws.as_uri()])
    assert not Path(os.path.normpath(ws / "linkdir/../ws/pkg/inside.py")).exists()
    found = folders.locate(f"{ws.as_uri()}/linkdir/../ws/pkg/inside.py")
    assert found is not None and found.rel == "pkg/inside.py"


def test_folders_through_a_symlink_and_nested_folders(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "a.py").write_text("")
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    folders = WorkspaceFolders.from_uris([alias.as_uri(), (alias / "sub").as_uri(), "untitled:x"])
    assert folders.folders == ((real / "sub").resolve(), real.resolve())  # deepest first, resolved
    found = folders.locate((alias / "sub" / "a.py").as_uri())
    assert found is not None and found.rel == "a.py" and found.folder == (real / "sub").resolve()
    found = folders.locate((real / "sub" / "a.py").as_uri())
    assert found is not None and found.rel == "a.py"
    fewer = folders.changed(removed=[(alias / "sub").as_uri()], added=[(tmp_path / "other").as_uri()])
    assert set(fewer.folders) == {(tmp_path / "other").resolve(), real.resolve()}
    assert fewer.locate((alias / "sub" / "a.py").as_uri()).rel == "sub/a.py"  # type: ignore[union-attr]


def test_prompt_paths_never_climb(layout: tuple[Path, Path]) -> None:
    ws, _ = layout
    folders = WorkspaceFolders.from_uris([ws.as_uri()])
    base = ws.as_uri()
    assert folders.prompt_path(f"{base}/pkg/inside.py") == "pkg/inside.py"
    assert folders.prompt_path(f"{base}/../../elsewhere/x.py") == "x.py"
    assert folders.prompt_path(f"{base}/%2e%2e/%2e%2e/elsewhere/x.py") == "x.py"
    assert folders.prompt_path(f"{base}/linkdir/x.py") == "x.py"
    assert folders.prompt_path(f"{base}/pkg/..") == "ws"  # the folder itself
    assert folders.prompt_path("untitled:Untitled-1") == "Untitled-1"
    assert file_name("file:///..") == "untitled"
    assert file_name("weird:a/..") == "untitled"
    assert WorkspaceFolders().prompt_path(f"{base}/pkg/inside.py") == "inside.py"  # no workspace: the name only


def test_confine_and_read_source_refuse_what_leads_outside(layout: tuple[Path, Path]) -> None:
    ws, _ = layout
    root = ws.resolve()
    assert confine(root, "pkg/inside.py") == root / "pkg/inside.py"
    for rel in ("../elsewhere/x.py", "pkg/../../elsewhere/x.py", "linkdir/x.py", "link.py", "/etc/passwd", "", "."):
        assert confine(root, rel) is None, rel
        assert read_source(root, rel) is None, rel
    assert read_source(root, "pkg/inside.py") == b"def inside(x):\n    return x\n"
    assert read_source(root, "pkg/alias.py") is None  # a symlink is never read, even one that stays inside
    os.mkfifo(ws / "pkg" / "fifo.py")
    assert read_source(root, "pkg/fifo.py") is None  # and a FIFO does not hang the reader


def test_index_and_chunks_never_read_through_a_symlinked_directory(layout: tuple[Path, Path]) -> None:
    ws, _ = layout
    index = WorkspaceIndex(ws)
    index.build()
    for rel in ("linkdir/x.py", "../elsewhere/x.py", "link.py"):
        assert index.update_path(rel) is False
        assert not index.symbols_in(rel)
    assert not index.lookup("elsewhere_secret")
    assert index.update_path("pkg/inside.py") is False and index.lookup("inside")
    chunks = ChunkCache(ws)
    assert chunks.chunks("linkdir/x.py") == [] and chunks.chunks("../elsewhere/x.py") == []
    assert chunks.chunks("pkg/inside.py")


def test_once_log_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    once = OnceLog(logging.getLogger("test.once"), keys=4, per_minute=3)
    with caplog.at_level(logging.WARNING, "test.once"):
        assert once("a", "outside %s", "a")
        assert not once("a", "outside %s", "a")
        assert once("b", "outside %s", "b") and once("c", "outside %s", "c")
        assert not once("d", "outside %s", "d")  # the minute's lines are spent
        for i in range(1000):
            once(f"k{i}", "outside %s", i)
    assert len(caplog.records) == 3
    assert len(once._seen) == 4
