"""The context engine: one facade over syntax trees, the workspace index, the ring of recent chunks, git, and the
sources that turn them into prompt snippets.

Threads: document events arrive on the LSP event loop (`attach`'s listener, `note_viewed`, `on_saved`) and must stay
cheap; `gather` runs on the model worker thread per request and only reads in-memory state; everything slow (parsing
files, reading the files near the cursor's, git subprocesses, persistence) runs on the engine's own background
worker. One-off requests (the CLI, the evaluation harness) have no worker ahead of them and do that reading first.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fimble.context.passage_search import ChunkCache
from fimble.context.recent_chunks import CHUNK_LINES, Ring
from fimble.context.source_types import Budget, Candidate, ContextQuery, ContextResult, Cursor, Source, TokenCounter
from fimble.context.sources import DefinitionsSource, GitSource, RingSource, ScopeSource, SimilarSource
from fimble.context.sources.similar import NEARBY_FILES
from fimble.context.stability import choose_stable, lend_previous, pick_previous, remember
from fimble.context.window import snap_window
from fimble.context.worker import Worker
from fimble.documents.document import Document, TextEdit, byte_offset
from fimble.documents.store import DocumentStore
from fimble.errors import DocumentError
from fimble.index.gitinfo import GitInfo, Hunk
from fimble.index.workspace import BuildStats, WorkspaceIndex, default_cache_file
from fimble.index.workspace_files import MAX_FILES
from fimble.languages import grammar_name
from fimble.prompt.assemble import Snippet
from fimble.prompt.budget import source_budget
from fimble.syntax.specs import spec_for
from fimble.syntax.trees import SyntaxTrees, parse_text, uri_path
from fimble.trust.paths import NO_FOLDERS, OnceLog, WorkspaceFolders, file_name

log = logging.getLogger(__name__)

# Prompt order, most stable first: what changes least between keystrokes goes earliest, so consecutive prompts
# share the longest token prefix and the KV cache is reused; the scope (which follows the cursor) goes last,
# right before the cursor window.
SOURCE_ORDER: tuple[str, ...] = ("git", "ring", "definitions", "similar", "scope")
# Run order when time is short: the most useful source first.
RUN_ORDER: tuple[str, ...] = ("scope", "definitions", "similar", "ring", "git")
# Each source's own deadline; the request's overall deadline also applies.
SOURCE_DEADLINE_MS = {"scope": 6.0, "definitions": 15.0, "similar": 8.0, "ring": 6.0, "git": 4.0}
# A keystroke's re-parse that runs longer than this is finished in the background; the request uses the previous
# tree shifted by the edits (an unclosed bracket can make tree-sitter re-parse the rest of a large file).
SYNTAX_BUDGET_S = 0.008
TREE_AFTER_S = 0.02  # quiet time after a keystroke before its tree is re-parsed (editors debounce 50-150 ms)
GIT_REFRESH_S = 1.0
DOC_REINDEX_S = 1.5
SAVE_AFTER_S = 15.0
CO_CHANGE_REFRESH_S = 600.0
# How many recent context arrangements per document a returning snippet may find its old place in.
ARRANGEMENTS_REMEMBERED = 4

Report = Callable[[str, int], None]  # (message, percentage)


@dataclass
class _GitState:
    hunks: dict[str, list[Hunk]]
    co: dict[str, Counter[str]]
    co_at: float = 0.0


class ContextEngine:
    def __init__(
        self,
        root: Path | None,
        *,
        cache_file: Path | bool | None = True,
        max_files: int = MAX_FILES,
        trusted: bool = True,
        timed: bool = True,
    ) -> None:
        """`root`: the workspace folder (None: single files, no index). `cache_file`: True for the user cache dir,
        False/None for no persistence, or a path. `trusted`: False for a workspace the editor does not trust, where
        no git command runs (files are listed by walking the folder instead). `timed`: False to let each request
        parse and each source run to the end, whatever its deadlines (quality measurements: on a loaded machine the
        deadlines would decide what context a task gets)."""
        self.root = root.resolve() if root is not None else None
        self.trusted = trusted
        self.timed = timed
        self._cache_file = cache_file
        self.max_files = max_files
        self.trees = SyntaxTrees()
        self.ring = Ring()
        self.chunks = ChunkCache(self.root)
        self.index: WorkspaceIndex | None = None
        self.git: GitInfo | None = None
        self._git_state = _GitState({}, {})
        self._store: DocumentStore | None = None
        self._worker = Worker()
        self.trees.on_slow = self._finish_parse_later
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}  # uri -> row the user was last at, not yet captured into the ring
        self._last_uri: str | None = None
        self._seen: set[str] = set()
        self._checking: set[str] = set()
        self._rel_cache: dict[str, str] = {}
        self._folder = WorkspaceFolders.from_paths([self.root]) if self.root is not None else NO_FOLDERS
        self._outside_log = OnceLog(log)
        self._setup_done = False
        self.last_build: BuildStats | None = None
        # Per document: the snippets its last few prompts held, newest first, and each source's last answer (see
        # stability.py).
        self._arrangements: dict[str, list[list[Snippet]]] = {}
        self._last_found: dict[tuple[str, str], list[Candidate]] = {}
        self.similar = SimilarSource(self.chunks, self._nearby, self.allowed, self._read_nearby_later)
        self.sources: dict[str, Source] = {
            "scope": ScopeSource(),
            "definitions": DefinitionsSource(lambda: self.index, self.co_change),
            "similar": self.similar,
            "ring": RingSource(self.ring, self.allowed, self.co_change),
            "git": GitSource(lambda: self._git_state.hunks, self.allowed, self.co_change),
        }

    # -- lifecycle -----------------------------------------------------------------------------------------
    def attach(self, store: DocumentStore) -> None:
        self._store = store
        self.trees.attach(store)
        store.on_edit(self._on_edit)
        self._seen.update(doc.uri for doc in store if not store.oversized(doc))

    def forget(self, uri: str) -> None:
        """Drop everything kept for a document that was closed or grew past the size limit: its syntax tree, the
        row the user was at, its prompt arrangements and each source's last answer for it, the similar source's
        passages and questions for it, its relative path, and the background jobs scheduled for it (each holds the
        document). Bounded workspace-wide structures keep what they hold within their bound: the ring (16 chunks)
        and the index (the workspace's files)."""
        self.trees.forget(uri)
        with self._lock:
            self._pending.pop(uri, None)
            if self._last_uri == uri:
                self._last_uri = None
        self._seen.discard(uri)
        # gather() writes these two on the model worker; single dict operations are atomic under the GIL
        self._arrangements.pop(uri, None)
        for name in self.sources:
            self._last_found.pop((uri, name), None)
        self.similar.forget(uri)
        self._rel_cache.pop(uri, None)
        for job in (f"tree:{uri}", f"doc:{uri}", f"parse:{uri}"):
            self._worker.cancel(job)

    def state_of(self, uri: str) -> list[str]:
        """What the engine keeps for a document, by name (for tests: empty once it is forgotten)."""
        held = {
            "tree": self.trees.tracked(uri),
            "pending": uri in self._pending,
            "last_uri": self._last_uri == uri,
            "seen": uri in self._seen,
            "arrangements": uri in self._arrangements,
            "last_found": any(key[0] == uri for key in list(self._last_found)),
            "similar": self.similar.holds(uri),
            "rel_cache": uri in self._rel_cache,
            "jobs": any(uri in key for key in self._worker.scheduled()),
        }
        return [name for name, kept in held.items() if kept]

    def start_indexing(self, report: Report | None = None) -> None:
        """Index the workspace on the background thread, reporting progress; returns at once."""
        self._worker.start()
        self._worker.submit(lambda: self._build(report))

    def index_now(self, time_limit: float | None = None, near: str | None = None) -> BuildStats | None:
        """Index synchronously (the CLI): at most `time_limit` seconds, files nearest `near` first."""
        return self._build(None, time_limit=time_limit, near=near)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Run all queued and scheduled background work now and wait for it (tests, benchmark)."""
        return self._worker.wait_idle(timeout)

    def close(self) -> None:
        self._worker.stop()
        index = self.index
        if index is not None and index.dirty:
            index.save()

    def _setup(self) -> None:
        if self._setup_done:
            return
        self._setup_done = True
        if self.root is None or not self.root.is_dir():
            return
        self.git = GitInfo.discover(self.root, trusted=self.trusted)
        if self._cache_file is True:
            cache: Path | None = default_cache_file(self.root)
        elif isinstance(self._cache_file, Path):
            cache = self._cache_file
        else:
            cache = None
        self.index = WorkspaceIndex(self.root, self.git, cache, max_files=self.max_files)

    def _build(
        self, report: Report | None, time_limit: float | None = None, near: str | None = None
    ) -> BuildStats | None:
        self._setup()
        index = self.index
        if index is None:
            if report is not None:
                report("no workspace folder: cursor, scope and recent-edit context only", 100)
            return None
        if report is not None:
            report("listing files", 0)

        def progress(done: int, total: int) -> None:
            if report is not None and total:
                report(f"{done}/{total} files", min(99, done * 100 // total))

        stats = index.build(progress, stop=self._worker.stop_event, time_limit=time_limit, near=near)
        self.last_build = stats
        # The index lives until the next build: keep its hundreds of thousands of objects out of the cyclic
        # collector's full passes, which would otherwise stall the event loop for each of them.
        gc.freeze()
        with self._lock:
            self._checking.clear()  # the new listing settles what earlier checks were for
        self._refresh_git(co_change=True)
        if index.dirty:
            index.save()
        if report is not None:
            report(
                f"indexed {stats.indexed} files ({stats.symbols} symbols, {stats.parsed} parsed, "
                f"{stats.reused} from cache) in {stats.seconds:.1f} s",
                100,
            )
        return stats

    def _finish_parse_later(self, uri: str) -> None:
        self._worker.later(f"parse:{uri}", 0.0, lambda: self.trees.tree(uri))

    def _refresh_git(self, co_change: bool = False) -> None:
        git = self.git
        if git is None:
            return
        hunks = git.diff_hunks()
        state = self._git_state
        co = state.co
        co_at = state.co_at
        if co_change or time.monotonic() - co_at > CO_CHANGE_REFRESH_S:
            co = git.co_changes()
            co_at = time.monotonic()
        self._git_state = _GitState(hunks, co, co_at)

    # -- events --------------------------------------------------------------------------------------------
    def rel_path(self, uri: str) -> str | None:
        """Path relative to the workspace root, '/'-separated, of where the URI really leads (`..` applied, symlinks
        followed: the editor may name the folder through a symlink); None when that is outside the root (or there
        is no root). Every disk read the engine does for a URI goes through this."""
        if self.root is None or not uri:
            return None
        cached = self._rel_cache.get(uri)
        if cached is not None:
            return cached or None
        found = self._folder.locate(uri) if uri.startswith("file:") else self._folder.locate_path(Path(uri))
        rel = found.rel if found is not None else ""
        if len(self._rel_cache) > 4096:
            self._rel_cache.clear()
        self._rel_cache[uri] = rel
        return rel or None

    def _inside(self, uri: str) -> str | None:
        """`rel_path` for a notification: an outside URI is ignored, said once in the log."""
        rel = self.rel_path(uri)
        if rel is None and self.root is not None:
            self._outside_log(uri, "ignoring %.300s: not a file inside the workspace folder %s", uri, self.root)
        return rel

    def on_saved(self, uri: str) -> None:
        rel = self._inside(uri)
        self._capture_pending(uri)
        if rel is None:
            return
        self._worker.start()
        self._worker.submit(lambda: self._update_paths([rel]))

    def on_files_changed(self, uris: Sequence[str]) -> None:
        rels = [r for r in (self._inside(u) for u in uris) if r is not None]
        if rels:
            self._worker.start()
            self._worker.submit(lambda: self._update_paths(rels))

    def note_viewed(self, uri: str) -> None:
        """A document was opened: its first chunk joins the ring (the user is likely to look at it)."""
        self._seen.add(uri)
        doc = self._store.find(uri) if self._store is not None else None
        if doc is not None:
            self._capture(doc, 0, head=True)
        rel = self.rel_path(uri)
        grammar = grammar_name(doc.language_id if doc is not None else None, rel) if rel else None
        if rel and grammar:
            self._read_nearby_later(rel, grammar)

    def _update_paths(self, rels: list[str]) -> None:
        index = self.index
        if index is not None and any(r == ".gitignore" or r.endswith("/.gitignore") for r in rels):
            self._build(None)  # what may be indexed changed: list the files again (unchanged ones come from cache)
            return
        if index is not None:
            changed = [rel for rel in rels if index.update_path(rel)]
            if changed:
                self._worker.later("save", SAVE_AFTER_S, self._save)
        self.chunks.refresh(rels)
        self._worker.later("git", GIT_REFRESH_S, self._refresh_git)

    def _nearby(self, rel: str, grammar: str) -> list[str]:
        index = self.index
        return index.nearest(rel, grammar, NEARBY_FILES) if index is not None and index.ready else []

    def _read_nearby(self, rel: str, grammar: str) -> None:
        for path in self._nearby(rel, grammar):
            if self.allowed(path):
                self.chunks.chunks(path)

    def _read_nearby_later(self, rel: str, grammar: str) -> None:
        self._worker.later(f"similar:{rel}", 0.0, lambda: self._read_nearby(rel, grammar))

    def _save(self) -> None:
        index = self.index
        if index is not None and index.dirty:
            index.save()

    def _on_edit(self, doc: Document, edits: list[TextEdit]) -> None:
        """On the event loop for every keystroke: O(1) bookkeeping plus, now and then, one 64-line chunk copy."""
        if doc.uri not in self._seen:
            self.note_viewed(doc.uri)
            # parse a just-opened document in the background: the first completion then finds its tree ready
            self._worker.submit(lambda: self.trees.tree(doc.uri))
            return
        if not edits:
            return
        # Re-parse in the pause before the editor's debounced request, so the request finds its tree ready.
        self._worker.later(f"tree:{doc.uri}", TREE_AFTER_S, lambda: self.trees.tree(doc.uri))
        row = edits[-1].start_point[0]
        self._moved_to(doc.uri, row)
        rel = self.rel_path(doc.uri)
        index = self.index
        grammar = grammar_name(doc.language_id, rel)
        if rel is not None and index is not None and grammar is not None:
            store = self._store

            def reindex() -> None:
                current = store.find(doc.uri) if store is not None else None
                if current is not None:
                    index.update_source(rel, current.text.encode("utf-8", "surrogatepass"), grammar)

            self._worker.later(f"doc:{doc.uri}", DOC_REINDEX_S, reindex)

    def _moved_to(self, uri: str, row: int) -> None:
        """The user is at `row` of `uri`: capture where they were before if that was elsewhere."""
        with self._lock:
            previous_uri = self._last_uri
            previous_row = self._pending.get(uri)
            self._last_uri = uri
            self._pending[uri] = row
        if previous_uri is not None and previous_uri != uri:
            self._capture_pending(previous_uri)
        elif previous_row is not None and abs(previous_row - row) > CHUNK_LINES // 2:
            doc = self._store.find(uri) if self._store is not None else None
            if doc is not None:
                self._capture(doc, previous_row)

    def _capture_pending(self, uri: str) -> None:
        with self._lock:
            row = self._pending.pop(uri, None)
        doc = self._store.find(uri) if self._store is not None else None
        if row is not None and doc is not None:
            self._capture(doc, row)

    def _capture(self, doc: Document, row: int, head: bool = False) -> None:
        start = 0 if head else max(0, min(row - CHUNK_LINES // 2, doc.line_count - CHUNK_LINES))
        end = min(doc.line_count, start + CHUNK_LINES)
        try:
            text = "\n".join(doc.line(r) for r in range(start, end))
        except DocumentError:
            return
        rel = self.rel_path(doc.uri)
        if rel is None and self.root is not None:
            return  # outside the workspace: no ignore rules can vouch for it
        path = rel if rel is not None else file_name(doc.uri)
        self.ring.add(path, doc.uri, start, text)

    def allowed(self, rel: str) -> bool:
        """Whether a file's text may be sent to the model: not ignored and not skipped. Unknown means no, for now;
        a check is queued so the answer is known by the next request."""
        if self.root is None:
            return True
        index = self.index
        if index is None:
            return False
        verdict = index.allowed(rel)
        if verdict is None:
            with self._lock:
                if rel in self._checking:
                    return False
                self._checking.add(rel)
            self._worker.start()
            self._worker.submit(lambda: index.check_allowed([rel]))
            return False
        return verdict

    def co_change(self, a: str, b: str) -> float:
        """How strongly two files change together in history, 0..1."""
        partners = self._git_state.co.get(a)
        if not partners:
            return 0.0
        return min(1.0, partners.get(b, 0) / 3.0)

    # -- requests ------------------------------------------------------------------------------------------
    def cursor(self, query: ContextQuery) -> Cursor:
        text = query.text
        rel = self.rel_path(query.uri) if query.uri else None
        if rel is None and self.root is not None and query.path and not query.uri:
            rel = query.path
        grammar = grammar_name(query.language_id, rel or query.path or uri_path(query.uri))
        tracked = bool(query.uri) and self.trees.tracked(query.uri)
        tree = self.trees.tree(query.uri, text, SYNTAX_BUDGET_S) if tracked else None
        src = text.encode("utf-8", "surrogatepass")
        if tree is None and grammar is not None and not (tracked and self.trees.matches(query.uri, text)):
            # not an open document (the CLI), or a snapshot the document has moved past: parse it, within budget
            tree = parse_text(text, grammar, budget_s=SYNTAX_BUDGET_S if query.uri and self.timed else None)
        offset = max(0, min(query.offset, len(text)))
        row = text.count("\n", 0, offset)
        if query.window is not None:
            lo, hi = query.window
            window_rows = (text.count("\n", 0, lo), row + text.count("\n", offset, hi))
        else:
            window_rows = (row, row)
        return Cursor(
            query=query,
            rel=rel,
            grammar=grammar,
            spec=spec_for(grammar),
            tree=tree,
            src=src,
            cursor_byte=byte_offset(text, offset),
            row=row,
            window_rows=window_rows,
            tracked=tracked,
        )

    def gather(
        self,
        query: ContextQuery,
        sources: tuple[str, ...],
        budget_tokens: int,
        count_tokens: TokenCounter,
        deadline: float,
    ) -> ContextResult:
        """Ranked snippets within `budget_tokens` (estimated with `count_tokens`), in prompt order."""
        result = ContextResult()
        if not self.timed:
            deadline = math.inf
        t0 = time.monotonic()
        try:
            cursor = self.cursor(query)
        except Exception:  # a broken tree or odd text must not cost the completion
            log.exception("context: preparing the request failed")
            result.notes["syntax"] = "failed"
            return result
        result.timings_ms["syntax"] = (time.monotonic() - t0) * 1000

        def snap(start: int, end: int) -> tuple[int, int]:
            try:
                return snap_window(cursor.tree, cursor.text, cursor.query.offset, start, end)
            except Exception:  # a window cut at lines is still a good window
                log.exception("context: snapping the window failed")
                return start, end

        result.snap = snap
        store = self._store
        if query.uri and (store is None or store.find(query.uri) is not None):
            # Only remember where the user is; chunks are copied on the event loop, which owns the documents. (A
            # request that finishes after its document was closed must not bring its entry back.)
            with self._lock:
                self._pending[query.uri] = cursor.row
        # Keystroke-to-keystroke stability is for documents open in the editor; one-off requests (the CLI, the
        # evaluation harness, which masks a different line each time) get the best snippets for their own text.
        stable = cursor.tracked
        if not stable and "similar" in sources and cursor.rel is not None and cursor.grammar is not None:
            # No earlier keystroke had the worker read this file's neighbourhood; the time it takes is not the
            # sources' to lose.
            started = time.monotonic()
            self._read_nearby(cursor.rel, cursor.grammar)
            deadline += time.monotonic() - started
        candidates: list[Candidate] = []
        for name in RUN_ORDER:
            if name not in sources:
                result.notes[name] = "off"
                continue
            source = self.sources.get(name)
            if source is None:
                continue
            doc_key = (query.uri, name)
            previous = self._last_found.get(doc_key, []) if stable else []
            start = time.monotonic()
            if start >= deadline:
                result.notes[name] = "skipped: request deadline" + (", previous answer reused" if previous else "")
                result.timings_ms[name] = 0.0
                candidates.extend(previous)
                continue
            budget = Budget(
                tokens=source_budget(name, budget_tokens),
                deadline=min(deadline, start + SOURCE_DEADLINE_MS.get(name, 5.0) / 1000) if self.timed else deadline,
                count=count_tokens,
            )
            try:
                got = source.gather(cursor, budget)
            except Exception:
                log.exception("context source %s failed", name)
                result.notes[name] = "failed"
                got = []
            if budget.expired() and previous:
                got = lend_previous(got, previous)
            elif stable:
                self._last_found[doc_key] = got
            result.timings_ms[name] = (time.monotonic() - start) * 1000
            if not got and name not in result.notes:
                result.notes[name] = self._why_empty(name)
            candidates.extend(got)
        history = self._arrangements.get(query.uri, []) if stable else []
        kept = choose_stable(pick_previous(history, candidates), candidates, budget_tokens, SOURCE_ORDER)
        if stable:
            if len(self._arrangements) > 64:  # documents long closed
                self._arrangements.clear()
                self._last_found.clear()
            self._arrangements[query.uri] = remember(history, [c.snippet for c in kept], ARRANGEMENTS_REMEMBERED)
        result.snippets = [c.snippet for c in kept]
        for cand in kept:
            result.tokens[cand.snippet.source] = result.tokens.get(cand.snippet.source, 0) + cand.tokens
        return result

    def _why_empty(self, name: str) -> str:
        if name in ("definitions",) and (self.index is None or not self.index.ready):
            return "no index yet" if self.root is not None else "no workspace"
        if name == "git" and self.git is None:
            return "not a git repository"
        return "nothing relevant"
