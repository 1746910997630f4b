"""The context engine on fixture repositories: what reaches the prompt, what never does, budgets and deadlines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fimble.context.engine import SOURCE_ORDER, ContextEngine
from fimble.context.recent_chunks import Ring, line_similarity
from fimble.context.source_types import Budget, Candidate, ContextQuery, Cursor
from fimble.documents import DocumentStore
from fimble.prompt.assemble import Snippet
from fimble.prompt.budget import SOURCE_SHARE, TokenEstimator
from tests.context.conftest import ALL, SECRET, gather, prompt_text, query_at


@pytest.mark.parametrize(
    ("rel", "marker", "expected"),
    [
        ("app/main.py", "m = midpoint(a, b)\n", "def midpoint(a: Point, b: Point) -> Point"),
        ("app/main.py", "a = Point(0, 0)\n", "def __init__(self, x: float, y: float) -> None"),
        ("web/app.js", "addNumbers(acc, x)", "Add two numbers, carefully."),
        ("web/src/service.ts", 'return "hi "', "export interface User"),
        ("cmd/main.go", "shapes.Area(r)", "func Area(r Rect) float64"),
        ("rs/src/main.rs", "dot(&v, &v)", "pub fn dot(a: &Vec2, b: &Vec2) -> f64"),
        ("c/main.c", "vec3_add(a, a);", "struct vec3 vec3_add(struct vec3 a, struct vec3 b);"),
        ("cpp/main.cpp", "s.area()", "class Shape"),
        ("java/com/acme/App.java", "new Greeter();", "public String greet(String name)"),
        ("lua/main.lua", 'strutil.trim("  x  ")', "function M.trim(s)"),
        ("sh/run.sh", "greet_user world", "greet_user()"),
    ],
)
def test_cross_file_definition_reaches_the_prompt(
    engine_ro: ContextEngine, repo_ro: Path, rel: str, marker: str, expected: str
) -> None:
    result = gather(engine_ro, query_at(repo_ro, rel, marker), sources=("definitions",))
    text = prompt_text(result)
    assert expected in text, text
    assert all(s.path != rel or s.source != "definitions" or expected not in s.text for s in result.snippets[:0])


def test_ignored_vendored_and_generated_files_never_reach_the_prompt(repo: Path) -> None:
    engine = ContextEngine(repo, cache_file=False)
    store = DocumentStore()
    engine.attach(store)
    engine.index_now()
    # the user opens and edits the ignored file: it must still never be sent as context for another file
    secret_uri = (repo / "secret/keys.py").as_uri()
    doc = store.open(secret_uri, (repo / "secret/keys.py").read_text(), 1, "python")
    for i in range(3):
        store.change(secret_uri, i + 2, [(f"# edit {i}\n", (0, 0), (0, 0))])
    main = repo / "app/main.py"
    store.open(main.as_uri(), main.read_text(), 1, "python")
    store.change(main.as_uri(), 2, [("\n", (9, 0), (9, 0))])
    assert engine.wait_idle()
    assert any(c.uri == secret_uri for c in engine.ring.chunks())  # it is in the ring...
    for rel, marker in [("app/main.py", "helper_from_secret()"), ("web/app.js", "addNumbers(acc, x)")]:
        result = gather(engine, query_at(repo, rel, marker))
        assert SECRET not in prompt_text(result)  # ...but never in a prompt
        assert not any(s.path.startswith(("secret/", "node_modules/", "gen/")) for s in result.snippets)
    assert doc.text.startswith("# edit 2")
    engine.close()


def test_uncommitted_changes_of_other_files_come_from_git(engine_ro: ContextEngine, repo_ro: Path) -> None:
    result = gather(engine_ro, query_at(repo_ro, "pkg/units.py", "return Point("), sources=("git",))
    (snippet,) = result.snippets
    assert snippet.source == "git" and snippet.path == "pkg/geometry.py"
    assert "def scale(p: Point, k: float) -> Point:" in snippet.text
    # co-change history ranks geometry.py up for units.py
    assert engine_ro.co_change("pkg/units.py", "pkg/geometry.py") > engine_ro.co_change("pkg/units.py", "web/app.js")
    # the file being edited is not shown its own diff
    own = gather(engine_ro, query_at(repo_ro, "pkg/geometry.py", "def midpoint"), sources=("git",))
    assert not own.snippets


def test_scope_shows_headers_the_window_does_not(tmp_path: Path) -> None:
    body = "\n".join(f"        total += {i}" for i in range(80))
    text = (
        '"""Module doc."""\n\nclass Ledger:\n    """Keeps totals."""\n\n    def first(self):\n        pass\n\n'
        f'    def add_many(self, items):\n        """Add a lot."""\n        total = 0\n{body}\n        return to\n\n'
        "    def last(self):\n        pass\n"
    )
    (tmp_path / "ledger.py").write_text(text)
    engine = ContextEngine(tmp_path, cache_file=False)
    offset = text.index("return to") + len("return to")
    uri = (tmp_path / "ledger.py").as_uri()
    query = ContextQuery(text, offset, "python", "ledger.py", uri, (offset - 300, offset + 1))
    result = gather(engine, query, sources=("scope",))
    (snippet,) = result.snippets
    assert "class Ledger:" in snippet.text
    assert "    def add_many(self, items):" in snippet.text and "Add a lot." in snippet.text
    assert "def first(self)" in snippet.text and "def last(self)" in snippet.text
    assert "total += 3" not in snippet.text
    # a prompt with no text after the cursor (prefix-only formats) gets the enclosing headers without siblings
    (bare,) = gather(
        engine, ContextQuery(text, offset, "python", "ledger.py", uri, (offset - 300, offset)), ("scope",)
    ).snippets
    assert "class Ledger:" in bare.text and "def add_many(self, items):" in bare.text
    assert "def first" not in bare.text and "def last" not in bare.text
    # when the window shows everything, the scope has nothing to add
    full = ContextQuery(text, offset, "python", "ledger.py", "", (0, len(text)))
    assert not gather(engine, full, sources=("scope",)).snippets


def test_scope_without_grammar_uses_indentation(tmp_path: Path) -> None:
    text = "section one\n  item a\n  item b\n" + "".join(f"    detail {i}\n" for i in range(40)) + "    det"
    engine = ContextEngine(None)
    query = ContextQuery(text, len(text), "plaintext", "notes.txt", "", (len(text) - 100, len(text)))
    (snippet,) = gather(engine, query, sources=("scope",)).snippets
    assert snippet.text == "section one\n  item b"


def test_ring_evicts_near_duplicates_and_keeps_a_bound() -> None:
    ring = Ring(size=4)
    base = "\n".join(f"line {i} = compute({i})" for i in range(40))
    ring.add("a.py", "file:///a.py", 0, base)
    ring.add("a.py", "file:///a.py", 0, base + "\nextra = 1")  # the same region, edited: replaces the old chunk
    assert len(ring) == 1 and ring.chunks()[0].text.endswith("extra = 1")
    for n in range(6):
        ring.add(f"f{n}.py", f"file:///f{n}.py", 0, "\n".join(f"other_{n}_{i}()" for i in range(20)))
    assert len(ring) == 4
    assert [c.path for c in ring.chunks()] == ["f2.py", "f3.py", "f4.py", "f5.py"]
    assert line_similarity(base, base) == 1.0
    assert ring.add("x.py", "file:///x.py", 0, "tiny") is None


def test_ring_drops_chunks_similar_to_the_cursor_and_follows_edits(tmp_path: Path) -> None:
    engine = ContextEngine(None)
    store = DocumentStore()
    engine.attach(store)
    shared = "".join(f"value_{i} = lookup('{i}')\n" for i in range(30))
    store.open("file:///w/copy.py", shared, 1, "python")
    store.open("file:///w/other.py", "".join(f"def helper_{i}():\n    return {i}\n" for i in range(30)), 1, "python")
    store.open("file:///w/here.py", shared + "x = ", 1, "python")
    text = shared + "x = "
    query = ContextQuery(text, len(text), "python", "here.py", "file:///w/here.py", (0, len(text)))
    result = gather(engine, query, sources=("ring",))
    paths = [s.path for s in result.snippets]
    assert "other.py" in paths  # viewed
    assert "copy.py" not in paths  # near-copy of the text around the cursor
    assert "here.py" not in paths  # never the current file


def test_budgets_are_respected(engine_ro: ContextEngine, repo_ro: Path) -> None:
    count = TokenEstimator()
    query = query_at(repo_ro, "app/main.py", "m = midpoint(a, b)\n")
    for budget in (0, 20, 60, 150, 400, 3000):
        result = engine_ro.gather(query, ALL, budget, count, time.monotonic() + 1)
        assert sum(result.tokens.values()) <= budget
        for source, used in result.tokens.items():
            assert used <= int(budget * SOURCE_SHARE[source])
        for snippet in result.snippets:
            assert count(snippet.text) <= budget
    assert not engine_ro.gather(query, ALL, 0, count, time.monotonic() + 1).snippets


class _Slow:
    name = "definitions"

    def __init__(self) -> None:
        self.calls = 0

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        self.calls += 1
        while not budget.expired():  # a well-behaved slow source gives up at its deadline
            time.sleep(0.001)
        return [Candidate(Snippet("definitions", "late.py", "late = 1"), 3)]


def test_one_slow_source_does_not_delay_the_request(repo_ro: Path) -> None:
    engine = ContextEngine(repo_ro, cache_file=False)
    slow = _Slow()
    engine.sources["definitions"] = slow
    query = query_at(repo_ro, "app/main.py", "m = midpoint(a, b)\n")
    t0 = time.monotonic()
    result = engine.gather(query, ALL, 2000, TokenEstimator(), t0 + 0.010)
    elapsed = time.monotonic() - t0
    assert slow.calls == 1
    assert elapsed < 0.2  # the per-source and request deadlines cut it short
    assert result.timings_ms["definitions"] < 100
    skipped = [name for name, note in result.notes.items() if note.startswith("skipped")]
    assert set(skipped) <= {"similar", "ring", "git"}


def test_an_untimed_engine_lets_every_source_finish(repo_ro: Path) -> None:
    """Quality measurements run untimed: a request whose deadline has passed still gets what each source finds,
    so the context of a task does not depend on how loaded the machine was."""
    timed = ContextEngine(repo_ro, cache_file=False)
    untimed = ContextEngine(repo_ro, cache_file=False, timed=False)
    query = query_at(repo_ro, "app/main.py", "m = midpoint(a, b)\n")
    try:
        for engine in (timed, untimed):
            engine.index_now()
        late = time.monotonic() - 1.0
        assert not timed.gather(query, ALL, 2000, TokenEstimator(), late).snippets
        result = untimed.gather(query, ALL, 2000, TokenEstimator(), late)
        assert "def midpoint(a: Point, b: Point) -> Point" in prompt_text(result)
        assert not any(note.startswith("skipped") for note in result.notes.values())
    finally:
        timed.close()
        untimed.close()


def test_source_switches(engine_ro: ContextEngine, repo_ro: Path) -> None:
    query = query_at(repo_ro, "app/main.py", "m = midpoint(a, b)\n")
    none = gather(engine_ro, query, sources=())
    assert not none.snippets
    assert all(note == "off" for note in none.notes.values())
    only_defs = gather(engine_ro, query, sources=("definitions",))
    assert {s.source for s in only_defs.snippets} == {"definitions"}


def test_snippets_come_in_stable_order(engine_ro: ContextEngine, repo_ro: Path) -> None:
    query = query_at(repo_ro, "pkg/units.py", "return Point(", window=40)
    first = gather(engine_ro, query)
    again = gather(engine_ro, query)
    assert [(s.source, s.path) for s in first.snippets] == [(s.source, s.path) for s in again.snippets]
    ranks = [SOURCE_ORDER.index(s.source) for s in first.snippets]
    assert ranks == sorted(ranks)


BAD_INPUTS = {
    "syntax_error.py": "def broken(:\n    return ((\nclass\n",
    "mixed_endings.py": "a = 1\r\nb = 2\rc = 3\ndef f():\r\n    return a\r",
    "long_line.js": "const x = [" + ", ".join(str(i) for i in range(20000)) + "];\n",
    "weird.go": "package main\nfunc \x00bad( {\n",
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_degrades_gracefully(tmp_path: Path, name: str) -> None:
    text = BAD_INPUTS[name]
    (tmp_path / name).write_text(text, newline="")
    (tmp_path / "bytes.py").write_bytes(b"def caf\xe9():\n    return 1\n")
    engine = ContextEngine(tmp_path, cache_file=False)
    engine.index_now()
    store = DocumentStore()
    engine.attach(store)
    uri = (tmp_path / name).as_uri()
    store.open(uri, text, 1, "")
    for offset in (0, len(text) // 2, len(text)):
        query = ContextQuery(text, offset, "", name, uri, (max(0, offset - 50), offset))
        result = gather(engine, query)
        assert "failed" not in result.notes.values()
        assert result.snap is not None
        start, end = result.snap(max(0, offset - 50), offset)
        assert start <= offset <= end


def test_watched_file_changes_update_the_index(repo: Path) -> None:
    engine = ContextEngine(repo, cache_file=False)
    engine.index_now()
    new = repo / "pkg/extra.py"
    new.write_text("def freshly_created(x):\n    return x\n")
    engine.on_files_changed([new.as_uri(), (repo / "outside/../../elsewhere.py").as_uri()])
    assert engine.wait_idle()
    assert engine.index is not None and engine.index.lookup("freshly_created")
    (repo / ".gitignore").write_text((repo / ".gitignore").read_text() + "pkg/extra.py\n")
    engine.on_files_changed([(repo / ".gitignore").as_uri()])
    assert engine.wait_idle()
    assert not engine.index.lookup("freshly_created")  # now ignored: gone after the re-listing
    assert engine.rel_path("file:///somewhere/else.py") is None
    engine.close()


def test_an_edit_is_parsed_in_the_background_before_the_request_asks(repo: Path) -> None:
    engine = ContextEngine(repo, cache_file=False)
    store = DocumentStore()
    engine.attach(store)
    main = repo / "app/main.py"
    uri = main.as_uri()
    store.open(uri, main.read_text(), 1, "python")
    assert engine.wait_idle()
    parses = sum(engine.trees.stats(uri))
    store.change(uri, 2, [("x = 1\n", (0, 0), (0, 0))])
    assert engine.wait_idle()
    full, incremental = engine.trees.stats(uri)
    assert full + incremental == parses + 1  # nobody asked for the tree: the worker parsed it after the edit
    engine.close()
