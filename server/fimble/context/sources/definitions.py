"""Cross-file definitions: names used near the cursor, resolved through the file's imports and the workspace index,
rendered as signatures with docstrings and ranked by how close to the cursor the name is used.

Resolution order, strongest first: a name the file imports (resolved to its module file, or, when that module only
re-exports it, to the file that defines it), a name from a star import or include, then a workspace-wide lookup that
gives up on names defined in many files (`get`, `run`, `__init__`).

Names the file imports from the workspace are candidates even where the code near the cursor does not use them yet:
the line being typed is often the first use of an import (or the first use the cursor window still shows), and a
name's definition is what the window alone cannot show. They rank below names used near the cursor; an import the
file does not use anywhere yet ranks above one it does, being the likelier next use.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from fimble.context.mentions import Mentions
from fimble.context.source_types import Budget, Candidate, Cursor, lines_back
from fimble.index.render import CONSTRUCTORS, class_members, render_file, render_symbol
from fimble.index.symbols import Import, ImportMemo, Symbol, extract_imports
from fimble.index.workspace import WorkspaceIndex
from fimble.prompt.assemble import Snippet
from fimble.syntax.specs import LangSpec, spec_for

LINES_BEFORE = 40
LINES_AFTER = 10
MAX_NAMES = 60
MAX_FILES_PER_NAME = 4  # a name defined in more files than this is too ambiguous to guess
_NEWLINE = re.compile("\n")
_IDENT = re.compile(r"([A-Za-z_$][\w$]*)(?:\s*(?:\.|::|->)\s*([A-Za-z_$][\w$]*))?")
_KIND_WEIGHT = {"class": 1.0, "type": 1.0, "function": 0.95, "macro": 0.8, "variable": 0.6}
# Scores of imported names the code near the cursor does not use (a name used there scores its proximity instead,
# 1.0 on the cursor's line down to ~0.17 forty lines away).
IMPORTED_UNUSED = 0.45
IMPORTED_USED_ELSEWHERE = 0.2
MAX_IMPORTED_NAMES = 40  # imported names looked up per request, unused ones first

CoChange = Callable[[str, str], float]


@dataclass
class _Pick:
    rel: str
    symbol: Symbol
    score: float


def _module_stem(rel: str) -> str:
    """`pkg/sub/mod.py` -> `mod`; a package's `__init__` file -> the package folder's name."""
    parts = rel.rsplit("/", 2)
    stem = parts[-1].rsplit(".", 1)[0]
    if stem == "__init__" and len(parts) > 1:
        return parts[-2]
    return stem


def _prose_test(cursor: Cursor, spec: LangSpec) -> Callable[[int, int], bool] | None:
    """Whether the text between two string offsets lies in a comment or a string literal, by the syntax tree (None
    without one). Identifiers in f-string and template interpolations are code, and count."""
    tree = cursor.tree
    if tree is None:
        return None
    text = cursor.text
    root = tree.root_node
    # byte offsets from string offsets: the cursor's is known; ASCII text in between maps one to one
    anchor = cursor.query.offset
    ascii_text = text.isascii()  # O(1) in CPython: a whole-ASCII file maps every offset to itself

    def byte_at(i: int) -> int:
        if ascii_text:
            return i
        lo, hi = sorted((i, anchor))
        between = text[lo:hi]
        span = len(between) if between.isascii() else len(between.encode("utf-8", "surrogatepass"))
        return cursor.cursor_byte + (span if i >= anchor else -span)

    def in_prose(start: int, end: int) -> bool:
        node = root.descendant_for_byte_range(byte_at(start), byte_at(end))
        if node is None:
            return False
        kind = node.type
        return kind in spec.comments or "comment" in kind or "string" in kind

    return in_prose


def names_near_cursor(
    text: str, offset: int, keywords: frozenset[str], in_prose: Callable[[int, int], bool] | None = None
) -> list[tuple[str, str | None, int]]:
    """(name, attribute or None, line distance) for identifiers around the cursor, nearest first, unique.
    `in_prose(start, end)` (string offsets) tells words in comments and strings, which are skipped."""
    start = lines_back(text, offset, LINES_BEFORE)
    end = offset
    for _ in range(LINES_AFTER):
        nxt = text.find("\n", end + 1)
        if nxt == -1:
            end = len(text)
            break
        end = nxt
    chunk = text[start:end]
    cursor = offset - start
    breaks = [m.start() for m in _NEWLINE.finditer(chunk)]
    cursor_line = bisect.bisect_left(breaks, cursor)  # line breaks before the cursor
    best: dict[tuple[str, str | None], int] = {}
    for m in _IDENT.finditer(chunk):
        name, attr = m.group(1), m.group(2)
        if name in keywords or len(name) < 2 or name[0].isdigit():
            continue
        if m.start() <= cursor <= m.end():
            continue  # the word being typed is incomplete
        if in_prose is not None and in_prose(start + m.start(), start + m.end()):
            continue  # "stores everything" in a docstring is no use of a `store` function
        distance = abs(bisect.bisect_left(breaks, m.start()) - cursor_line)  # line breaks in between
        for key in ((name, None), (name, attr)) if attr else ((name, None),):
            if key not in best or distance < best[key]:
                best[key] = distance
    ranked = sorted(best.items(), key=lambda kv: (kv[1], kv[0][0], kv[0][1] or ""))
    return [(name, attr, dist) for (name, attr), dist in ranked[:MAX_NAMES]]


class DefinitionsSource:
    name = "definitions"

    def __init__(self, index: Callable[[], WorkspaceIndex | None], co_change: CoChange | None = None) -> None:
        self._index = index
        self._co_change = co_change
        # How often a name occurs in the file (a substring count: over-counting only makes a name look used), carried
        # from one keystroke to the next: counted afresh, 150 imports cost 30 ms per keystroke on a 5,000-line file.
        self._mentions = Mentions()
        self._imports: ImportMemo = {}  # per import statement, likewise (see extract_imports)

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        index = self._index()
        spec = cursor.spec
        if index is None or not index.ready or spec is None or cursor.grammar is None:
            return []
        current = cursor.rel or cursor.query.path
        tree = cursor.tree
        imports = extract_imports(tree, cursor.src, cursor.grammar, self._imports) if tree is not None else []
        bound: dict[str, tuple[Import, str]] = {}
        star: list[Import] = []
        for imp in imports:
            for local, remote in imp.names:
                if local == "*":
                    star.append(imp)
                else:
                    bound[local] = (imp, remote)
        resolved: dict[Import, list[str]] = {}

        def targets(imp: Import) -> list[str]:
            if imp not in resolved:
                resolved[imp] = index.resolve(imp, current, cursor.grammar or "")
            return resolved[imp]

        star_names: dict[str, list[tuple[str, Symbol]]] | None = None
        picks: dict[tuple[str, int, str], _Pick] = {}
        near_cursor: set[str] = set()

        def add(rel: str, sym: Symbol, score: float) -> None:
            if rel == cursor.rel and (
                cursor.in_window(sym.line) or sym.line <= cursor.row <= max(sym.end_line, sym.line)
            ):
                return  # visible already, or the definition the cursor is in (the scope source shows it)
            if self._co_change is not None and rel != current:
                score *= 1.0 + 0.3 * self._co_change(current, rel)
            score *= _KIND_WEIGHT.get(sym.kind, 0.5)
            key = (rel, sym.line, sym.name)
            old = picks.get(key)
            if old is None or old.score < score:
                picks[key] = _Pick(rel, sym, score)

        def add_imported(files: list[str], remote: str, score: float) -> None:
            """An imported name: defined in the module it comes from, or re-exported there from another file."""
            found = False
            for rel in files:
                for sym in index.named(rel, remote, top_level=True):
                    add(rel, sym, score)
                    found = True
            if found or not files:
                return  # not found and no workspace file: a third-party import
            elsewhere = index.lookup_few(remote, MAX_FILES_PER_NAME)
            if not elsewhere:
                return
            ambiguity = 1.0 / (1.0 + math.log(len(elsewhere)))
            for rel, syms in elsewhere.items():
                for sym in syms:
                    if not sym.container:
                        add(rel, sym, 0.9 * ambiguity * score)

        for name, attr, distance in names_near_cursor(
            cursor.text, cursor.query.offset, spec.keywords, _prose_test(cursor, spec)
        ):
            if budget.expired():
                break
            proximity = 1.0 / (1.0 + distance / 8.0)
            if name in bound:
                near_cursor.add(name)
                imp, remote = bound[name]
                files = targets(imp)
                if remote == "*":
                    if attr:
                        for rel in files:
                            for sym in index.named(rel, attr):
                                add(rel, sym, proximity)
                    continue
                if attr is not None:
                    # `from pkg import module` then `module.attr`; for a class, the (name, None) entry covers it
                    for rel in files:
                        if _module_stem(rel) == remote:
                            for sym in index.named(rel, attr, top_level=True):
                                add(rel, sym, proximity)
                    continue
                add_imported(files, remote, proximity)
                continue
            if attr is not None:
                # obj.method: only worth guessing when few files define the method
                found = index.lookup_few(attr, 2)
                if found:
                    for rel, syms in found.items():
                        for sym in syms:
                            if sym.kind == "function":
                                add(rel, sym, 0.35 * proximity)
                continue
            if star:
                if star_names is None:
                    star_names = {}
                    for imp in star:
                        for rel in targets(imp):
                            for sym in index.symbols_in(rel):
                                star_names.setdefault(sym.name, []).append((rel, sym))
                if name in star_names:
                    for rel, sym in star_names[name][:4]:
                        add(rel, sym, 0.9 * proximity)
                    continue
            found = index.lookup_few(name, MAX_FILES_PER_NAME)
            if not found:
                continue
            ambiguity = 1.0 / (1.0 + math.log(len(found)))
            for rel, syms in found.items():
                near = 0.15 if rel.rsplit("/", 1)[0] == current.rsplit("/", 1)[0] else 0.0
                for sym in syms:
                    if sym.container and sym.kind != "class":
                        continue  # a bare name is not a method call
                    factor = 0.6 if rel == cursor.rel else 0.55
                    add(rel, sym, (factor + near) * ambiguity * proximity)

        self._imported_elsewhere(cursor, budget, bound, near_cursor, targets, add_imported)
        return self._select(cursor, budget, index, sorted(picks.values(), key=lambda p: -p.score))

    def _imported_elsewhere(
        self,
        cursor: Cursor,
        budget: Budget,
        bound: dict[str, tuple[Import, str]],
        near_cursor: set[str],
        targets: Callable[[Import], list[str]],
        add_imported: Callable[[list[str], str, float], None],
    ) -> None:
        """Names imported from workspace files that the code near the cursor does not use."""
        text = cursor.text
        ranked: list[tuple[float, int, str]] = []
        for local, (imp, remote) in bound.items():
            if budget.expired():
                return
            if local in near_cursor or remote == "*" or len(local) < 2:
                continue
            # Once in its import statement (twice with `as` naming itself): more means the file uses it.
            mentions = self._mentions
            self_alias = local == remote and mentions.occurs(text, f"{local} as {local}")
            unused = mentions.count(text, local) <= (2 if self_alias else 1)
            ranked.append((IMPORTED_UNUSED if unused else IMPORTED_USED_ELSEWHERE, imp.line, local))
        ranked.sort(key=lambda r: (-r[0], r[1], r[2]))
        for score, _line, local in ranked[:MAX_IMPORTED_NAMES]:
            if budget.expired():
                break
            imp, remote = bound[local]
            files = targets(imp)
            if files:
                add_imported(files, remote, score)

    def _select(self, cursor: Cursor, budget: Budget, index: WorkspaceIndex, picks: list[_Pick]) -> list[Candidate]:
        """Breadth first: every pick in its brief form (signature; a class with its constructor), best first, then
        the best picks in full (docstring; a class's interface) while the budget lasts."""
        spec = cursor.spec
        assert spec is not None
        specs: dict[str, LangSpec] = {}
        chosen: dict[str, list[_Pick]] = {}
        full: set[tuple[str, int, str]] = set()
        sizes: dict[tuple[str, int, str], tuple[int, int]] = {}  # (brief, full) estimated tokens
        used = 0

        def key(pick: _Pick) -> tuple[str, int, str]:
            return (pick.rel, pick.symbol.line, pick.symbol.name)

        for pick in picks:
            if budget.expired():
                break
            if pick.rel not in specs:
                specs[pick.rel] = spec_for(index.grammar_of(pick.rel)) or spec
            brief, whole = self._sizes(specs[pick.rel], pick, index, budget)
            cost = brief + 2
            if not chosen.get(pick.rel):
                cost += budget.count(pick.rel) + 4  # the file header the prompt adds per snippet
            if used + cost > budget.tokens:
                continue
            used += cost
            sizes[key(pick)] = (brief, whole)
            chosen.setdefault(pick.rel, []).append(pick)
        for pick in picks:
            if budget.expired():
                break
            size = sizes.get(key(pick))
            if size is None:
                continue
            extra = size[1] - size[0]
            if used + extra <= budget.tokens:
                used += extra
                full.add(key(pick))
        out = []
        total = 0
        # best files first, so if the rendered files come out larger than estimated the weakest one is dropped
        for rel, file_picks in sorted(chosen.items(), key=lambda kv: -max(p.score for p in kv[1])):
            symbols = index.symbols_in(rel)
            brief_syms = [p.symbol for p in file_picks if key(p) not in full]
            text = render_file(specs[rel], [p.symbol for p in file_picks], symbols, brief_syms)
            tokens = budget.count(text) + budget.count(rel) + 4
            if total + tokens > budget.tokens:
                text = render_file(specs[rel], [p.symbol for p in file_picks], symbols, [p.symbol for p in file_picks])
                tokens = budget.count(text) + budget.count(rel) + 4
                if total + tokens > budget.tokens:
                    continue
            total += tokens
            snippet = Snippet(source=self.name, path=rel, text=text, score=max(p.score for p in file_picks))
            out.append(Candidate(snippet, tokens, key=(self.name, rel)))
        return out

    @staticmethod
    def _sizes(spec: LangSpec, pick: _Pick, index: WorkspaceIndex, budget: Budget) -> tuple[int, int]:
        """Estimated tokens of a pick shown brief and in full."""
        sym = pick.symbol
        if sym.kind in spec.member_kinds and spec.nest_members and not sym.container:
            members = class_members(spec, sym, index.symbols_in(pick.rel))
            ctor = "\n".join(render_symbol(spec, m) for m in members if m.name in CONSTRUCTORS)
            rest = "\n".join(render_symbol(spec, m) for m in members)
            head = render_symbol(spec, replace(sym, doc=""), with_body=False)
            return budget.count(head + ctor), budget.count(render_symbol(spec, sym) + rest)
        return budget.count(render_symbol(spec, replace(sym, doc=""))), budget.count(render_symbol(spec, sym))
