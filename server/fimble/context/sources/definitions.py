"""Cross-file definitions: names used near the cursor, resolved through the file's imports and the workspace index,
rendered as signatures with docstrings and ranked by how close to the cursor the name is used.

Resolution order, strongest first: a name the file imports (resolved to its module file), a name from a star import
or include, then a workspace-wide lookup that gives up on names defined in many files (`get`, `run`, `__init__`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from fimble.context.base import Budget, Candidate, Cursor
from fimble.index.render import class_members, render_file, render_symbol
from fimble.index.symbols import Import, Symbol, extract_imports
from fimble.index.workspace import WorkspaceIndex
from fimble.prompt.assemble import Snippet
from fimble.syntax.specs import LangSpec, spec_for

LINES_BEFORE = 40
LINES_AFTER = 10
MAX_NAMES = 60
MAX_FILES_PER_NAME = 4  # a name defined in more files than this is too ambiguous to guess
_IDENT = re.compile(r"([A-Za-z_$][\w$]*)(?:\s*(?:\.|::|->)\s*([A-Za-z_$][\w$]*))?")
_KIND_WEIGHT = {"class": 1.0, "type": 1.0, "function": 0.95, "macro": 0.8, "variable": 0.6}

CoChange = Callable[[str, str], float]


@dataclass
class _Pick:
    rel: str
    symbol: Symbol
    score: float


def names_near_cursor(text: str, offset: int, keywords: frozenset[str]) -> list[tuple[str, str | None, int]]:
    """(name, attribute or None, line distance) for identifiers around the cursor, nearest first, unique."""
    start = offset
    for _ in range(LINES_BEFORE):
        start = text.rfind("\n", 0, start)
        if start <= 0:
            start = 0
            break
    end = offset
    for _ in range(LINES_AFTER):
        nxt = text.find("\n", end + 1)
        if nxt == -1:
            end = len(text)
            break
        end = nxt
    chunk = text[start:end]
    cursor = offset - start
    best: dict[tuple[str, str | None], int] = {}
    for m in _IDENT.finditer(chunk):
        name, attr = m.group(1), m.group(2)
        if name in keywords or len(name) < 2 or name[0].isdigit():
            continue
        if m.start() <= cursor <= m.end():
            continue  # the word being typed is incomplete
        a, b = sorted((cursor, m.start()))
        distance = chunk.count("\n", a, b)
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

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        index = self._index()
        spec = cursor.spec
        if index is None or not index.ready or spec is None or cursor.grammar is None:
            return []
        current = cursor.rel or cursor.query.path
        imports = extract_imports(cursor.tree, cursor.src, cursor.grammar) if cursor.tree is not None else []
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

        for name, attr, distance in names_near_cursor(cursor.text, cursor.query.offset, spec.keywords):
            if budget.expired():
                break
            proximity = 1.0 / (1.0 + distance / 8.0)
            if name in bound:
                imp, remote = bound[name]
                files = targets(imp)
                if remote == "*":
                    if attr:
                        for rel in files:
                            for sym in index.named(rel, attr):
                                add(rel, sym, proximity)
                    continue
                if attr is not None:
                    continue  # `Name.attr` where Name was imported: the (name, None) entry covers Name itself
                for rel in files:
                    for sym in index.named(rel, remote, top_level=True):
                        add(rel, sym, proximity)
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

        return self._select(cursor, budget, index, sorted(picks.values(), key=lambda p: -p.score))

    def _select(self, cursor: Cursor, budget: Budget, index: WorkspaceIndex, picks: list[_Pick]) -> list[Candidate]:
        spec = cursor.spec
        assert spec is not None
        chosen: dict[str, list[_Pick]] = {}
        used = 0
        specs: dict[str, LangSpec] = {}
        for pick in picks:
            if budget.expired():
                break
            if pick.rel not in specs:
                specs[pick.rel] = spec_for(index.grammar_of(pick.rel)) or spec
            sym = pick.symbol
            text = render_symbol(specs[pick.rel], sym)
            if sym.kind in specs[pick.rel].member_kinds and specs[pick.rel].nest_members:
                members = class_members(specs[pick.rel], sym, index.symbols_in(pick.rel))
                text += "\n".join(render_symbol(specs[pick.rel], m) for m in members)
            cost = budget.count(text) + 2
            if not chosen.get(pick.rel):
                cost += budget.count(pick.rel) + 4  # the file header the prompt adds per snippet
            if used + cost > budget.tokens:
                continue
            used += cost
            chosen.setdefault(pick.rel, []).append(pick)
        out = []
        total = 0
        # best files first, so if the rendered files come out larger than estimated the weakest one is dropped
        for rel, file_picks in sorted(chosen.items(), key=lambda kv: -max(p.score for p in kv[1])):
            text = render_file(specs[rel], [p.symbol for p in file_picks], index.symbols_in(rel))
            tokens = budget.count(text) + budget.count(rel) + 4
            if total + tokens > budget.tokens:
                continue
            total += tokens
            snippet = Snippet(source=self.name, path=rel, text=text, score=max(p.score for p in file_picks))
            out.append(Candidate(snippet, tokens, key=(self.name, rel)))
        return out
