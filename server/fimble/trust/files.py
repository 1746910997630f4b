"""Every file fimble writes is written whole or not at all: a temporary file in the target's folder, flushed to disk,
then renamed over the target (`os.replace`, atomic on POSIX and Windows). A reader (another fimble, a server that
loads the model, the next start reading the index cache) sees the old file or the new one, never half of one, and
a failure on the way (a full disk, a file-size limit, an interrupt, a check of the new content that fails) leaves
the old file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

NEW_FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], mode: int | None = None) -> Iterator[Path]:
    """A temporary path next to `target` for a writer that wants a path; on a clean exit it is synced and renamed
    over `target`, on an exception removed (the exception propagates). `mode`: the new file's permissions (default:
    the old file's, else 0o644)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _sync_file(tmp)
        os.chmod(tmp, mode if mode is not None else _mode_of(target))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir(target.parent)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write `target`'s new content into; see `atomic_path`."""
    with atomic_path(target, mode) as tmp, tmp.open("wb") as fh:
        yield fh


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    with atomic_output(target, mode) as fh:
        fh.write(data)


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(target, text.encode(encoding))


def atomic_copy(
    src: str | os.PathLike[str], target: str | os.PathLike[str], check: Callable[[Path], None] | None = None
) -> None:
    """Copy `src` over `target`; `check(tmp)` may inspect the copy first and raise to keep the old `target`."""
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
        if check is not None:
            check(tmp)


def atomic_move(src: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename a finished file (on the same file system) over `target`, synced first."""
    _sync_file(Path(src))
    os.replace(src, target)
    _sync_dir(Path(target).parent)


def _mode_of(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return NEW_FILE_MODE


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every platform or file system can sync a directory."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
