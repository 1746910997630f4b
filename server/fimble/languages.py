"""Every language fimble knows, once: its LSP languageId, the other ids clients send for it, its file extensions,
its tree-sitter grammar and its line-comment mark. Everything else derives from this table: the language of a file
the editor has not opened, the grammar of a document, the comment syntax of context in a prompt, the files the
editor is asked to watch.

Plain data and pure lookups (no tree-sitter here): `syntax/grammars.py` loads the grammars named below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class Language:
    id: str  # the LSP languageId, as VS Code names it
    extensions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other languageIds editors send for it (Neovim filetypes, short names)
    grammar: str | None = None  # a key of GRAMMARS; None: no syntax tree, plain-text context
    comment: str = "//"


LANGUAGES: tuple[Language, ...] = (
    Language("python", (".py", ".pyi", ".pyw"), ("py",), "python", "#"),
    Language("javascript", (".js", ".mjs", ".cjs"), ("js",), "javascript"),
    Language("javascriptreact", (".jsx",), ("jsx",), "javascript"),
    Language("typescript", (".ts", ".mts", ".cts"), ("ts",), "typescript"),
    Language("typescriptreact", (".tsx",), ("tsx",), "tsx"),
    Language("go", (".go",), ("golang",), "go"),
    Language("rust", (".rs",), ("rs",), "rust"),
    Language("c", (".c", ".h"), (), "c"),
    Language("cpp", (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".ipp", ".inl"), ("c++",), "cpp"),
    Language("cuda-cpp", (".cu",), (), "cpp"),
    Language("objective-cpp", (), (), "cpp"),
    Language("java", (".java",), (), "java"),
    Language("lua", (".lua",), (), "lua", "--"),
    Language("shellscript", (".sh", ".bash", ".zsh", ".ksh"), ("bash", "sh", "zsh", "shell"), "bash", "#"),
    Language("ruby", (".rb",), comment="#"),
    Language("perl", comment="#"),
    Language("r", comment="#"),
    Language("yaml", (".yaml", ".yml"), comment="#"),
    Language("toml", (".toml",), comment="#"),
    Language("dockerfile", comment="#"),
    Language("makefile", comment="#"),
    Language("elixir", comment="#"),
    Language("julia", comment="#"),
    Language("nim", comment="#"),
    Language("sql", (".sql",), comment="--"),
    Language("haskell", comment="--"),
    Language("ada", comment="--"),
    Language("lisp", comment=";"),
    Language("clojure", comment=";"),
    Language("scheme", comment=";"),
    Language("markdown", (".md",)),
    Language("json", (".json",)),
    Language("kotlin", (".kt",)),
    Language("swift", (".swift",)),
    Language("csharp", (".cs",)),
    Language("php", (".php",)),
    Language("html", (".html",)),
    Language("css", (".css",)),
)

# Grammar name -> (the PyPI wheel's module, the function in it returning the language pointer).
GRAMMARS: dict[str, tuple[str, str]] = {
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

PLAIN_TEXT = "plaintext"

_BY_ID: dict[str, Language] = {
    **{alias: lang for lang in LANGUAGES for alias in lang.aliases},
    **{lang.id: lang for lang in LANGUAGES},
}
_BY_EXTENSION: dict[str, Language] = {ext: lang for lang in LANGUAGES for ext in lang.extensions}

# Every line-comment mark of the table: a lexical check that does not trust the languageId looks for these.
LINE_COMMENT_MARKS: tuple[str, ...] = tuple(dict.fromkeys(lang.comment for lang in LANGUAGES))


def by_id(language_id: str | None) -> Language | None:
    """The language a client's languageId (or one of its aliases, in any case) names; None when unknown."""
    return _BY_ID.get(language_id.lower()) if language_id else None


def by_path(path: str | PurePath) -> Language | None:
    return _BY_EXTENSION.get(PurePath(path).suffix.lower())


def language_from_path(path: str | PurePath) -> str:
    """The languageId of a file the editor has not opened (the CLI, workspace files), from its extension."""
    lang = by_path(path)
    return lang.id if lang is not None else PLAIN_TEXT


def grammar_name(language_id: str | None, path: str | PurePath | None = None) -> str | None:
    """The grammar for a document: its languageId first, then its file extension; None for unknown languages.

    A languageId without a grammar (such as 'plaintext', '' or 'markdown') defers to the extension, because clients
    send those for files they do not recognise even when the extension is plain. A grammar's own name is accepted
    as a languageId too.
    """
    lang = by_id(language_id)
    if lang is not None and lang.grammar is not None:
        return lang.grammar
    if language_id and language_id.lower() in GRAMMARS:
        return language_id.lower()
    if path is not None:
        lang = by_path(path)
        return lang.grammar if lang is not None else None
    return None


def comment_prefix(language_id: str) -> str:
    """The line-comment mark of a language ('//' for languages not in the table)."""
    lang = by_id(language_id)
    return lang.comment if lang is not None else "//"


def is_python(language_id: str | None, path: str | PurePath | None = None) -> bool:
    """Python by its languageId or, whatever the client called it, by its file extension."""
    lang = by_id(language_id)
    return (lang is not None and lang.id == "python") or (
        path is not None and (p := by_path(path)) is not None and p.id == "python"
    )


def watch_glob() -> str:
    """One glob for every file that has a grammar (what the workspace index reads)."""
    extensions = sorted({ext[1:] for lang in LANGUAGES if lang.grammar is not None for ext in lang.extensions})
    return "**/*.{" + ",".join(extensions) + "}"
