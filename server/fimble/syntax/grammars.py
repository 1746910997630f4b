"""tree-sitter grammars from single PyPI wheels, chosen by LSP languageId with the file extension as fallback (the
choice and the wheel of each grammar are in fimble/languages.py).

Each grammar wheel is imported lazily on first use so a missing or broken wheel costs only its own language
(callers then get None and fall back to plain-text context), and start-up does not pay for ten grammars.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import PurePath

import tree_sitter

from fimble.languages import GRAMMARS, grammar_name

_lock = threading.Lock()
_languages: dict[str, tree_sitter.Language | None] = {}
_local = threading.local()


def supported_languages() -> list[str]:
    return sorted(GRAMMARS)


def get_language(language_id: str | None, path: str | PurePath | None = None) -> tree_sitter.Language | None:
    """The tree-sitter Language for an LSP languageId (extension of `path` as fallback), or None."""
    name = grammar_name(language_id, path)
    if name is None:
        return None
    with _lock:
        if name in _languages:
            return _languages[name]
        module_name, attr = GRAMMARS[name]
        lang: tree_sitter.Language | None
        try:
            module = importlib.import_module(module_name)
            lang = tree_sitter.Language(getattr(module, attr)())
        except (ImportError, AttributeError, ValueError, TypeError):
            # Missing wheel or ABI mismatch: this language degrades to plain text, the rest keep working.
            lang = None
        _languages[name] = lang
        return lang


def get_parser(language_id: str | None, path: str | PurePath | None = None) -> tree_sitter.Parser | None:
    """A parser for the language, or None. Parsers are not thread-safe, so each thread gets its own."""
    lang = get_language(language_id, path)
    if lang is None:
        return None
    cache: dict[int, tree_sitter.Parser] | None = getattr(_local, "parsers", None)
    if cache is None:
        cache = {}
        _local.parsers = cache
    parser = cache.get(id(lang))
    if parser is None:
        parser = tree_sitter.Parser(lang)
        cache[id(lang)] = parser
    return parser
