"""Definitions and imports of one file, from its syntax tree: pure functions over (tree, source bytes, grammar)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter

from fimble.syntax.specs import LangSpec, spec_for

# Caps keep the index bounded on generated or giant files; signatures and docs are what the prompt shows, so they
# are cut where a model stops benefiting from more.
MAX_SYMBOLS_PER_FILE = 400
MAX_SIG_CHARS = 400
MAX_SIG_LINES = 8
MAX_DOC_CHARS = 360
MAX_DOC_LINES = 6
SMALL_TYPE_LINES = 14
_MAX_DEPTH = 4
_JS_LIKE = ("javascript", "typescript", "tsx")


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    kind: str  # function | class | type | variable | macro
    line: int  # 0-based row of the definition
    container: str  # enclosing class/impl/namespace name, "" at top level
    sig: str  # header (classes) or stub (everything else), dedented
    doc: str  # docstring (Python, string literal as written) or leading comment, dedented; "" if none
    end_line: int = -1

    def to_row(self) -> list[str | int]:
        return [self.name, self.kind, self.line, self.container, self.sig, self.doc, self.end_line]

    @staticmethod
    def from_row(row: list[str | int]) -> Symbol:
        name, kind, line, container, sig, doc, end_line = row
        return Symbol(str(name), str(kind), int(line), str(container), str(sig), str(doc), int(end_line))


@dataclass(frozen=True, slots=True)
class Import:
    """One import: `module` as written (dots or slashes), local names bound to remote names ('*' = the module)."""

    module: str
    names: tuple[tuple[str, str], ...] = ()
    level: int = 0  # Python relative-import dots
    line: int = 0


def text_of(src: bytes, node: tree_sitter.Node) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8", "replace")


# -- definitions ---------------------------------------------------------------------------------------------------


def extract_symbols(tree: tree_sitter.Tree, src: bytes, grammar: str) -> list[Symbol]:
    spec = spec_for(grammar)
    if spec is None:
        return []
    out: list[Symbol] = []
    for sym in _walk(spec, tree.root_node, src, "", 0):
        out.append(sym)
        if len(out) >= MAX_SYMBOLS_PER_FILE:
            break
    return out


def _walk(spec: LangSpec, node: tree_sitter.Node, src: bytes, container: str, depth: int) -> Iterator[Symbol]:
    if depth > _MAX_DEPTH:
        return
    for child in node.named_children:
        t = child.type
        kind = spec.defs.get(t)
        if kind is not None:
            sym = make_symbol(spec, child, src, kind, container)
            if sym is not None:
                yield sym
                if sym.kind in spec.member_kinds:
                    body = child.child_by_field_name("body")
                    if body is not None:
                        yield from _walk(spec, body, src, sym.name, depth + 1)
                continue
        if t in spec.wrappers:
            yield from _walk(spec, child, src, container, depth)
        elif t in spec.containers and t not in ("block", "statement_block"):
            # Namespaces and modules do not make their members "methods"; a Rust impl block does.
            inner = _container_name(spec, child, src) if t == "impl_item" else container
            body = child.child_by_field_name("body") or child
            yield from _walk(spec, body, src, inner, depth + 1)
        elif t in ("if_statement", "try_statement") and depth == 0:
            # Module-level `if TYPE_CHECKING:` / `try: import ... except` blocks define names too.
            for block in child.named_children:
                if block.type == "block":
                    yield from _walk(spec, block, src, container, depth + 1)
                elif block.type in ("else_clause", "except_clause", "elif_clause"):
                    for inner_block in block.named_children:
                        if inner_block.type == "block":
                            yield from _walk(spec, inner_block, src, container, depth + 1)


def _container_name(spec: LangSpec, node: tree_sitter.Node, src: bytes) -> str:
    if node.type == "impl_item":
        typ = node.child_by_field_name("type")
        return text_of(src, typ) if typ is not None else ""
    name = node.child_by_field_name("name")
    return text_of(src, name) if name is not None else ""


def definition_name(spec: LangSpec, node: tree_sitter.Node, src: bytes) -> str | None:
    """The defined name, or None when the node does not define one worth indexing."""
    t = node.type
    if spec.name == "python" and t == "expression_statement":
        assign = node.named_children[0] if node.named_child_count else None
        if assign is None or assign.type != "assignment":
            return None
        left = assign.child_by_field_name("left")
        return text_of(src, left) if left is not None and left.type == "identifier" else None
    if t in ("function_definition", "declaration", "field_declaration") and spec.name in ("c", "cpp"):
        return _declarator_name(node, src, need_function=t != "function_definition")
    if t == "type_definition":
        decl = node.child_by_field_name("declarator")
        return text_of(src, decl) if decl is not None and decl.type == "type_identifier" else None
    if t in ("struct_specifier", "union_specifier", "enum_specifier", "class_specifier") and (
        node.child_by_field_name("body") is None
    ):
        return None  # a forward declaration or a use, not a definition
    if t == "variable_declarator":
        name = node.child_by_field_name("name")
        return text_of(src, name) if name is not None and name.type == "identifier" else None
    if spec.name == "lua" and t == "assignment_statement":
        return _lua_assigned_function(node, src)
    name = node.child_by_field_name("name")
    if name is None:
        return None
    if name.type in ("dot_index_expression", "method_index_expression"):
        field = name.child_by_field_name("field") or name.child_by_field_name("method")
        return text_of(src, field) if field is not None else None
    text = text_of(src, name)
    return text if text and len(text) <= 120 else None


def _declarator_name(node: tree_sitter.Node, src: bytes, need_function: bool) -> str | None:
    decl = node.child_by_field_name("declarator")
    seen_function = False
    while decl is not None:
        if decl.type == "function_declarator":
            seen_function = True
        if decl.type in ("identifier", "field_identifier", "operator_name", "destructor_name", "type_identifier"):
            return text_of(src, decl) if seen_function or not need_function else None
        if decl.type == "qualified_identifier":
            name = decl.child_by_field_name("name")
            if name is None:
                return None
            if name.type in ("identifier", "destructor_name", "operator_name", "field_identifier"):
                return text_of(src, name) if seen_function or not need_function else None
            decl = name
            continue
        decl = decl.child_by_field_name("declarator")
    return None


def _lua_assigned_function(node: tree_sitter.Node, src: bytes) -> str | None:
    values = [c for c in node.named_children if c.type == "expression_list"]
    targets = [c for c in node.named_children if c.type == "variable_list"]
    if not values or not targets:
        return None
    value = values[0].named_children[0] if values[0].named_child_count else None
    target = targets[0].named_children[0] if targets[0].named_child_count else None
    if value is None or target is None or value.type != "function_definition":
        return None
    if target.type == "dot_index_expression":
        field = target.child_by_field_name("field")
        return text_of(src, field) if field is not None else None
    return text_of(src, target) if target.type == "identifier" else None


def _container_of_method(spec: LangSpec, node: tree_sitter.Node, src: bytes) -> str:
    if spec.name == "go" and node.type == "method_declaration":
        receiver = node.child_by_field_name("receiver")
        if receiver is not None:
            m = re.search(r"(\w+)\s*(?:\[[^\]]*\])?\s*\)\s*$", text_of(src, receiver))
            return m.group(1) if m else ""
    if spec.name == "lua":
        name = node.child_by_field_name("name")
        if name is not None and name.type in ("dot_index_expression", "method_index_expression"):
            table = name.child_by_field_name("table")
            return text_of(src, table) if table is not None else ""
    if spec.name == "cpp" and node.type == "function_definition":
        m = re.search(r"(\w+)\s*::\s*~?\w+\s*\(", text_of(src, node).split("{", 1)[0])
        return m.group(1) if m else ""
    return ""


def make_symbol(spec: LangSpec, node: tree_sitter.Node, src: bytes, kind: str, container: str) -> Symbol | None:
    name = definition_name(spec, node, src)
    if not name:
        return None
    if spec.name in _JS_LIKE and node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        if value is not None and value.type in ("arrow_function", "function_expression", "function"):
            kind = "function"
        elif value is not None and value.type in ("class", "class_expression"):
            kind = "class"
    container = container or _container_of_method(spec, node, src)
    return Symbol(
        name=name,
        kind=kind,
        line=node.start_point[0],
        container=container,
        sig=signature(spec, node, src, kind),
        doc=docstring(spec, node, src),
        end_line=node.end_point[0],
    )


def signature(spec: LangSpec, node: tree_sitter.Node, src: bytes, kind: str) -> str:
    """The header of a class, the whole of a small type or variable, a stub (header + placeholder) otherwise."""
    return (_keyword_lead(spec, node, src) + _signature(spec, node, src, kind)).rstrip()


_SPEC_KEYWORDS = {"type_spec": "type ", "type_alias": "type ", "const_spec": "const ", "var_spec": "var "}


def _keyword_lead(spec: LangSpec, node: tree_sitter.Node, src: bytes) -> str:
    """What wrappers put before the definition on its line (`export const`, Go's `type`, `declare`, `template<T>`):
    part of how the definition reads. Decorators on lines of their own are left out."""
    lead = ""
    child, parent = node, node.parent
    while parent is not None and parent.type in spec.wrappers:
        gap = src[parent.start_byte : child.start_byte]
        if b"\n" in gap or len(gap) > 60:
            break
        lead = gap.decode("utf-8", "replace") + lead
        child, parent = parent, parent.parent
    if not lead and node.type in _SPEC_KEYWORDS:
        return _SPEC_KEYWORDS[node.type]  # one spec of a parenthesised group
    return lead


def _line_indent(src: bytes, byte: int) -> int:
    """Indentation width of the line holding `byte`: what continuation lines of a definition are relative to."""
    start = src.rfind(b"\n", 0, byte) + 1
    line = src[start:byte]
    return len(line) - len(line.lstrip(b" \t"))


def _signature(spec: LangSpec, node: tree_sitter.Node, src: bytes, kind: str) -> str:
    column = _line_indent(src, node.start_byte)
    start = node.start_byte
    lines = node.end_point[0] - node.start_point[0] + 1
    body = _body_of(node)
    if kind in ("type", "variable", "macro") and (lines <= SMALL_TYPE_LINES or body is None):
        text = _dedent(src[start : node.end_byte].decode("utf-8", "replace"), column)
        return _truncate(text, MAX_SIG_LINES if kind != "type" else SMALL_TYPE_LINES)
    if body is None:
        return _truncate(_dedent(src[start : node.end_byte].decode("utf-8", "replace"), column), MAX_SIG_LINES)
    header = _dedent(src[start : body.start_byte].decode("utf-8", "replace"), column).rstrip()
    header = _truncate(header, MAX_SIG_LINES)
    if kind in ("class",) or kind in spec.member_kinds:
        return header.rstrip(":").rstrip() + (":" if spec.name == "python" else "")
    if spec.name == "python":
        return header.rstrip(":") + ": ..."
    if spec.name == "lua":
        return header + " ... end"
    if (
        spec.name in _JS_LIKE
        and node.type == "variable_declarator"
        and src[body.start_byte : body.start_byte + 1] != b"{"
    ):
        # `const f = (x) => x + 1`: the whole arrow function is shorter than a stub
        return _truncate(_dedent(src[start : node.end_byte].decode("utf-8", "replace"), column), 3)
    return header + spec.stub


def _body_of(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    if node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        if value is not None:
            return value.child_by_field_name("body")
    if node.type == "type_spec":
        typ = node.child_by_field_name("type")
        if typ is not None and typ.type in ("struct_type", "interface_type"):
            for child in typ.named_children:
                if child.type in ("field_declaration_list", "method_spec_list"):
                    return child
            return typ
    return None


def docstring(spec: LangSpec, node: tree_sitter.Node, src: bytes) -> str:
    if spec.doc == "python":
        body = node.child_by_field_name("body")
        if body is None or not body.named_child_count:
            return ""
        first = body.named_children[0]
        if first.type == "expression_statement" and first.named_child_count:
            lit = first.named_children[0]
            if lit.type == "string":
                return _truncate(
                    _dedent(text_of(src, lit), _line_indent(src, lit.start_byte)), MAX_DOC_LINES, MAX_DOC_CHARS
                )
        return ""
    if spec.doc == "none":
        return ""
    anchor = node
    while anchor.parent is not None and anchor.parent.type in spec.wrappers:
        anchor = anchor.parent
    parts: list[str] = []
    expected_row = anchor.start_point[0]
    prev = anchor.prev_named_sibling
    while prev is not None and len(parts) < MAX_DOC_LINES * 2:
        if prev.type in ("attribute_item", "decorator", "annotation", "marker_annotation"):
            expected_row = prev.start_point[0]
            prev = prev.prev_named_sibling
            continue
        if prev.type not in spec.comments or prev.end_point[0] < expected_row - 1:
            break
        parts.append(_dedent(text_of(src, prev), _line_indent(src, prev.start_byte)).rstrip())
        expected_row = prev.start_point[0]
        prev = prev.prev_named_sibling
    if not parts:
        return ""
    return _truncate("\n".join(reversed(parts)), MAX_DOC_LINES, MAX_DOC_CHARS, tail=False)


def _dedent(text: str, column: int) -> str:
    """Remove the first line's indentation (`column`) from the following lines."""
    if column <= 0 or "\n" not in text:
        return text
    lines = text.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        strip = min(column, len(line) - len(line.lstrip(" \t")))
        out.append(line[strip:])
    return "\n".join(out)


def _truncate(text: str, max_lines: int, max_chars: int = MAX_SIG_CHARS, tail: bool = True) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    cut = len(lines) > max_lines
    if cut:
        lines = lines[:max_lines]
    out = "\n".join(line if len(line) <= 200 else line[:200] + "…" for line in lines)
    if len(out) > max_chars:
        out = out[:max_chars]
        cut = True
    return out + (" …" if cut and tail else "")


# -- imports -------------------------------------------------------------------------------------------------------


ImportMemo = dict[tuple[int, bytes], list[Import]]  # (line, statement text) -> its imports
MAX_IMPORT_MEMO = 4096


def extract_imports(tree: tree_sitter.Tree, src: bytes, grammar: str, memo: ImportMemo | None = None) -> list[Import]:
    """Imports among the top-level statements (and one level into preprocessor/ifdef and `if` blocks).

    Only the top level is scanned: it is where nearly all imports live, and it keeps this O(top-level statements)
    so it can run on every keystroke in a large file. `memo` keeps each statement's imports from one keystroke to
    the next (a statement that did not change, on a line that did not move, has the same ones).
    """
    spec = spec_for(grammar)
    if spec is None:
        return []
    out: list[Import] = []
    nodes = list(tree.root_node.named_children)
    i = 0
    while i < len(nodes) and i < 5000:
        node = nodes[i]
        i += 1
        if node.type in ("preproc_ifdef", "preproc_if", "preproc_else", "if_statement", "block"):
            nodes[i:i] = list(node.named_children)
            continue
        if node.type not in spec.imports:
            continue
        if memo is None:
            out.extend(_imports_of(spec, node, src))
            continue
        key = (node.start_point[0], src[node.start_byte : node.end_byte])
        found = memo.get(key)
        if found is None:
            if len(memo) >= MAX_IMPORT_MEMO:
                memo.clear()
            found = memo[key] = _imports_of(spec, node, src)
        out.extend(found)
    return out


def _imports_of(spec: LangSpec, node: tree_sitter.Node, src: bytes) -> list[Import]:
    line = node.start_point[0]
    lang = spec.name
    if lang == "python":
        return _python_imports(node, src, line)
    if lang in ("javascript", "typescript", "tsx"):
        return _js_imports(node, src, line)
    if lang == "go":
        out = []
        for spec_node in _descendants(node, "import_spec"):
            path = spec_node.child_by_field_name("path")
            if path is None:
                continue
            module = text_of(src, path).strip('"`')
            alias = spec_node.child_by_field_name("name")
            local = text_of(src, alias) if alias is not None else module.rsplit("/", 1)[-1]
            out.append(Import(module, ((local, "*"),), line=line))
        return out
    if lang == "rust":
        return _rust_imports(node, src, line)
    if lang in ("c", "cpp"):
        path = node.child_by_field_name("path")
        if path is None:
            return []
        raw = text_of(src, path)
        return [Import(raw.strip('"<>'), (("*", "*"),), level=1 if raw.startswith('"') else 0, line=line)]
    if lang == "java":
        text = text_of(src, node).removeprefix("import").strip().rstrip(";").strip()
        text = text.removeprefix("static").strip()
        module, _, last = text.rpartition(".")
        return [Import(module, ((last, last) if last != "*" else ("*", "*"),), line=line)]
    if lang == "lua":
        return _lua_imports(node, src, line)
    if lang == "bash":
        name = node.child_by_field_name("name")
        if name is None or text_of(src, name) not in ("source", "."):
            return []
        args = node.children_by_field_name("argument")
        if not args:
            return []
        return [Import(text_of(src, args[0]).strip("\"'"), (("*", "*"),), level=1, line=line)]
    return []


def _descendants(node: tree_sitter.Node, node_type: str, limit: int = 200) -> list[tree_sitter.Node]:
    out: list[tree_sitter.Node] = []
    stack = [node]
    while stack and len(out) < limit:
        n = stack.pop()
        if n.type == node_type:
            out.append(n)
            continue
        stack.extend(reversed(n.named_children))
    return out


def _python_imports(node: tree_sitter.Node, src: bytes, line: int) -> list[Import]:
    if node.type == "import_statement":
        out = []
        for child in node.named_children:
            if child.type == "dotted_name":
                module = text_of(src, child)
                out.append(Import(module, ((module.split(".", 1)[0], "*"),), line=line))
            elif child.type == "aliased_import":
                name, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
                if name is not None and alias is not None:
                    out.append(Import(text_of(src, name), ((text_of(src, alias), "*"),), line=line))
        return out
    if node.type != "import_from_statement":
        return []
    module_node = node.child_by_field_name("module_name")
    if module_node is None:
        return []
    level = 0
    module = text_of(src, module_node)
    if module_node.type == "relative_import":
        level = len(module) - len(module.lstrip("."))
        module = module.lstrip(".")
    names: list[tuple[str, str]] = []
    for child in node.children_by_field_name("name"):
        if child.type == "dotted_name":
            n = text_of(src, child)
            names.append((n, n))
        elif child.type == "aliased_import":
            name, alias = child.child_by_field_name("name"), child.child_by_field_name("alias")
            if name is not None and alias is not None:
                names.append((text_of(src, alias), text_of(src, name)))
    if any(c.type == "wildcard_import" for c in node.named_children):
        names.append(("*", "*"))
    return [Import(module, tuple(names), level=level, line=line)]


def _js_source(node: tree_sitter.Node, src: bytes) -> str | None:
    source = node.child_by_field_name("source")
    if source is None:
        return None
    return text_of(src, source).strip("\"'`")


def _js_imports(node: tree_sitter.Node, src: bytes, line: int) -> list[Import]:
    if node.type == "import_statement":
        module = _js_source(node, src)
        if module is None:
            return []
        names: list[tuple[str, str]] = []
        for clause in node.named_children:
            if clause.type != "import_clause":
                continue
            for part in clause.named_children:
                if part.type == "identifier":
                    names.append((text_of(src, part), "default"))
                elif part.type == "namespace_import":
                    ident = [c for c in part.named_children if c.type == "identifier"]
                    if ident:
                        names.append((text_of(src, ident[0]), "*"))
                elif part.type == "named_imports":
                    for spec_node in part.named_children:
                        if spec_node.type != "import_specifier":
                            continue
                        name = spec_node.child_by_field_name("name")
                        alias = spec_node.child_by_field_name("alias")
                        if name is not None:
                            remote = text_of(src, name)
                            names.append((text_of(src, alias) if alias is not None else remote, remote))
        return [Import(module, tuple(names), line=line)]
    # const x = require("./x") / const {a, b} = require("./x")
    out = []
    for decl in node.named_children:
        if decl.type != "variable_declarator":
            continue
        value = decl.child_by_field_name("value")
        target = decl.child_by_field_name("name")
        if value is None or target is None or value.type != "call_expression":
            continue
        fn = value.child_by_field_name("function")
        args = value.child_by_field_name("arguments")
        if fn is None or args is None or text_of(src, fn) != "require" or not args.named_child_count:
            continue
        module = text_of(src, args.named_children[0]).strip("\"'`")
        if target.type == "identifier":
            out.append(Import(module, ((text_of(src, target), "*"),), line=line))
        elif target.type == "object_pattern":
            names = []
            for prop in target.named_children:
                if prop.type == "shorthand_property_identifier_pattern":
                    n = text_of(src, prop)
                    names.append((n, n))
                elif prop.type == "pair_pattern":
                    key, val = prop.child_by_field_name("key"), prop.child_by_field_name("value")
                    if key is not None and val is not None:
                        names.append((text_of(src, val), text_of(src, key)))
            out.append(Import(module, tuple(names), line=line))
    return out


_RUST_USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+(.*?);?\s*$", re.S)


def _rust_imports(node: tree_sitter.Node, src: bytes, line: int) -> list[Import]:
    text = text_of(src, node)
    if node.type == "mod_item":
        if node.child_by_field_name("body") is not None:
            return []
        name = node.child_by_field_name("name")
        if name is None:
            return []
        n = text_of(src, name)
        return [Import(f"self::{n}", ((n, "*"),), line=line)]
    if node.type != "use_declaration":
        return []
    m = _RUST_USE.match(text)
    if not m:
        return []
    path = re.sub(r"\s+", "", m.group(1))
    if "{" in path:
        base, _, rest = path.partition("{")
        base = base.rstrip(":")
        items = rest.rstrip("}").split(",")
    else:
        base, _, last = path.rpartition("::")
        items = [last]
    names: list[tuple[str, str]] = []
    for item in items:
        if not item or "{" in item or "}" in item:
            continue
        remote, _, alias = item.partition("as")
        if item.endswith("::*") or item == "*":
            names.append(("*", "*"))
            continue
        remote = remote.split("::")[-1]
        if remote == "self":
            names.append((base.rsplit("::", 1)[-1], "*"))
            continue
        names.append((alias or remote, remote))
    return [Import(base, tuple(names), line=line)]


def _lua_imports(node: tree_sitter.Node, src: bytes, line: int) -> list[Import]:
    out = []
    for call in _descendants(node, "function_call", limit=8):
        name = call.child_by_field_name("name")
        args = call.child_by_field_name("arguments")
        if name is None or args is None or text_of(src, name) != "require":
            continue
        strings = _descendants(args, "string", limit=1)
        if not strings:
            continue
        module = text_of(src, strings[0]).strip("\"'[]")
        local = ""
        m = re.match(r"\s*(?:local\s+)?([\w.]+)\s*=", text_of(src, node))
        if m:
            local = m.group(1)
        out.append(Import(module, ((local or module.rsplit(".", 1)[-1], "*"),), line=line))
    return out
