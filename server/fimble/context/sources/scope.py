"""The enclosing scope: headers and docstrings of the function/class the cursor is in, and their siblings.

Only what the cursor window does not already show is sent, so a long function whose `def` line scrolled out of the
window still tells the model its name, parameters and docstring. Without a grammar, indentation stands in for syntax.

Siblings are outlined only where the prompt shows text after the cursor (fill-in-the-middle formats). A prompt
without a suffix (prefix-only models) gets the enclosing headers alone: there the outline of the rest of the file
measured as a loss (`fimble eval --suite repo`, Gemma 3 270M, 100 tasks: 0.25 nats per target line worse than
without siblings), the signatures taking the place of window lines the model reads better.
"""

from __future__ import annotations

import tree_sitter

from fimble.context.source_types import Budget, Candidate, Cursor
from fimble.index.symbols import definition_name, docstring, signature
from fimble.prompt.assemble import Snippet
from fimble.syntax.specs import LangSpec

MAX_SIBLINGS = 40
MAX_DEPTH = 6
_SCOPE_KINDS = frozenset({"function", "class", "type"})
# Containers that are scopes without being definitions (their header is still worth showing).
_SCOPE_CONTAINERS = frozenset({"impl_item", "namespace_definition", "mod_item", "internal_module", "module"})


class ScopeSource:
    name = "scope"

    def gather(self, cursor: Cursor, budget: Budget) -> list[Candidate]:
        if cursor.tree is None or cursor.spec is None:
            text = indentation_outline(cursor)
        else:
            text = syntax_outline(cursor, budget)
        if not text.strip():
            return []
        tokens = budget.count(text)
        if tokens > budget.tokens:
            return []
        snippet = Snippet(source=self.name, path=cursor.query.path, text=text, score=0.9)
        return [Candidate(snippet, tokens, key=(self.name,))]


def enclosing_chain(cursor: Cursor) -> list[tree_sitter.Node]:
    """Definitions enclosing the cursor, innermost first."""
    assert cursor.tree is not None and cursor.spec is not None
    spec = cursor.spec
    src = cursor.src
    # The last non-blank byte before the cursor: at the end of a line being typed the cursor sits after the
    # enclosing block's last node, where the smallest containing node would be the module.
    p = cursor.cursor_byte
    while p > 0 and src[p - 1 : p] in (b" ", b"\t", b"\n", b"\r"):
        p -= 1
    probe = max(0, p - 1)
    node: tree_sitter.Node | None = cursor.tree.root_node.descendant_for_byte_range(probe, probe)
    line_start = src.rfind(b"\n", 0, cursor.cursor_byte) + 1
    line = src[line_start : cursor.cursor_byte]
    column = len(line) - len(line.lstrip()) if line.strip() else len(line)
    chain: list[tree_sitter.Node] = []
    while node is not None and len(chain) < MAX_DEPTH:
        kind = spec.defs.get(node.type)
        if (kind in _SCOPE_KINDS or node.type in _SCOPE_CONTAINERS) and node.parent is not None:
            inside = node.start_byte < cursor.cursor_byte <= node.end_byte
            # Python: an indented cursor just past a block's end still belongs to it.
            continues = spec.name == "python" and node.start_point[1] < column and node.start_byte < cursor.cursor_byte
            if inside or continues:
                chain.append(node)
        node = node.parent
    return chain


def _indent_of(src: bytes, node: tree_sitter.Node) -> str:
    line_start = src.rfind(b"\n", 0, node.start_byte) + 1
    lead = src[line_start : node.start_byte].decode("utf-8", "replace")
    return lead if not lead.strip() else " " * len(lead)


def _prefix_lines(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else line for line in text.split("\n"))


def _header(spec: LangSpec, node: tree_sitter.Node, src: bytes, with_doc: bool) -> str:
    kind = spec.defs.get(node.type, "class")
    if node.type in _SCOPE_CONTAINERS:
        body = node.child_by_field_name("body")
        end = body.start_byte if body is not None else node.end_byte
        text = src[node.start_byte : end].decode("utf-8", "replace").rstrip() + spec.body_open.strip()
        return text.split("\n", 1)[0]
    sig = signature(spec, node, src, kind if kind != "function" else "class")
    if spec.name != "python" and kind == "function":
        sig = sig + spec.body_open if not sig.endswith(spec.body_open) else sig
    elif spec.name != "python" and kind == "class":
        sig = sig + spec.body_open
    doc = docstring(spec, node, src) if with_doc else ""
    if not doc:
        return sig
    if spec.doc == "python":
        return f"{sig}\n{_prefix_lines(doc, '    ')}"
    return f"{doc}\n{sig}"


