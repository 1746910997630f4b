"""The definitions source on names the code near the cursor does not use yet: imports, re-exports, module
attributes, and the brief form that lets more of them fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fimble.context.engine import ContextEngine
from fimble.context.source_types import ContextQuery
from fimble.index.render import render_file
from fimble.index.symbols import Symbol
from fimble.syntax.specs import spec_for
from tests.context.conftest import gather, prompt_text, write_files

FILLER = "".join(f"# note {i}\n" for i in range(60))  # puts the imports out of the names' reach (40 lines)

FILES = {
    "pkg/__init__.py": "from .models import Thing\n",
    "pkg/models.py": (
        "class Thing:\n"
        '    """A thing with a size."""\n\n'
        "    def __init__(self, size: int) -> None:\n"
        "        self.size = size\n\n"
        '    def grow(self, by: int) -> "Thing":\n'
        '        """A bigger thing."""\n'
        "        return Thing(self.size + by)\n"
    ),
    "pkg/tools.py": 'def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n\n\nLIMIT = 10\n',
    # imports far above the cursor; Thing is used once already, double not at all
    "app/build.py": "from pkg import Thing\nfrom pkg.tools import double\n\nFIRST = Thing(1)\n"
    + FILLER
    + "\n\ndef build(n):\n    size = n\n    ",
    "app/attrs.py": "from pkg import tools\n\n\ndef run():\n    return tools.double(tools.LIMIT)\n",
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContextEngine]:
    root = tmp_path_factory.mktemp("defs") / "repo"
    write_files(root, FILES)
    engine = ContextEngine(root, cache_file=False)
    engine.index_now()
    yield engine
    engine.close()


def _at_end(engine: ContextEngine, rel: str) -> ContextQuery:
    assert engine.root is not None
    text = (engine.root / rel).read_text()
    return ContextQuery(text, len(text), "python", rel, (engine.root / rel).as_uri(), (len(text) - 40, len(text)))


def test_imported_names_reach_the_prompt_before_their_first_use(engine: ContextEngine) -> None:
    result = gather(engine, _at_end(engine, "app/build.py"), sources=("definitions",))
    text = prompt_text(result)
    assert "def double(x: int) -> int" in text, text  # imported, not used yet: the likeliest next use
    # re-exported by pkg/__init__.py: found where it is defined
    assert "definitions pkg/models.py\nclass Thing:" in text, text
    scores = {s.path: s.score for s in result.snippets}
    assert scores["pkg/tools.py"] > scores["pkg/models.py"]  # the unused import ranks above the used one


def test_a_module_imported_from_its_package_resolves_its_attributes(engine: ContextEngine) -> None:
    text = prompt_text(gather(engine, _at_end(engine, "app/attrs.py"), sources=("definitions",)))
    assert "def double(x: int) -> int" in text and "LIMIT = 10" in text, text


def test_a_tight_budget_shows_more_names_briefly_rather_than_fewer_in_full(engine: ContextEngine) -> None:
    roomy = prompt_text(gather(engine, _at_end(engine, "app/build.py"), sources=("definitions",), budget=2000))
    assert "A thing with a size." in roomy and "def grow" in roomy and "Twice x." in roomy
    tight = gather(engine, _at_end(engine, "app/build.py"), sources=("definitions",), budget=110)
    text = prompt_text(tight)
    assert "def double(x: int) -> int" in text and "def __init__(self, size: int)" in text, text
    assert "def grow" not in text


def test_render_file_brief_form() -> None:
    spec = spec_for("python")
    assert spec is not None
    cls = Symbol("Thing", "class", 0, "", "class Thing:", '"""A thing."""', 9)
    init = Symbol("__init__", "function", 2, "Thing", "def __init__(self, size: int) -> None: ...", "", 3)
    grow = Symbol("grow", "function", 5, "Thing", "def grow(self, by: int) -> Thing: ...", '"""Bigger."""', 8)
    func = Symbol("double", "function", 11, "", "def double(x: int) -> int: ...", '"""Twice x."""', 12)
    symbols = [cls, init, grow, func]
    full = render_file(spec, [cls, func], symbols)
    assert '"""A thing."""' in full and "def grow" in full and '"""Twice x."""' in full
    brief = render_file(spec, [cls, func], symbols, brief=[cls, func])
    assert brief == "class Thing:\n    def __init__(self, size: int) -> None: ...\n\ndef double(x: int) -> int: ..."
    # a chosen method shows under its class header, without the class's other members
    assert render_file(spec, [grow], symbols) == (
        'class Thing:\n    def grow(self, by: int) -> Thing:\n        """Bigger."""\n        ...'
    )


def test_words_in_comments_and_strings_are_not_names(tmp_path: Path) -> None:
    files = {
        "lib/store.py": "def store(x):\n    return x\n\n\ndef shout(s):\n    return s\n\n\ndef keep(v):\n    return v\n",
        "app.py": (
            'def run(v):\n    """We store everything."""  \n    # shout about it\n    print(f"{keep(v)} shout")\n    '
        ),
    }
    write_files(tmp_path, files)
    engine = ContextEngine(tmp_path, cache_file=False)
    engine.index_now()
    try:
        text = prompt_text(gather(engine, _at_end(engine, "app.py"), sources=("definitions",)))
    finally:
        engine.close()
    assert "def keep(v)" in text, text  # used in an f-string interpolation: code
    assert "def store" not in text and "def shout" not in text, text
