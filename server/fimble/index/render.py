"""Render indexed symbols as compact stubs in their own language: signature, docstring, a placeholder body."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from fimble.index.symbols import Symbol
from fimble.syntax.specs import LangSpec

_INDENT = "    "


def indent(text: str, prefix: str = _INDENT) -> str:
    return "\n".join(prefix + line if line.strip() else line for line in text.split("\n"))


def render_symbol(spec: LangSpec, sym: Symbol, with_body: bool = True) -> str:
    """One definition as a stub; classes get a placeholder body when `with_body` (no members shown)."""
    if spec.name == "python":
        if sym.kind == "class":
            lines = [sym.sig]
            if sym.doc:
                lines.append(indent(sym.doc))
            if with_body and not sym.doc:
                lines.append(_INDENT + "...")
            return "\n".join(lines)
        if sym.doc and sym.sig.endswith(": ..."):
            return f"{sym.sig[:-4]}\n{indent(sym.doc)}\n{_INDENT}..."
        return sym.sig
    head = f"{sym.doc}\n" if sym.doc else ""
    if sym.kind in spec.member_kinds and with_body:
        return f"{head}{sym.sig}{spec.stub}"
    return head + sym.sig


def render_group(spec: LangSpec, container: Symbol | None, name: str, members: Sequence[Symbol]) -> str:
    """Members of one class (or Rust impl) nested under its header, so methods read as methods."""
    body = "\n".join(indent(render_symbol(spec, m)) for m in members)
    if spec.name == "python":
        header = render_symbol(spec, container, with_body=False) if container else f"class {name}:"
        return f"{header}\n{body}"
    if container is not None:
        header = render_symbol(spec, container, with_body=False)
    elif spec.name == "rust":
        header = f"impl {name}"
    else:
        header = f"class {name}"
    return f"{header}{spec.body_open}\n{body}\n{spec.body_close}"


def class_members(spec: LangSpec, cls: Symbol, all_symbols: Sequence[Symbol], limit: int = 12) -> list[Symbol]:
    """The public interface of a class (constructor first among equals), as bare stubs without docs."""
    members = [
        s
        for s in all_symbols
        if s.container == cls.name
        and s.line > cls.line
        and (not s.name.startswith("_") or s.name in ("__init__", "__call__", "__new__"))
    ]
    return [replace(s, doc="") for s in members[:limit]]


CONSTRUCTORS = frozenset({"__init__", "__new__", "constructor", "new"})


def render_file(
    spec: LangSpec, chosen: Sequence[Symbol], all_symbols: Sequence[Symbol], brief: Collection[Symbol] = ()
) -> str:
    """The chosen symbols of one file in line order; a chosen class shows its interface, chosen members nest under
    their class (with the class header, not its other members).

    Symbols in `brief` are shown without their docstrings, and a brief class with its constructor only: the cheap
    form, for names worth mentioning but not worth their whole interface."""
    short = set(brief)
    classes = {s.name: s for s in all_symbols if s.kind in spec.member_kinds and not s.container}
    blocks: list[tuple[int, str]] = []
    groups: dict[str, list[Symbol]] = {}
    whole: dict[str, bool] = {}  # classes chosen themselves: True for their interface, False for the constructor
    for sym in sorted(chosen, key=lambda s: s.line):
        shown = replace(sym, doc="") if sym in short else sym
        if sym.container and spec.nest_members:
            groups.setdefault(sym.container, []).append(shown)
        elif spec.nest_members and not sym.container and sym.name in classes and classes[sym.name] == sym:
            groups.setdefault(sym.name, [])
            whole[sym.name] = sym not in short
        else:
            blocks.append((sym.line, render_symbol(spec, shown)))
    for name, members in groups.items():
        container = classes.get(name)
        if container is not None and name in whole:
            have = {(m.name, m.line) for m in members}
            extra = [m for m in class_members(spec, container, all_symbols) if (m.name, m.line) not in have]
            if not whole[name]:
                extra = [m for m in extra if m.name in CONSTRUCTORS]
            members = sorted([*members, *extra], key=lambda s: s.line)
        if container is not None and not whole.get(name, False):
            container = replace(container, doc="")  # the header names the class; its docstring is for a chosen class
        if not members and container is not None:
            blocks.append((container.line, render_symbol(spec, container)))
            continue
        line = container.line if container else members[0].line
        blocks.append((line, render_group(spec, container, name, members)))
    return "\n\n".join(text for _line, text in sorted(blocks, key=lambda b: b[0]))
