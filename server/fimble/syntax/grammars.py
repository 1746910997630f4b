"""tree-sitter grammars from single PyPI wheels, chosen by LSP languageId with the file extension as fallback.

Each grammar wheel is imported lazily on first use so a missing or broken wheel costs only its own language
(callers then get None and fall back to plain-text context), and start-up does not pay for ten grammars.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import PurePath

import tree_sitter

# Grammar name -> (wheel module, function in it returning the language pointer).
_GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "java": ("tree_sitter_java", "language"),
    "lua": ("tree_sitter_lua", "language"),
    "bash": ("tree_sitter_bash", "language"),
}

# LSP languageIds (as VS Code, Neovim and others send them) -> grammar name.
_LANGUAGE_IDS: dict[str, str] = {
    "python": "python", "py": "python",
    "javascript": "javascript", "js": "javascript", "javascriptreact": "javascript", "jsx": "javascript",
    "typescript": "typescript", "ts": "typescript",
    "typescriptreact": "tsx", "tsx": "tsx",
    "go": "go", "golang": "go",
    "rust": "rust", "rs": "rust",
    "c": "c",
    "cpp": "cpp", "c++": "cpp", "cuda-cpp": "cpp", "objective-cpp": "cpp",
    "java": "java",
    "lua": "lua",
    "shellscript": "bash", "bash": "bash", "sh": "bash", "zsh": "bash", "shell": "bash",
}  # fmt: skip

_EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".rs": "rust",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".ipp": "cpp", ".inl": "cpp", ".cu": "cpp",
    ".java": "java", ".lua": "lua",
    ".sh": "bash", ".bash": "bash", ".zsh": "bash", ".ksh": "bash",
}  # fmt: skip

_lock = threading.Lock()
_languages: dict[str, tree_sitter.Language | None] = {}
_local = threading.local()


def grammar_name(language_id: str | None, path: str | PurePath | None = None) -> str | None:
    """The grammar for a document: its languageId first, then its file extension; None for unknown languages.

    A generic languageId such as 'plaintext' or '' defers to the extension, because clients send those for files
    they do not recognise even when the extension is plain.
    """
    if language_id:
        name = _LANGUAGE_IDS.get(language_id.lower())
        if name is not None:
            return name
        if language_id.lower() in _GRAMMARS:
            return language_id.lower()
    if path is not None:
        return _EXTENSIONS.get(PurePath(path).suffix.lower())
    return None


def supported_languages() -> list[str]:
    return sorted(_GRAMMARS)


def get_language(language_id: str | None, path: str | PurePath | None = None) -> tree_sitter.Language | None:
    """The tree-sitter Language for an LSP languageId (extension of `path` as fallback), or None."""
    name = grammar_name(language_id, path)
    if name is None:
        return None
    with _lock:
        if name in _languages:
            return _languages[name]
        module_name, attr = _GRAMMARS[name]
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
