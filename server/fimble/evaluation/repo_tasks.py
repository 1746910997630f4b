"""Repository-level line completion tasks built from real Python source trees.

A task masks one line of a package file that uses a name defined in *another* file of the same package (an imported
function, class or constant, or `module.attr` on an imported package module). Those are the lines where cross-file
context can help and the cursor window alone usually cannot: the measure of the context engine. The cursor sits after
the line's indentation (where an editor's auto-indent leaves it) and the target is the rest of the line.
"""

from __future__ import annotations

import ast
import importlib.util
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fimble.errors import FimbleError
from fimble.trust.files import atomic_write_text

MIN_TARGET_CHARS = 6
MAX_TARGET_CHARS = 160
MAX_FILE_BYTES = 400_000  # generated giants (lsprotocol's types.py) are skipped: nobody types them
_REEXPORT_DEPTH = 3


class RepoTaskError(FimbleError):
    """A source tree for repository tasks cannot be found or read."""


@dataclass(frozen=True)
class RepoTask:
    task_id: str  # "pkg/sub/file.py:LINE" (1-based line)
    package: str
    rel_path: str  # relative to the tree root, which holds the package folder: "pygls/server.py"
    line: int  # 0-based line of the masked statement
    prefix: str  # file text before the cursor (ends with the line's indentation)
    suffix: str  # file text after the masked line (starts with its newline)
    target: str  # the masked line without its indentation
    names: tuple[str, ...]  # the cross-file names the line uses

    @property
    def text(self) -> str:
        return self.prefix + self.suffix

    @property
    def offset(self) -> int:
        return len(self.prefix)


@dataclass(frozen=True)
class SourceTree:
    name: str  # the package name, also the name of the folder copied into the temporary workspace
    path: Path  # the package folder itself (holds __init__.py)


def find_package(name: str) -> SourceTree:
    """An importable package's source folder (no import is executed: only its location is looked up)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise RepoTaskError(f"Package {name!r} is not installed here (or is a single module, not a package).")
    return SourceTree(name, Path(locations[0]))


def source_tree(spec: str) -> SourceTree:
    """A package name, or a path to a package folder."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return SourceTree(path.resolve().name, path.resolve())
    return find_package(spec)


# -- the package's definitions --------------------------------------------------------------------------------


def _module_name(package: str, rel: PurePosixPath) -> str:
    parts = [package, *rel.with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(tree: SourceTree) -> Iterator[tuple[str, Path]]:
    for path in sorted(tree.path.rglob("*.py")):
        rel = PurePosixPath(path.relative_to(tree.path).as_posix())
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        yield _module_name(tree.name, rel), path


@dataclass
class _Module:
    name: str
    path: Path
    source: str
    tree: ast.Module
    is_package: bool
    defined: set[str]  # top-level functions, classes and assigned names
    imported: dict[str, tuple[str, str]]  # local name -> (module, name) for `from M import name` inside the package
    module_aliases: dict[str, str]  # local name -> package module it refers to


def _parse_modules(tree: SourceTree) -> dict[str, _Module]:
    modules: dict[str, _Module] = {}
    for name, path in _python_files(tree):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            source = path.read_text(encoding="utf-8")
            parsed = ast.parse(source, filename=str(path))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue  # unreadable or Python-version-specific files simply give no tasks
        modules[name] = _Module(name, path, source, parsed, path.name == "__init__.py", set(), {}, {})
    for mod in modules.values():
        mod.defined = _top_level_names(mod.tree)
    for mod in modules.values():
        _collect_imports(mod, modules, tree.name)
    return modules


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _resolve_from(mod: _Module, node: ast.ImportFrom, package: str) -> str | None:
    if node.level == 0:
        target = node.module or ""
        return target if target == package or target.startswith(package + ".") else None
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    if not base:
        return None
    return ".".join([*base, node.module]) if node.module else ".".join(base)


def _collect_imports(mod: _Module, modules: dict[str, _Module], package: str) -> None:
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve_from(mod, node, package)
            if source is None:
                continue
            for alias in node.names:
                local = alias.asname or alias.name
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    mod.module_aliases[local] = submodule
                elif source in modules:
                    mod.imported[local] = (source, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.asname:
                    mod.module_aliases[alias.asname] = alias.name


def _defining_module(modules: dict[str, _Module], module: str, name: str, depth: int = 0) -> str | None:
    """The module whose source defines `name`, following re-exports (`from .x import name` in __init__)."""
    mod = modules.get(module)
    if mod is None or depth > _REEXPORT_DEPTH:
        return None
    if name in mod.defined:
        return module
    if name in mod.imported:
        source, original = mod.imported[name]
        return _defining_module(modules, source, original, depth + 1)
    return None


def _cross_file_names(mod: _Module, modules: dict[str, _Module]) -> tuple[dict[str, str], dict[str, str]]:
    """(imported name -> defining module, module alias -> module), both limited to other files of the package."""
    names: dict[str, str] = {}
    for local, (source, original) in mod.imported.items():
        where = _defining_module(modules, source, original)
        if where is not None and modules[where].path != mod.path:
            names[local] = where
    aliases = {local: target for local, target in mod.module_aliases.items() if modules[target].path != mod.path}
    return names, aliases


# -- the lines to mask --------------------------------------------------------------------------------------------

_COMPOUND = (
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.AsyncFor, ast.While, ast.With,
    ast.AsyncWith, ast.Try, ast.Match, ast.TryStar,
)  # fmt: skip
_HEADERS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith)


def _header_parts(node: ast.stmt) -> list[ast.AST]:
    if isinstance(node, ast.If | ast.While):
        return [node.test]
    if isinstance(node, ast.For | ast.AsyncFor):
        return [node.target, node.iter]
    if isinstance(node, ast.With | ast.AsyncWith):
        return list(node.items)
    return []


def _uses(
    nodes: list[ast.AST], names: dict[str, str], aliases: dict[str, str], modules: dict[str, _Module]
) -> set[str]:
    used: set[str] = set()
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in names:
                used.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _defining_module(modules, aliases[node.value.id], node.attr) is not None
            ):
                used.add(f"{node.value.id}.{node.attr}")
    return used


