"""The similar-code source: windows of nearby files ranked by identifier overlap with the lines before the cursor."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

from fimble.context.engine import ContextEngine
from fimble.context.passage_search import ChunkCache, best_chunks, chunk_text, jaccard, query_words, words
from fimble.context.source_types import Budget, ContextQuery
from fimble.context.sources.similar import SimilarSource
from fimble.documents.store import DocumentStore

from .conftest import SECRET, gather, make_repo

HANDLERS = """from .errors import CommandError


def register(registry, name, handler):
    if name in registry:
        raise CommandError(f"command {name!r} is already registered")
    registry[name] = handler
    return handler
"""

UNRELATED = "".join(f"def unrelated_{i}(x):\n    return x * {i}\n\n" for i in range(12))

NEW = """from .errors import CommandError


def unregister(registry, name):
    if name not in registry:
"""


def test_words_and_jaccard() -> None:
    assert words("self.x = foo(bar_1, $el) # 2") == {"self", "x", "foo", "bar_1", "$el"}
    a, b = words("a b c"), words("b c d")
    assert jaccard(a, b) == 0.5
    assert jaccard(a, frozenset()) == 0.0


def test_chunks_cover_the_file_in_overlapping_windows() -> None:
    text = "\n".join(f"line_{i} = value_{i}" for i in range(30))
    chunks = chunk_text("f.py", text, lines=12, stride=4, following=3)
    assert [c.start_row for c in chunks] == [0, 4, 8, 12, 16, 20]
    assert chunks[-1].text.endswith("line_29 = value_29")
    # A window is matched on its own 12 lines and shown with the 3 after it: what came next is the useful part.
    assert chunks[0].words == words("\n".join(f"line_{i} = value_{i}" for i in range(12)))
    assert chunks[0].text.splitlines()[-1] == "line_14 = value_14"
    assert all(c.text.count("\n") <= 14 for c in chunks)
    assert [c.start_row for c in chunk_text("short.py", "alpha = beta(gamma, delta)")] == [0]
    assert chunk_text("blank.py", "\n\n)\n]\n") == []  # nothing to match on


def test_query_is_the_lines_ending_at_the_cursor() -> None:
    text = "".join(f"name_{i} = 1\n" for i in range(20)) + "result = comp"
    found = query_words(text, len(text), lines=3)
    assert found == {"name_18", "name_19", "result"}  # "comp" is still being typed
    assert query_words(text + "ute(", len(text) + 4, lines=3) == found | {"compute"}
    assert query_words(text, 0) == frozenset()


def test_best_chunks_ranks_and_skips_overlaps() -> None:
    query = words('if name in registry: raise CommandError(f"command {name!r} is already registered")')
    near = chunk_text("a.py", HANDLERS, lines=4, stride=1)
    far = chunk_text("b.py", UNRELATED * 3)
    picked = best_chunks(query, near + far, limit=3, min_similarity=0.0)
    assert picked[0][1].path == "a.py" and "raise CommandError" in picked[0][1].text
    scores = [score for score, _ in picked]
    assert scores == sorted(scores, reverse=True) and len(picked) == 3
    rows = {chunk.path: [] for _, chunk in picked}
    for _, chunk in picked:
        rows[chunk.path].append(chunk.start_row)
    for starts in rows.values():  # windows of one file never overlap
        starts.sort()
        assert all(b - a >= 12 for a, b in itertools.pairwise(starts))
    assert best_chunks(query, far, limit=3, min_similarity=0.2) == []


def test_chunk_cache_reads_once_and_follows_the_disk(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(HANDLERS)
    (tmp_path / "blob.py").write_bytes(b"\0\1\2" * 100)
    cache = ChunkCache(tmp_path, max_files=2)
    assert cache.cached("a.py") is None  # the request path never reads
    assert cache.chunks("a.py") and cache.cached("a.py") == cache.chunks("a.py")
    assert cache.chunks("blob.py") == [] and cache.chunks("missing.py") == []
    (tmp_path / "a.py").write_text(HANDLERS + "\nregistry_size = len(registry)\n")
    cache.refresh(["a.py", "never_read.py"])
    assert "registry_size" in (cache.cached("a.py") or [])[-1].text
    assert cache.cached("never_read.py") is None
    (tmp_path / "c.py").write_text(UNRELATED)
    cache.chunks("c.py")
    cache.chunks("a.py")
    assert len(cache) == 2 and cache.cached("blob.py") is None  # least recently used went first
    assert ChunkCache(None).chunks("a.py") == []


def _workspace(root: Path) -> Path:
    files = {
        "cmds/__init__.py": "",
        "cmds/errors.py": "class CommandError(Exception):\n    pass\n",
        "cmds/handlers.py": HANDLERS,
        "cmds/other.py": UNRELATED,
        "cmds/new.py": NEW,
        ".gitignore": "secret/\n",
        "secret/leak.py": HANDLERS.replace("already registered", SECRET),
    }
    return make_repo(root, files, commit=False)


def _query(root: Path, rel: str = "cmds/new.py") -> ContextQuery:
    text = (root / rel).read_text() + "        raise "
    return ContextQuery(text, len(text), "python", rel, (root / rel).as_uri(), (0, len(text)))


def test_one_off_request_finds_the_similar_passage(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    engine = ContextEngine(root, cache_file=False)
    engine.index_now()
    result = gather(engine, _query(root), sources=("similar",))
    assert [s.path for s in result.snippets] == ["cmds/handlers.py"]
    assert "raise CommandError(" in result.snippets[0].text
    assert all(SECRET not in s.text for s in result.snippets)  # ignored files are never sent
    # the file on disk changes: the next request sees the new text
    (root / "cmds/handlers.py").write_text(HANDLERS.replace("already registered", "taken"))
    engine.on_saved((root / "cmds/handlers.py").as_uri())
    assert engine.wait_idle(10)
    (snippet,) = gather(engine, _query(root), sources=("similar",)).snippets
    assert "is taken" in snippet.text
    engine.close()


def test_open_document_reads_its_neighbourhood_off_the_request_path(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    engine = ContextEngine(root, cache_file=False)
    store = DocumentStore()
    engine.attach(store)
    engine.index_now()
    query = _query(root)
    store.open(query.uri, query.text, 1, "python")
    # nothing read yet: the request answers from memory and has the worker read the files for the next one
    assert not gather(engine, query, sources=("similar",)).snippets
    assert engine.wait_idle(10)
    assert [s.path for s in gather(engine, query, sources=("similar",)).snippets] == ["cmds/handlers.py"]
    # opening a document reads its neighbourhood ahead of the first request
    other = root / "cmds/other.py"
    store.open(other.as_uri(), other.read_text(), 1, "python")
    engine.note_viewed(other.as_uri())
    assert engine.wait_idle(10)
    assert engine.chunks.cached("cmds/errors.py") is not None
    engine.close()


def test_nothing_to_match_gives_nothing(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    engine = ContextEngine(root, cache_file=False)
    engine.index_now()
    text = "x"
    query = ContextQuery(text, 1, "python", "cmds/new.py", (root / "cmds/new.py").as_uri(), (0, 1))
    assert not gather(engine, query, sources=("similar",)).snippets  # too few words to look for
    outside = ContextQuery(_query(root).text, len(_query(root).text), "python", "elsewhere.py", "", None)
    assert not ContextEngine(None).gather(outside, ("similar",), 2000, len, 1e18).snippets
    engine.close()


def test_typing_within_a_word_reuses_the_ranking(tmp_path: Path) -> None:
    root = _workspace(tmp_path / "ws")
    engine = ContextEngine(root, cache_file=False)
    engine.index_now()
    asked: list[str] = []

    def nearby(rel: str, grammar: str) -> list[str]:
        asked.append(rel)
        return ["cmds/handlers.py", "cmds/other.py"]

    cache = ChunkCache(root)
    source = SimilarSource(cache, nearby, lambda rel: True)
    base = _query(root)

    def ask(typed: str) -> list[str]:
        text = base.text + typed
        query = ContextQuery(text, len(text), "python", base.path, base.uri, (0, len(text)))
        budget = Budget(2000, time.monotonic() + 1, len)
        return [c.snippet.path for c in source.gather(engine.cursor(query), budget)]

    assert ask("Com") == []  # nothing read yet
    cache.chunks("cmds/handlers.py")
    cache.chunks("cmds/other.py")
    assert ask("Comm") == ["cmds/handlers.py"]
    calls = len(asked)
    assert ask("Comma") == ["cmds/handlers.py"] and len(asked) == calls  # the same question: answered from memory
    ask("handler(")
    assert len(asked) == calls + 1  # a finished word is a new question
    engine.close()


def test_an_open_document_holds_its_passages_while_they_still_fit(tmp_path: Path) -> None:
    files = {"c1.py": "a b c d e f", "c2.py": "a b c d x1 x2", "c3.py": "a b c y1 y2 y3", "c4.py": "a b g h i j"}
    for rel, text in files.items():
        (tmp_path / rel).write_text(text + "\n")
    cache = ChunkCache(tmp_path)
    for rel in files:
        cache.chunks(rel)
    source = SimilarSource(cache, lambda rel, grammar: sorted(files), lambda rel: True)
    engine = ContextEngine(tmp_path, cache_file=False)

    def ask(words: str, tracked: bool) -> list[str]:
        text = words + "\n"
        query = ContextQuery(text, len(text), "python", "cur.py", (tmp_path / "cur.py").as_uri(), (0, len(text)))
        cursor = dataclasses.replace(engine.cursor(query), tracked=tracked)
        return sorted(c.snippet.path for c in source.gather(cursor, Budget(2000, time.monotonic() + 1, len)))

    assert ask("a b c d e f", tracked=True) == ["c1.py", "c2.py", "c3.py"]
    # the question moves towards c4, but c3 still scores more than half of the best: the prompt stays the same
    assert ask("a b c d g h", tracked=True) == ["c1.py", "c2.py", "c3.py"]
    assert ask("a b c d g h", tracked=False) == ["c1.py", "c2.py", "c4.py"]  # a one-off request gets the best
    # once it scores less than half of the best new passage, a held passage gives way
    assert ask("a b g h i j", tracked=True) == ["c1.py", "c2.py", "c4.py"]
    # Undone: the earlier question gets its earlier answer, not c4 held over from the last one.
    assert ask("a b c d g h", tracked=True) == ["c1.py", "c2.py", "c3.py"]
    engine.close()
