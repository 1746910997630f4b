"""Module resolution: which workspace files an import refers to. Pure functions over a `FileSet`.

Exact rules where a language has simple ones (relative Python and JS/TS imports, C includes next to the file),
path-suffix matching elsewhere, so `import fimble.context.source_types` finds `server/fimble/context/source_types.py` in a src
layout and `import "github.com/x/y/pkg"` finds the `pkg` directory without reading go.mod.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from fimble.index.symbols import Import

_JS_EXTS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
MAX_TARGETS = 8


def _split_ext(rel: str) -> tuple[str, str]:
    if rel.endswith(".d.ts"):
        return rel[:-5], ".d.ts"
    root, ext = posixpath.splitext(rel)
    return root, ext


@dataclass
class FileSet:
    """The workspace's files with lookups by stem (file name without extension) and by directory."""

    paths: set[str] = field(default_factory=set)
    by_stem: dict[str, list[str]] = field(default_factory=dict)
    by_dir: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def of(paths: Iterable[str]) -> FileSet:
        fs = FileSet()
        for rel in paths:
            fs.add(rel)
        return fs

    def add(self, rel: str) -> None:
        if rel in self.paths:
            return
        self.paths.add(rel)
        stem = posixpath.basename(_split_ext(rel)[0])
        self.by_stem.setdefault(stem, []).append(rel)
        self.by_dir.setdefault(posixpath.dirname(rel), []).append(rel)

    def remove(self, rel: str) -> None:
        if rel not in self.paths:
            return
        self.paths.discard(rel)
        stem = posixpath.basename(_split_ext(rel)[0])
        for table, key in ((self.by_stem, stem), (self.by_dir, posixpath.dirname(rel))):
            items = table.get(key)
            if items is not None and rel in items:
                items.remove(rel)
                if not items:
                    del table[key]

    def suffix_match(self, parts: list[str], exts: tuple[str, ...], near: str = "") -> list[str]:
        """Files whose path without extension ends with `parts` (whole segments), nearest to `near` first."""
        if not parts or not parts[-1]:
            return []
        tail = "/".join(parts)
        hits = []
        for rel in self.by_stem.get(parts[-1], ()):
            root, ext = _split_ext(rel)
            if ext in exts and (root == tail or root.endswith("/" + tail)):
                hits.append(rel)
        return _nearest(hits, near)

    def existing(self, candidates: Iterable[str]) -> list[str]:
        return [c for c in candidates if c in self.paths]


def _nearest(paths: list[str], near: str) -> list[str]:
    """Order by shared leading directories with `near`, then by depth: the likeliest target first."""
    near_parts = posixpath.dirname(near).split("/") if near else []

    def key(rel: str) -> tuple[int, int, str]:
        parts = rel.split("/")[:-1]
        shared = 0
        for a, b in zip(parts, near_parts, strict=False):
            if a != b:
                break
            shared += 1
        return (-shared, len(parts), rel)

    return sorted(paths, key=key)


def resolve_import(imp: Import, current: str, grammar: str, files: FileSet) -> list[str]:
    """Workspace files (relative paths) the import refers to, likeliest first; [] for external modules."""
    if grammar == "python":
        out = _python(imp, current, files)
    elif grammar in ("javascript", "typescript", "tsx"):
        out = _js(imp, current, files)
    elif grammar == "go":
        out = _go(imp, current, files)
    elif grammar == "rust":
        out = _rust(imp, current, files)
    elif grammar in ("c", "cpp"):
        out = _include(imp, current, files)
    elif grammar == "java":
        out = _java(imp, current, files)
    elif grammar == "lua":
        parts = imp.module.replace("/", ".").split(".")
        out = files.suffix_match(parts, (".lua",), current) or files.suffix_match([*parts, "init"], (".lua",), current)
    elif grammar == "bash":
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(current), imp.module))
        out = files.existing([rel, posixpath.normpath(imp.module.lstrip("/"))])
    else:
        out = []
    unique = [r for r in dict.fromkeys(out) if r != current]
    return unique[:MAX_TARGETS]