def _candidate_lines(mod: _Module, modules: dict[str, _Module]) -> Iterator[tuple[int, tuple[str, ...]]]:
    names, aliases = _cross_file_names(mod, modules)
    if not names and not aliases:
        return
    lines = mod.source.split("\n")
    for node in ast.walk(mod.tree):
        if not isinstance(node, ast.stmt) or isinstance(node, ast.Import | ast.ImportFrom):
            continue
        row = node.lineno - 1
        if isinstance(node, _COMPOUND):
            if not isinstance(node, _HEADERS):
                continue
            parts = _header_parts(node)
            # A one-line header: everything in it on the statement's line, the body on later lines.
            if not parts or any(getattr(p, "end_lineno", node.lineno) != node.lineno for p in parts):
                continue
            if node.body[0].lineno == node.lineno or not lines[row].rstrip().endswith(":"):
                continue
        else:
            if node.end_lineno != node.lineno:
                continue
            # The statement must be the whole line: no `a = 1; b = 2`, no trailing comment, no `if x: y()`.
            # (Offsets are in UTF-8 bytes; ast.get_source_segment would re-split the whole file per statement.)
            raw = lines[row].encode("utf-8")
            segment = raw[node.col_offset : node.end_col_offset].decode("utf-8", errors="replace")
            if segment != lines[row].strip():
                continue
            parts = [node]
        text = lines[row].strip()
        if not MIN_TARGET_CHARS <= len(text) <= MAX_TARGET_CHARS or text.startswith(("#", '"', "'")):
            continue
        used = _uses(parts, names, aliases, modules)
        if used:
            yield row, tuple(sorted(used))


def build_tasks(
    tree: SourceTree, limit: int | None = None, seed: int = 0, per_file: int | None = None
) -> list[RepoTask]:
    """Line-completion tasks for one package, drawn with `seed`: one line from each file (in a shuffled order of
    files), then a second from each, and so on, so a short draw spreads over many files instead of one file's habits
    and a long one still finds enough lines. At most `per_file` from one file (None: no cap)."""
    modules = _parse_modules(tree)
    by_file: dict[Path, list[RepoTask]] = {}
    for mod in modules.values():
        rel = mod.path.relative_to(tree.path.parent).as_posix()
        lines = mod.source.split("\n")
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        for row, used in _candidate_lines(mod, modules):
            line = lines[row]
            indent = len(line) - len(line.lstrip())
            by_file.setdefault(mod.path, []).append(
                RepoTask(
                    task_id=f"{rel}:{row + 1}",
                    package=tree.name,
                    rel_path=rel,
                    line=row,
                    prefix=mod.source[: starts[row] + indent],
                    suffix=mod.source[starts[row] + len(line) :],
                    target=line.strip(),
                    names=used,
                )
            )
    rng = random.Random(f"{seed}:{tree.name}")
    files = sorted(by_file)
    rng.shuffle(files)
    queues: list[list[RepoTask]] = []
    for path in files:
        candidates = sorted(by_file[path], key=lambda t: t.line)
        rng.shuffle(candidates)
        queues.append(candidates[:per_file])
    picked = interleave(queues, None)
    return picked[:limit] if limit is not None else picked


def interleave(groups: list[list[RepoTask]], limit: int | None) -> list[RepoTask]:
    """Tasks from several groups (files, packages), alternating, so a short run covers every group."""
    out: list[RepoTask] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out[:limit] if limit is not None else out


class Workspace:
    """A temporary copy of a package tree where one file at a time is replaced by its masked version.

    The context engine reads the workspace from disk, so the masked line must be gone from the file it sees too;
    otherwise the "cross-file" context could contain the answer itself.
    """

    def __init__(self, tree: SourceTree) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"fimble-eval-{tree.name}-")
        self.root = Path(self._tmp.name) / tree.name
        shutil.copytree(
            tree.path, self.root / tree.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.pyd")
        )

    def masked(self, task: RepoTask) -> _Masked:
        return _Masked(self.root / task.rel_path, task.text)

    def close(self) -> None:
        self._tmp.cleanup()


class _Masked:
    """Context manager: the file holds the masked text inside the block and its original text after."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.original = ""

    def __enter__(self) -> Path:
        self.original = self.path.read_text(encoding="utf-8")
        atomic_write_text(self.path, self.text)
        return self.path

    def __exit__(self, *exc: object) -> None:
        atomic_write_text(self.path, self.original)
