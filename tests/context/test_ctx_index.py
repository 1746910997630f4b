"""Symbol extraction, module resolution and the workspace index on fixture repositories."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from fimble.index.gitinfo import GitInfo, parse_diff
from fimble.index.import_resolution import FileSet, resolve_import
from fimble.index.symbols import Import, extract_imports
from fimble.index.workspace import WorkspaceIndex, index_source
from fimble.index.workspace_files import IgnoreRules
from fimble.syntax.grammars import get_parser
from tests.context.conftest import FILES, SECRET, make_repo, write_files


def symbols(rel: str) -> dict[str, str]:
    from fimble.languages import grammar_name

    grammar = grammar_name(None, rel)
    assert grammar is not None
    return {s.name: s.kind for s in index_source(FILES[rel].encode(), grammar)}


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        (
            "pkg/geometry.py",
            {"Point": "class", "__init__": "function", "distance_to": "function", "midpoint": "function"},
        ),
        ("web/lib/math.js", {"addNumbers": "function", "TAU": "variable"}),
        ("web/src/types.ts", {"User": "type", "displayName": "function"}),
        ("shapes/shapes.go", {"Rect": "type", "Area": "function"}),
        ("rs/src/geometry.rs", {"Vec2": "type", "dot": "function"}),
        ("c/vec.h", {"vec3": "type", "vec3_add": "function", "VEC_H": "macro"}),
        ("cpp/shape.hpp", {"Shape": "class", "area": "function"}),
        ("java/com/acme/util/Greeter.java", {"Greeter": "class", "greet": "function"}),
        ("lua/strutil.lua", {"trim": "function"}),
        ("sh/lib.sh", {"greet_user": "function"}),
    ],
)
def test_definitions_per_language(rel: str, expected: dict[str, str]) -> None:
    found = symbols(rel)
    for name, kind in expected.items():
        assert found.get(name) == kind, (name, found)


def test_signatures_carry_docstrings_and_stub_bodies() -> None:
    syms = {s.name: s for s in index_source(FILES["pkg/geometry.py"].encode(), "python")}
    assert syms["midpoint"].sig == "def midpoint(a: Point, b: Point) -> Point: ..."
    assert "halfway" in syms["midpoint"].doc
    assert syms["distance_to"].container == "Point"
    go = {s.name: s for s in index_source(FILES["shapes/shapes.go"].encode(), "go")}
    assert go["Area"].sig == "func Area(r Rect) float64 { ... }"
    assert go["Area"].doc == "// Area returns the area of r."
    assert go["Rect"].sig.startswith("type Rect struct")


@pytest.mark.parametrize(
    ("rel", "grammar", "module", "names"),
    [
        ("app/main.py", "python", "pkg.geometry", {("Point", "Point"), ("midpoint", "midpoint")}),
        ("web/app.js", "javascript", "./lib/math", {("addNumbers", "addNumbers")}),
        ("cmd/main.go", "go", "example.com/proj/shapes", {("shapes", "*")}),
        ("rs/src/main.rs", "rust", "crate::geometry", {("dot", "dot"), ("Vec2", "Vec2")}),
        ("c/main.c", "c", "vec.h", {("*", "*")}),
        ("java/com/acme/App.java", "java", "com.acme.util", {("Greeter", "Greeter")}),
        ("lua/main.lua", "lua", "strutil", {("strutil", "*")}),
        ("sh/run.sh", "bash", "./lib.sh", {("*", "*")}),
    ],
)
def test_imports_per_language(rel: str, grammar: str, module: str, names: set[tuple[str, str]]) -> None:
    src = FILES[rel].encode()
    parser = get_parser(grammar)
    assert parser is not None
    imports = extract_imports(parser.parse(src), src, grammar)
    match = [i for i in imports if i.module == module]
    assert match, imports
    assert names <= set(match[0].names)


def test_module_resolution() -> None:
    files = FileSet.of(FILES)
    assert resolve_import(Import("pkg.geometry", (("Point", "Point"),)), "app/main.py", "python", files) == [
        "pkg/geometry.py"
    ]
    rel = resolve_import(Import("geometry", (("Point", "Point"),), level=1), "pkg/units.py", "python", files)
    assert rel == ["pkg/geometry.py"]
    assert resolve_import(Import("./lib/math"), "web/app.js", "javascript", files) == ["web/lib/math.js"]
    assert resolve_import(Import("./types"), "web/src/service.ts", "typescript", files) == ["web/src/types.ts"]
    assert resolve_import(Import("react"), "web/app.js", "javascript", files) == []
    assert resolve_import(Import("example.com/proj/shapes"), "cmd/main.go", "go", files) == ["shapes/shapes.go"]
    assert resolve_import(Import("crate::geometry"), "rs/src/main.rs", "rust", files) == ["rs/src/geometry.rs"]
    assert resolve_import(Import("self::geometry"), "rs/src/main.rs", "rust", files) == ["rs/src/geometry.rs"]
    assert resolve_import(Import("vec.h", level=1), "c/main.c", "c", files) == ["c/vec.h"]
    java = resolve_import(Import("com.acme.util", (("Greeter", "Greeter"),)), "java/com/acme/App.java", "java", files)
    assert java == ["java/com/acme/util/Greeter.java"]
    assert resolve_import(Import("strutil"), "lua/main.lua", "lua", files) == ["lua/strutil.lua"]
    assert resolve_import(Import("./lib.sh", level=1), "sh/run.sh", "bash", files) == ["sh/lib.sh"]


def test_python_src_layout_resolves_by_suffix() -> None:
    files = FileSet.of(["server/fimble/context/source_types.py", "server/fimble/__init__.py", "tests/base.py"])
    got = resolve_import(Import("fimble.context.source_types"), "server/fimble/cli/x.py", "python", files)
    assert got == ["server/fimble/context/source_types.py"]


def test_index_skips_ignored_vendored_generated_and_binary(repo_ro: Path) -> None:
    index = WorkspaceIndex(repo_ro, GitInfo.discover(repo_ro))
    stats = index.build()
    assert stats.source == "git"
    indexed = set(index.files.paths)
    assert "pkg/geometry.py" in indexed and "cmd/main.go" in indexed
    for bad in ("secret/keys.py", "node_modules/leftpad/index.js", "gen/api_pb2.py", "debug.log"):
        assert bad not in indexed
        assert index.allowed(bad) is not True
    assert not index.lookup("helper_from_secret")
    assert index.check_allowed(["secret/keys.py", "pkg/units.py"]) == {"secret/keys.py": False, "pkg/units.py": True}


def test_persisted_index_is_reused_and_invalidated_per_file(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "index.json"
    first = WorkspaceIndex(repo, GitInfo.discover(repo), cache)
    s1 = first.build()
    assert s1.parsed > 10 and s1.reused == 0
    assert first.save() and cache.is_file()
    again = WorkspaceIndex(repo, GitInfo.discover(repo), cache)
    s2 = again.build()
    assert s2.parsed == 0 and s2.reused == s1.indexed
    assert again.lookup("midpoint")
    # one file changes: only it is parsed again
    path = repo / "web/lib/math.js"
    path.write_text(path.read_text() + "\nexport function subtractNumbers(a, b) { return a - b; }\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = WorkspaceIndex(repo, GitInfo.discover(repo), cache)
    s3 = third.build()
    assert s3.parsed == 1
    assert third.lookup("subtractNumbers")


def test_update_one_file_is_fast_and_complete(repo: Path) -> None:
    index = WorkspaceIndex(repo, GitInfo.discover(repo))
    index.build()
    path = repo / "pkg/units.py"
    path.write_text("def to_feet(x):\n    return x * 3.28\n")
    t0 = time.perf_counter()
    assert index.update_path("pkg/units.py")
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5  # generous for a loaded CI machine; the benchmark measures the real number
    assert index.lookup("to_feet") and not index.lookup("to_metres")
    path.unlink()
    assert index.update_path("pkg/units.py")
    assert not index.lookup("to_feet")
    # a new file in an ignored folder never enters the index
    (repo / "secret/more.py").write_text("def also_secret():\n    pass\n")
    assert not index.update_path("secret/more.py")
    assert not index.lookup("also_secret")


def test_workspace_without_git_uses_walk_and_gitignore(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    write_files(root, FILES)
    (root / "loop").mkdir()
    (root / "loop/self").symlink_to(root / "loop", target_is_directory=True)  # a symlink loop
    (root / "pkg/blob.py").write_bytes(b"\x00\x01binary")
    (root / "pkg/latin1.py").write_bytes(b"def caf\xe9():\n    pass\ndef ok_name():\n    pass\n")
    index = WorkspaceIndex(root, GitInfo.discover(root))
    stats = index.build()
    assert stats.source == "walk"
    assert "pkg/geometry.py" in index.files.paths
    assert "secret/keys.py" not in index.files.paths  # root .gitignore honoured without git
    assert "pkg/blob.py" not in index.files.paths
    assert index.lookup("ok_name")  # non-UTF-8 bytes do not stop a file from being indexed


def test_bare_and_broken_repositories_degrade_to_walk(tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    assert GitInfo.discover(bare) is None
    broken = tmp_path / "broken"
    write_files(broken, {"a.py": "def alpha():\n    pass\n"})
    (broken / ".git").mkdir()
    (broken / ".git/HEAD").write_text("garbage")
    assert GitInfo.discover(broken) is None
    index = WorkspaceIndex(broken, None)
    index.build()
    assert index.lookup("alpha")


def test_repository_without_commits(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "fresh", files={"a.py": "def alpha():\n    pass\n", "b.py": "x = 1\n"}, commit=False)
    git = GitInfo.discover(root)
    assert git is not None
    assert git.head() is None
    assert git.co_changes() == {}
    subprocess.run(["git", "add", "a.py"], cwd=root, check=True)
    (root / "a.py").write_text("def alpha():\n    return 2\n")
    assert "a.py" in git.diff_hunks()


def test_gitinfo_hunks_and_co_changes(repo_ro: Path) -> None:
    git = GitInfo.discover(repo_ro)
    assert git is not None
    hunks = git.diff_hunks()
    assert list(hunks) == ["pkg/geometry.py"]
    assert any("def scale" in line for h in hunks["pkg/geometry.py"] for line in h.lines)
    co = git.co_changes()
    assert co["pkg/geometry.py"]["pkg/units.py"] == 2


def test_parse_diff_keeps_post_image() -> None:
    diff = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n+b = 3\n"
    (hunk,) = parse_diff(diff)["x.py"]
    assert hunk.lines == ("a = 1", "b = 3") and hunk.start == 1 and hunk.added == 1 and hunk.removed == 1


def test_ignore_rules_subset() -> None:
    rules = IgnoreRules(
        [("build", False, True, False), ("*.log", False, False, False), ("keep.log", True, False, False)]
    )
    assert rules.ignored("build/x.py")
    assert rules.ignored("a/b.log")
    assert not rules.ignored("keep.log")
    assert not rules.ignored("src/build.py")


def test_secret_never_in_symbol_text(repo_ro: Path) -> None:
    index = WorkspaceIndex(repo_ro, GitInfo.discover(repo_ro))
    index.build()
    for rel in index.files.paths:
        for sym in index.symbols_in(rel):
            assert SECRET not in sym.sig + sym.doc
