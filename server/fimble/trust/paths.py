"""Which paths fimble may touch: files inside the workspace folders, judged after normalising and resolving symlinks.

A URI or a workspace-relative path comes from the client or from the workspace's own content (a listing, a watched
file, a symlink), so it is judged where it really leads: `..` segments (percent-encoded too) are applied and every
symlink on the way is followed before the result is compared with the folders, themselves resolved once. Anything
else (another scheme, a remote host, NUL bytes, no workspace at all) locates nowhere, and callers then do no disk
work for it: a request is served from the editor's text alone, a notification is ignored with one log line.

Checks happen at the moment of use, so a workspace that swaps a directory for a symlink between the check and the
read could still win that race; fimble's readers also refuse a symlink as the last component and open without
following one (`index.workspace_files.read_source`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

UNTITLED = "untitled"


def uri_to_path(uri: str) -> Path | None:
    """The absolute local path a `file:` URI names, percent-decoded but not normalised; None for other schemes, a
    remote host, NUL bytes or a path that is not absolute."""
    if not isinstance(uri, str) or "\0" in uri:
        return None
    try:
        parsed = urlparse(uri)
    except ValueError:  # e.g. an unbalanced '[' in the host part
        return None
    if parsed.scheme.lower() != "file" or parsed.netloc not in ("", "localhost"):
        return None
    text = unquote(parsed.path, errors="surrogateescape")
    if "\0" in text or not text.startswith("/"):
        return None
    return Path(text)


def resolve(path: str | os.PathLike[str]) -> Path | None:
    """`path` normalised with every symlink followed (as the kernel would open it); None when it cannot be."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None


def is_within(path: Path, folder: Path) -> bool:
    """Whether the resolved `path` is `folder` or below it (both resolved)."""
    return path == folder or folder in path.parents


def confine(root: Path, rel: str) -> Path | None:
    """`root / rel` resolved, if it stays inside `root` (resolved by the caller): `rel` must be relative, without
    NUL bytes; `..` segments and symlinks (files or directories) are followed before the check."""
    if not rel or "\0" in rel or rel.startswith("/") or os.path.isabs(rel):
        return None
    found = resolve(root / rel)
    if found is None or found == root or not is_within(found, root):
        return None
    return found


@dataclass(frozen=True)
class Located:
    path: Path  # resolved
    folder: Path  # the (resolved) workspace folder holding it
    rel: str  # '/'-separated path below `folder`; '' for the folder itself


@dataclass(frozen=True)
class WorkspaceFolders:
    """The workspace folders, resolved once; immutable (a change makes a new one)."""

    uris: tuple[str, ...] = ()
    folders: tuple[Path, ...] = ()  # resolved, deepest first so nested folders win

    @staticmethod
    def from_uris(uris: Iterable[str]) -> WorkspaceFolders:
        kept: list[str] = []
        folders: list[Path] = []
        for uri in uris:
            path = uri_to_path(uri)
            real = resolve(path) if path is not None else None
            if real is None or uri in kept:
                continue
            kept.append(uri)
            if real not in folders:
                folders.append(real)
        folders.sort(key=lambda p: len(p.parts), reverse=True)
        return WorkspaceFolders(tuple(kept), tuple(folders))

    @staticmethod
    def from_paths(paths: Iterable[Path]) -> WorkspaceFolders:
        return WorkspaceFolders.from_uris(p.absolute().as_uri() for p in paths)

    def changed(self, added: Sequence[str] = (), removed: Sequence[str] = ()) -> WorkspaceFolders:
        """The folders after workspace/didChangeWorkspaceFolders."""
        gone = set(removed)
        uris = [u for u in self.uris if u not in gone]
        return WorkspaceFolders.from_uris([*uris, *(u for u in added if u not in uris)])

    def __bool__(self) -> bool:
        return bool(self.folders)

    def locate(self, uri: str) -> Located | None:
        """Where a URI really leads, if that is inside a folder; None otherwise (see the module's docstring)."""
        path = uri_to_path(uri)
        return self.locate_path(path) if path is not None else None

    def locate_path(self, path: Path) -> Located | None:
        if not self.folders or not path.is_absolute():
            return None
        real = resolve(path)
        if real is None:
            return None
        for folder in self.folders:
            if is_within(real, folder):
                rel = real.relative_to(folder).as_posix()
                return Located(real, folder, "" if rel == "." else rel)
        return None

    def prompt_path(self, uri: str) -> str:
        """How prompts and fix sandboxes name a document: its path below its folder, never with `..`; a document
        outside the folders (or any other) by its file name alone."""
        found = self.locate(uri)
        if found is not None and found.rel:
            return found.rel
        return file_name(uri)


def file_name(uri: str) -> str:
    """The last segment of a URI's path as a plain file name (never '', '.', '..' or containing '/' or NUL)."""
    path = uri_to_path(uri)
    if path is not None:
        name = Path(os.path.normpath(path)).name  # lexical: naming a file outside needs no look at the disk
    else:
        try:
            parsed = urlparse(uri)
            raw = unquote(parsed.path or uri)
        except ValueError:
            raw = ""
        name = PurePosixPath(raw.replace("\\", "/")).name
    name = name.replace("\0", "")
    return name if name not in ("", ".", "..") else UNTITLED


NO_FOLDERS = WorkspaceFolders()


class OnceLog:
    """Log a line once per key (a bounded memory of keys), and at most `per_minute` lines a minute in all, so a
    client that sends thousands of outside URIs costs a few lines, not one per message."""

    def __init__(self, logger: logging.Logger, keys: int = 256, per_minute: int = 10) -> None:
        self._log = logger
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._keys = keys
        self._per_minute = per_minute
        self._window: float | None = None
        self._lines = 0
        self._dropped = 0

    def __call__(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` was logged recently or the minute's lines are spent; True if logged."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._keys:
            self._seen.popitem(last=False)
        now = time.monotonic()
        if self._window is None or now - self._window >= 60.0:
            if self._dropped:
                self._log.warning("(%d more such messages were not logged)", self._dropped)
            self._window, self._lines, self._dropped = now, 0, 0
        if self._lines >= self._per_minute:
            self._dropped += 1
            return False
        self._lines += 1
        self._log.warning(message, *args)
        return True
