"""The workspace symbol index: definitions of every source file, by name, persisted between sessions.

Built once in the background (reusing the persisted copy for files whose (mtime, size) did not change), then kept
current file by file. Readers (the context engine on the model thread) and the single writer (the indexing thread)
share it under one lock; a rebuild is prepared outside the lock and swapped in.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fimble.index.gitinfo import GitInfo
from fimble.index.import_resolution import FileSet, resolve_import
from fimble.index.symbols import Import, Symbol, extract_symbols
from fimble.index.workspace_files import (
    MAX_FILE_BYTES,
    MAX_FILES,
    IgnoreRules,
    indexable,
    read_source,
    skipped_path,
    walk_files,
)
from fimble.syntax.grammars import get_parser
from fimble.trust.files import atomic_write_text
from fimble.trust.paths import confine, resolve

log = logging.getLogger(__name__)

# 3: entries are read only through paths confined to the root (caches of earlier versions may hold files read
# through a symlinked directory or a '..' path, so they are dropped).
INDEX_VERSION = 3
MAX_SYMBOLS = 300_000  # ~60 MB at worst; beyond it new files are listed but not indexed
Progress = Callable[[int, int], None]  # (files done, files total)


@dataclass
class FileEntry:
    mtime_ns: int
    size: int
    grammar: str
    symbols: list[Symbol]


@dataclass
class BuildStats:
    listed: int = 0
    indexed: int = 0
    reused: int = 0
    parsed: int = 0
    skipped: int = 0
    symbols: int = 0
    seconds: float = 0.0
    source: str = ""  # "git" or "walk"
    truncated: bool = False
    extra: dict[str, float] = field(default_factory=dict)


def index_source(src: bytes, grammar: str) -> list[Symbol]:
    parser = get_parser(grammar)
    if parser is None:
        return []
    return extract_symbols(parser.parse(src), src, grammar)


def default_cache_file(root: Path) -> Path:
    from fimble.model.resolve import cache_dir

    key = hashlib.sha256(str(root).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return cache_dir() / "index" / f"{key}.json"


class WorkspaceIndex:
    def __init__(
        self,
        root: Path,
        git: GitInfo | None = None,
        cache_file: Path | None = None,
        max_files: int = MAX_FILES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.root = root
        self._real_root = resolve(root) or root  # what every read is confined to
        self.git = git
        self.cache_file = cache_file
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self._lock = threading.RLock()
        self._entries: dict[str, FileEntry] = {}
        self._by_name: dict[str, dict[str, list[Symbol]]] = {}
        self._symbol_count = 0
        self.files = FileSet()  # indexable source files, for module resolution
        self._allowed: set[str] = set()  # every listed (not ignored) file
        self._verdicts: dict[str, bool] = {}  # ignore checks for files not in the listing
        self._resolved: dict[tuple[Import, str, str], list[str]] = {}
        self._nearest: dict[tuple[str, str, int], list[str]] = {}
        self._rules: IgnoreRules | None = None
        self.ready = False
        self.dirty = False
        self.stats = BuildStats()

    # -- queries (any thread) ------------------------------------------------------------------------------
    def lookup(self, name: str) -> dict[str, list[Symbol]]:
        with self._lock:
            found = self._by_name.get(name)
            return {rel: list(syms) for rel, syms in found.items()} if found else {}

    def symbols_in(self, rel: str) -> list[Symbol]:
        with self._lock:
            entry = self._entries.get(rel)
            return list(entry.symbols) if entry else []

    def grammar_of(self, rel: str) -> str | None:
        with self._lock:
            entry = self._entries.get(rel)
            return entry.grammar if entry else None

    def allowed(self, rel: str) -> bool | None:
        """True when the file may be sent to the model, False when ignored or skipped, None when not known yet."""
        if skipped_path(rel):
            return False
        with self._lock:
            if rel in self._allowed:
                return True
            return self._verdicts.get(rel)

    def resolve(self, imp: Import, current: str, grammar: str) -> list[str]:
        """Workspace files an import refers to; cached until the set of files changes (runs per keystroke)."""
        key = (imp, current, grammar)
        with self._lock:
            hit = self._resolved.get(key)
            if hit is None:
                if len(self._resolved) > 20_000:
                    self._resolved.clear()
                hit = self._resolved[key] = resolve_import(imp, current, grammar, self.files)
            return list(hit)

    def nearest(self, rel: str, grammar: str, limit: int) -> list[str]:
        """Up to `limit` indexed files in `grammar` other than `rel`, fewest folder steps away first; cached until
        the set of files changes (runs per keystroke)."""
        key = (rel, grammar, limit)
        with self._lock:
            hit = self._nearest.get(key)
            if hit is None:
                if len(self._nearest) > 1024:
                    self._nearest.clear()
                same = (r for r, e in self._entries.items() if e.grammar == grammar and r != rel)
                hit = self._nearest[key] = heapq.nsmallest(limit, same, key=lambda r: _distance(r, rel))
            return list(hit)

    def _forget_layout(self) -> None:
        self._resolved.clear()
        self._nearest.clear()

    def named(self, rel: str, name: str, top_level: bool = False) -> list[Symbol]:
        """Symbols called `name` defined in one file."""
        with self._lock:
            found = self._by_name.get(name)
            syms = found.get(rel, []) if found else []
            return [s for s in syms if not top_level or not s.container]

    def lookup_few(self, name: str, max_files: int) -> dict[str, list[Symbol]] | None:
        """Like `lookup`, but None (without copying) when more than `max_files` files define the name."""
        with self._lock:
            found = self._by_name.get(name)
            if not found:
                return {}
            if len(found) > max_files:
                return None
            return {rel: list(syms) for rel, syms in found.items()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def symbol_count(self) -> int:
        return self._symbol_count

    # -- building (indexing thread) ------------------------------------------------------------------------
    def list_files(self) -> tuple[list[str], str]:
        if self.git is not None:
            listed = self.git.list_files()
            if listed is not None:
                return listed, "git"
        self._rules = IgnoreRules.load(self.root)
        return walk_files(self.root, self._rules, max_files=self.max_files * 4), "walk"

    def build(
        self,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        time_limit: float | None = None,
        near: str | None = None,
    ) -> BuildStats:
        """List, then index every source file (reusing cached entries). With a cap or a time limit, files in the
        directories nearest `near` (the file being completed) go first."""
        t0 = time.monotonic()
        stats = BuildStats()
        listed, stats.source = self.list_files()
        stats.listed = len(listed)
        cached = self._load_cache()
        entries: dict[str, FileEntry] = {}
        files = FileSet()
        symbols = 0
        todo = [(rel, g) for rel in listed if (g := indexable(rel)) is not None]
        if near:
            todo.sort(key=lambda item: _distance(item[0], near))
        if len(todo) > self.max_files:
            stats.truncated = True
            todo = todo[: self.max_files]
        for i, (rel, grammar) in enumerate(todo):
            if stop is not None and stop.is_set():
                break
            if time_limit is not None and time.monotonic() - t0 > time_limit:
                stats.truncated = True
                break
            if progress is not None and i % 50 == 0:
                progress(i, len(todo))
            path = self.root / rel
            try:
                st = os.lstat(path)
            except OSError:
                continue
            old = cached.get(rel)
            if old is not None and old.mtime_ns == st.st_mtime_ns and old.size == st.st_size:
                entry = old
                stats.reused += 1
            else:
                if st.st_size > self.max_file_bytes or symbols >= MAX_SYMBOLS:
                    stats.skipped += 1
                    continue
                src = read_source(self._real_root, rel, self.max_file_bytes)
                if src is None:
                    stats.skipped += 1
                    continue
                entry = FileEntry(st.st_mtime_ns, st.st_size, grammar, index_source(src, grammar))
                stats.parsed += 1
            entries[rel] = entry
            files.add(rel)
            symbols += len(entry.symbols)
        by_name: dict[str, dict[str, list[Symbol]]] = {}
        for rel, entry in entries.items():
            for sym in entry.symbols:
                by_name.setdefault(sym.name, {}).setdefault(rel, []).append(sym)
        with self._lock:
            self._entries = entries
            self._by_name = by_name
            self._symbol_count = symbols
            self.files = files
            self._forget_layout()
            self._allowed = set(listed)
            self._verdicts.clear()
            self.ready = True
        stats.indexed = len(entries)
        stats.symbols = symbols
        stats.seconds = time.monotonic() - t0
        self.dirty = stats.parsed > 0 or len(cached) != len(entries)
        if progress is not None:
            progress(len(todo), len(todo))
        self.stats = stats
        return stats

    def update_path(self, rel: str) -> bool:
        """Re-index one file from disk (saved, created, changed or deleted); True when the index changed. A path
        that leads outside the root (`..`, a symlinked directory) is never read: it is dropped like a deleted one."""
        path = confine(self._real_root, rel)
        if path is None or not path.exists():
            return self.remove(rel)
        if self.check_allowed([rel]).get(rel) is False:
            return self.remove(rel)
        grammar = indexable(rel)
        if grammar is None:
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return self.remove(rel)
        with self._lock:
            old = self._entries.get(rel)
        if old is not None and old.mtime_ns == st.st_mtime_ns and old.size == st.st_size:
            return False
        src = read_source(self._real_root, rel, self.max_file_bytes)
        if src is None:
            return self.remove(rel)
        self._replace(rel, FileEntry(st.st_mtime_ns, st.st_size, grammar, index_source(src, grammar)))
        return True

    def update_source(self, rel: str, src: bytes, grammar: str) -> None:
        """Re-index an open document from its unsaved text; (mtime, size) zeroed so the next build re-reads disk."""
        if self.allowed(rel) is not True or len(src) > self.max_file_bytes:
            return
        self._replace(rel, FileEntry(0, -1, grammar, index_source(src, grammar)))

    def remove(self, rel: str) -> bool:
        with self._lock:
            old = self._entries.pop(rel, None)
            if old is None:
                return False
            self._unlink(rel, old)
            self.files.remove(rel)
            self._forget_layout()
            self.dirty = True
            return True

    def check_allowed(self, rels: list[str]) -> dict[str, bool]:
        """Settle ignore status for files outside the listing (created since, or opened from elsewhere)."""
        unknown = [r for r in rels if self.allowed(r) is None]
        if unknown:
            if self.git is not None:
                ignored = self.git.ignored(unknown)
            else:
                rules = self._rules or IgnoreRules.load(self.root)
                ignored = {r for r in unknown if rules.ignored(r)}
            with self._lock:
                for r in unknown:
                    verdict = r not in ignored
                    self._verdicts[r] = verdict
                    if verdict:
                        self._allowed.add(r)
        return {r: bool(self.allowed(r)) for r in rels}

    def _replace(self, rel: str, entry: FileEntry) -> None:
        with self._lock:
            old = self._entries.get(rel)
            if old is not None:
                self._unlink(rel, old)
            self._entries[rel] = entry
            for sym in entry.symbols:
                self._by_name.setdefault(sym.name, {}).setdefault(rel, []).append(sym)
            self._symbol_count += len(entry.symbols)
            if rel not in self.files.paths:
                self.files.add(rel)
                self._forget_layout()
            self._allowed.add(rel)
            self.dirty = True

    def _unlink(self, rel: str, entry: FileEntry) -> None:
        for name in {s.name for s in entry.symbols}:
            per_file = self._by_name.get(name)
            if per_file is not None:
                per_file.pop(rel, None)
                if not per_file:
                    del self._by_name[name]
        self._symbol_count -= len(entry.symbols)

    # -- persistence ---------------------------------------------------------------------------------------
    def save(self) -> bool:
        if self.cache_file is None:
            return False
        with self._lock:
            files = {
                rel: [e.mtime_ns, e.size, e.grammar, [s.to_row() for s in e.symbols]]
                for rel, e in self._entries.items()
                if e.size >= 0  # unsaved editor text is not what is on disk
            }
        data = {"version": INDEX_VERSION, "root": str(self.root), "files": files}
        try:
            atomic_write_text(self.cache_file, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            log.warning("could not persist the index to %s: %s", self.cache_file, exc)
            return False
        self.dirty = False
        return True

    def _load_cache(self) -> dict[str, FileEntry]:
        if self.cache_file is None:
            return {}
        try:
            data = json.loads(self.cache_file.read_text("utf-8"))
            if data.get("version") != INDEX_VERSION or data.get("root") != str(self.root):
                return {}
            return {
                rel: FileEntry(int(m), int(size), str(g), [Symbol.from_row(row) for row in rows])
                for rel, (m, size, g, rows) in data["files"].items()
            }
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.info("ignoring unreadable index cache %s: %s", self.cache_file, exc)
            return {}


def _distance(rel: str, near: str) -> tuple[int, int, str]:
    """Directory steps from `near`'s folder to `rel`'s (up, then down), then depth: an ordering for partial builds."""
    a = rel.split("/")[:-1]
    b = near.split("/")[:-1]
    shared = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        shared += 1
    return (len(a) - shared + len(b) - shared, len(a), rel)
