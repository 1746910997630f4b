"""The workspace index: files that may be indexed, their definitions by name, module resolution, git facts."""

from fimble.index.gitinfo import GitInfo
from fimble.index.symbols import Import, Symbol
from fimble.index.workspace import BuildStats, WorkspaceIndex

__all__ = ["BuildStats", "GitInfo", "Import", "Symbol", "WorkspaceIndex"]
