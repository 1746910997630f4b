"""Grammar loading: every promised language from its wheel, by languageId or extension, None when unknown."""

from __future__ import annotations

import threading

import pytest

from fimble.languages import GRAMMARS, LANGUAGES, comment_prefix, grammar_name, language_from_path, watch_glob
from fimble.syntax.grammars import get_language, get_parser, supported_languages

LANGUAGE_IDS = {
    "python": "python", "javascript": "javascript", "javascriptreact": "javascript", "typescript": "typescript",
    "typescriptreact": "tsx", "go": "go", "rust": "rust", "c": "c", "cpp": "cpp", "java": "java", "lua": "lua",
    "shellscript": "bash", "bash": "bash",
}  # fmt: skip


@pytest.mark.parametrize(("language_id", "grammar"), sorted(LANGUAGE_IDS.items()))
def test_language_ids_load_a_grammar(language_id: str, grammar: str) -> None:
    assert grammar_name(language_id) == grammar
    assert get_language(language_id) is not None
    parser = get_parser(language_id)
    assert parser is not None
    assert parser.parse(b"x").root_node is not None


def test_all_ten_languages_are_supported() -> None:
    assert {"python", "javascript", "typescript", "tsx", "go", "rust", "c", "cpp", "java", "lua", "bash"} <= set(
        supported_languages()
    )


def test_extension_is_the_fallback_for_unknown_or_generic_ids() -> None:
    assert grammar_name("plaintext", "a/b.tsx") == "tsx"
    assert grammar_name("", "x.hpp") == "cpp"
    assert grammar_name(None, "run.sh") == "bash"
    assert grammar_name("python", "odd.js") == "python"  # the client's languageId wins


def test_unknown_language_has_no_grammar() -> None:
    assert get_language("markdown", "README.md") is None
    assert get_parser("cobol") is None
    assert get_language(None) is None


def test_parsers_are_per_thread() -> None:
    mine = get_parser("python")
    theirs: list[object] = []
    t = threading.Thread(target=lambda: theirs.append(get_parser("python")))
    t.start()
    t.join()
    assert mine is get_parser("python")
    assert theirs[0] is not mine


def test_the_registry_names_each_extension_and_id_once() -> None:
    """The lookups are dicts built from the table: a second claim on an extension or an id would silently win."""
    extensions = [ext for lang in LANGUAGES for ext in lang.extensions]
    ids = [name for lang in LANGUAGES for name in (lang.id, *lang.aliases)]
    assert len(extensions) == len(set(extensions))
    assert len(ids) == len(set(ids))
    assert all(ext.startswith(".") and ext == ext.lower() for ext in extensions)
    assert {lang.grammar for lang in LANGUAGES if lang.grammar} == set(GRAMMARS)


def test_file_language_comment_mark_and_watch_glob_derive_from_the_registry() -> None:
    assert language_from_path("pkg/mod.pyi") == "python"
    assert language_from_path("App.TSX") == "typescriptreact"
    assert language_from_path("notes.txt") == "plaintext"
    assert [comment_prefix(x) for x in ("python", "bash", "zsh", "lua", "lisp", "rust", "cobol")] == [
        "#", "#", "#", "--", ";", "//", "//",
    ]  # fmt: skip
    glob = watch_glob()
    for lang in LANGUAGES:
        for ext in lang.extensions:
            # a file the index reads is a file the editor is asked to report changes of, and no other
            assert (f",{ext[1:]}," in glob.replace("{", ",").replace("}", ",")) == (
                grammar_name(None, "f" + ext) is not None
            )
