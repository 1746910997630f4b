"""Language ids (as LSP clients name them) from file names, for the CLI and for files the editor has not opened."""

from __future__ import annotations

from pathlib import PurePath

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascriptreact", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "typescriptreact", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".java": "java", ".lua": "lua", ".sh": "shellscript",
    ".bash": "shellscript", ".zsh": "shellscript", ".rb": "ruby", ".md": "markdown", ".json": "json",
    ".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".sql": "sql", ".kt": "kotlin", ".swift": "swift",
    ".cs": "csharp", ".php": "php", ".html": "html", ".css": "css",
}  # fmt: skip


def language_from_path(path: str | PurePath) -> str:
    return EXTENSIONS.get(PurePath(path).suffix.lower(), "plaintext")