def syntax_outline(cursor: Cursor, budget: Budget) -> str:
    spec = cursor.spec
    tree = cursor.tree
    assert spec is not None and tree is not None
    src = cursor.src
    chain = enclosing_chain(cursor)
    chain_ids = {n.id for n in chain}
    # (priority, row, text already indented)
    items: list[tuple[float, int, str]] = []
    for depth, node in enumerate(chain):
        if cursor.in_window(node.start_point[0]):
            continue
        items.append((depth, node.start_point[0], _prefix_lines(_header(spec, node, src, True), _indent_of(src, node))))

    if spec.doc == "python" and tree.root_node.named_child_count:
        first = tree.root_node.named_children[0]
        if first.type == "expression_statement" and first.named_child_count:
            lit = first.named_children[0]
            if lit.type == "string" and not cursor.in_window(first.start_point[0]):
                doc = src[lit.start_byte : lit.end_byte].decode("utf-8", "replace")
                lines = doc.split("\n")
                items.append((len(chain), 0, "\n".join(lines[:6]) + ('\n"""' if len(lines) > 6 else "")))

    container = _sibling_container(chain, tree)
    siblings: list[tuple[int, tree_sitter.Node]] = []
    window = cursor.query.window
    shows_suffix = window is None or window[1] > cursor.query.offset
    for child in _definitions_in(spec, container) if shows_suffix else ():
        if child.id in chain_ids or budget.expired():
            continue
        row = child.start_point[0]
        if cursor.in_window(row) or cursor.in_window(child.end_point[0]) or not definition_name(spec, child, src):
            continue
        siblings.append((abs(row - cursor.row), child))
    siblings.sort(key=lambda s: s[0])
    for rank, (_dist, child) in enumerate(siblings[:MAX_SIBLINGS]):
        kind = spec.defs[child.type]
        sig = signature(spec, child, src, kind)
        if kind == "variable":
            sig = sig.split("\n", 1)[0]
        items.append((len(chain) + 1 + rank, child.start_point[0], _prefix_lines(sig, _indent_of(src, child))))

    chosen: list[tuple[int, str]] = []
    used = 0
    for _prio, row, text in sorted(items, key=lambda i: i[0]):
        cost = budget.count(text) + 1
        if used + cost > budget.tokens:
            continue
        used += cost
        chosen.append((row, text))
    return "\n".join(text for _row, text in sorted(chosen))


def _sibling_container(chain: list[tree_sitter.Node], tree: tree_sitter.Tree) -> tree_sitter.Node:
    """The body holding the innermost definition's siblings: its class body, or the module."""
    if not chain:
        return tree.root_node
    node = chain[0].parent
    while node is not None and node.parent is not None and node.type in ("decorated_definition", "export_statement"):
        node = node.parent
    return node if node is not None else tree.root_node


def _definitions_in(spec: LangSpec, container: tree_sitter.Node) -> list[tree_sitter.Node]:
    out: list[tree_sitter.Node] = []
    for child in container.named_children:
        if child.type in spec.wrappers:
            out.extend(c for c in child.named_children if c.type in spec.defs)
        elif child.type in spec.defs:
            out.append(child)
    return out


def indentation_outline(cursor: Cursor) -> str:
    """Lines above the cursor with less indentation than the cursor's block: headers in any language."""
    lines = cursor.text[: cursor.query.offset].split("\n")
    current = lines[-1]
    level = len(current) - len(current.lstrip()) if current.strip() else None
    headers: list[tuple[int, str]] = []
    for row in range(len(lines) - 2, max(-1, len(lines) - 2000), -1):
        line = lines[row]
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if level is None:
            level = indent + 1  # the cursor continues the block of the last non-blank line
            continue
        if indent < level:
            if not cursor.in_window(row):
                headers.append((row, line.rstrip()))
            level = indent
            if indent == 0 or len(headers) >= MAX_DEPTH:
                break
    return "\n".join(text for _row, text in sorted(headers))