def _python(imp: Import, current: str, files: FileSet) -> list[str]:
    parts = [p for p in imp.module.split(".") if p]
    submodules = [remote for _local, remote in imp.names if remote not in ("*", "")]
    exts = (".py", ".pyi")
    if imp.level > 0:
        base = posixpath.dirname(current)
        for _ in range(imp.level - 1):
            base = posixpath.dirname(base)
        stem = posixpath.join(base, *parts) if parts else base
        candidates = [f"{stem}.py", f"{stem}.pyi", f"{stem}/__init__.py", f"{stem}/__init__.pyi"]
        candidates += [f"{stem}/{name}.py" for name in submodules]
        return files.existing(c.lstrip("/") for c in candidates)
    out = files.suffix_match(parts, exts, current) + files.suffix_match([*parts, "__init__"], exts, current)
    for name in submodules:
        out += files.suffix_match([*parts, name], exts, current)
    return out


def _js(imp: Import, current: str, files: FileSet) -> list[str]:
    module = imp.module
    if module.startswith("."):
        target = posixpath.normpath(posixpath.join(posixpath.dirname(current), module))
    elif ("/" in module and not module.startswith("@")) or module.startswith(("@/", "~/")):
        # path aliases (`@/x`, `~/x`, `src/x`): match the path's tail against the workspace
        parts = [p for p in module.lstrip("@~").split("/") if p and p != "."]
        return files.suffix_match(parts[-3:], _JS_EXTS, current) or files.suffix_match(
            [*parts[-3:], "index"], _JS_EXTS, current
        )
    else:
        return []  # a package from node_modules
    root, ext = _split_ext(target)
    candidates = [target] if ext in _JS_EXTS else []
    if ext in (".js", ".jsx", ".mjs", ".cjs"):  # TypeScript's ESM style: "./x.js" means x.ts
        candidates += [root + e for e in _JS_EXTS]
    candidates += [target + e for e in _JS_EXTS] + [f"{target}/index{e}" for e in _JS_EXTS]
    return files.existing(candidates)


def _go(imp: Import, current: str, files: FileSet) -> list[str]:
    parts = [p for p in imp.module.split("/") if p]
    for k in range(len(parts), 0, -1):  # the longest tail of the import path that names a workspace directory
        tail = "/".join(parts[-k:])
        dirs = [d for d in files.by_dir if d == tail or d.endswith("/" + tail)]
        if dirs:
            best = _nearest([d + "/x" for d in dirs], current)[0].rsplit("/", 1)[0]
            return sorted(r for r in files.by_dir.get(best, []) if r.endswith(".go") and not r.endswith("_test.go"))
    return []


def _rust(imp: Import, current: str, files: FileSet) -> list[str]:
    parts = [p for p in imp.module.split("::") if p]
    here = posixpath.dirname(current)
    if parts and parts[0] in ("self", "super"):
        base = here
        stem = posixpath.basename(_split_ext(current)[0])
        if parts[0] == "self" and stem not in ("mod", "lib", "main"):
            base = posixpath.join(here, stem)
        while parts and parts[0] in ("self", "super"):
            if parts[0] == "super":
                base = posixpath.dirname(base)
            parts = parts[1:]
        for k in range(len(parts), 0, -1):
            stem_path = posixpath.join(base, *parts[:k])
            hits = files.existing([f"{stem_path}.rs", f"{stem_path}/mod.rs"])
            if hits:
                return hits
        return []
    if parts and parts[0] == "crate":
        parts = parts[1:]
    for k in range(len(parts), 0, -1):
        hits = files.suffix_match(parts[:k], (".rs",), current) or files.suffix_match(
            [*parts[:k], "mod"], (".rs",), current
        )
        if hits:
            return hits
    return []


def _include(imp: Import, current: str, files: FileSet) -> list[str]:
    local = posixpath.normpath(posixpath.join(posixpath.dirname(current), imp.module))
    hits = files.existing([local]) if imp.level else []
    if hits:
        return hits
    root, ext = _split_ext(imp.module)
    parts = [p for p in root.split("/") if p and p != "."]
    return files.suffix_match(parts, (ext,), current) if ext else []


def _java(imp: Import, current: str, files: FileSet) -> list[str]:
    parts = [p for p in imp.module.split(".") if p]
    out: list[str] = []
    for _local, remote in imp.names:
        if remote == "*":
            suffix = "/".join(parts)
            dirs = [d for d in files.by_dir if d == suffix or d.endswith("/" + suffix)]
            for d in dirs[:1]:
                out += sorted(r for r in files.by_dir[d] if r.endswith(".java"))
        else:
            out += files.suffix_match([*parts, remote], (".java",), current)
            if not out:  # a static import: the last module part is the class
                out += files.suffix_match(parts, (".java",), current)
    return out
