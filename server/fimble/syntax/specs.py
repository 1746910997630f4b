"""What counts as a definition, a container and an import in each grammar.

Tables rather than tree-sitter queries: the index and the scope source walk only container nodes (module, class
bodies, namespaces, export wrappers) and never descend into function bodies, so a walk touches a few hundred nodes
even in a 10,000-line file, and the same tables tell the scope source what "enclosing" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DocStyle = Literal["python", "comment", "none"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _defs(**kinds: str) -> dict[str, str]:
    """Node type -> kind, from kind=\"node types separated by spaces\"."""
    return {node: kind.rstrip("_") for kind, nodes in kinds.items() for node in nodes.split()}


@dataclass(frozen=True)
class LangSpec:
    name: str
    # Definition node type -> kind ("function", "class", "type", "variable", "macro"); methods are functions whose
    # container is a class.
    defs: dict[str, str]
    # Nodes whose children are walked for more definitions (module bodies, class bodies, namespaces).
    containers: frozenset[str] = frozenset()
    # Nodes wrapping one definition (decorators, `export`, templates): walked, and their leading comment is the doc.
    wrappers: frozenset[str] = frozenset()
    imports: frozenset[str] = frozenset()
    doc: DocStyle = "comment"
    comments: frozenset[str] = frozenset({"comment"})
    # Class-like kinds whose body is walked for members.
    member_kinds: frozenset[str] = frozenset({"class"})
    # Whether members render nested inside their class header (not in Go, whose methods stand alone).
    nest_members: bool = True
    body_open: str = " {"
    body_close: str = "}"
    stub: str = " { ... }"
    keywords: frozenset[str] = field(default_factory=frozenset)


_C_KEYWORDS = _words(
    "NULL auto bool break case char class const constexpr continue default delete do double else enum extern false float for friend goto if inline int long namespace new noexcept nullptr operator override private protected public register restrict return short signed sizeof static struct switch template this true typedef typename union unsigned using virtual void volatile while"
)

SPECS: dict[str, LangSpec] = {}
SPECS["python"] = LangSpec(
    name="python",
    defs=_defs(function="function_definition", class_="class_definition", variable="expression_statement"),
    containers=_words("module"),
    wrappers=_words("decorated_definition"),
    imports=_words("future_import_statement import_from_statement import_statement"),
    doc="python",
    body_open=":",
    body_close="",
    stub=": ...",
    keywords=_words(
        "False None True and as assert async await bool break class cls continue def del dict elif else except finally float for from global if import in int is isinstance lambda len list nonlocal not object or pass print raise range return self set str super try tuple while with yield"
    ),
)
SPECS["javascript"] = LangSpec(
    name="javascript",
    defs=_defs(
        function="function_declaration generator_function_declaration method_definition",
        class_="class_declaration",
        variable="variable_declarator",
    ),
    containers=_words("class_body program statement_block"),
    wrappers=_words("export_statement lexical_declaration variable_declaration"),
    imports=_words("import_statement lexical_declaration variable_declaration"),
    keywords=_words(
        "async await break case catch class console const continue debugger default delete do else export exports extends false finally for function if import in instanceof let module new null of require return super switch this throw true try typeof undefined var void while with yield"
    ),
)
SPECS["typescript"] = LangSpec(
    name="typescript",
    defs=_defs(
        function="function_declaration generator_function_declaration method_definition function_signature method_signature abstract_method_signature",
        class_="class_declaration abstract_class_declaration",
        variable="variable_declarator",
        type_="interface_declaration type_alias_declaration enum_declaration",
    ),
    containers=_words("class_body interface_body internal_module module program statement_block"),
    wrappers=_words("ambient_declaration export_statement lexical_declaration variable_declaration"),
    imports=_words("import_statement lexical_declaration variable_declaration"),
    keywords=_words(
        "any as async await boolean break case catch class console const continue debugger declare default delete do else enum export exports extends false finally for function if implements import in instanceof interface is keyof let module namespace never new null number of private protected public readonly require return string super switch this throw true try type typeof undefined unknown var void while with yield"
    ),
)
SPECS["tsx"] = LangSpec(**{**SPECS["typescript"].__dict__, "name": "tsx"})
SPECS["go"] = LangSpec(
    name="go",
    defs=_defs(
        function="function_declaration method_declaration", type_="type_spec type_alias", variable="const_spec var_spec"
    ),
    containers=_words("source_file"),
    wrappers=_words("const_declaration type_declaration var_declaration"),
    imports=_words("import_declaration"),
    member_kinds=frozenset(),
    nest_members=False,
    keywords=_words(
        "append bool break byte case chan const continue default defer else err error fallthrough false for func go goto if import int interface len make map nil package range return select string struct switch true type var"
    ),
)
SPECS["rust"] = LangSpec(
    name="rust",
    defs=_defs(
        function="function_item function_signature_item",
        type_="struct_item enum_item union_item type_item",
        class_="trait_item",
        variable="const_item static_item",
        macro="macro_definition",
    ),
    containers=_words("declaration_list impl_item mod_item source_file"),
    imports=_words("extern_crate_declaration mod_item use_declaration"),
    comments=_words("block_comment line_comment"),
    keywords=_words(
        "Box Err None Ok Option Result Self Some String Vec as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self static struct super trait true type unsafe use where while"
    ),
)
SPECS["c"] = LangSpec(
    name="c",
    defs=_defs(
        function="function_definition declaration",
        type_="struct_specifier union_specifier enum_specifier type_definition",
        macro="preproc_def preproc_function_def",
    ),
    containers=_words(
        "declaration_list linkage_specification preproc_elif preproc_else preproc_if preproc_ifdef translation_unit"
    ),
    imports=_words("preproc_include"),
    member_kinds=frozenset(),
    nest_members=False,
    keywords=_C_KEYWORDS,
)
SPECS["cpp"] = LangSpec(
    name="cpp",
    defs=_defs(
        function="function_definition declaration field_declaration",
        type_="struct_specifier union_specifier enum_specifier type_definition alias_declaration concept_definition",
        macro="preproc_def preproc_function_def",
        class_="class_specifier",
    ),
    containers=_words(
        "declaration_list field_declaration_list linkage_specification namespace_definition preproc_elif preproc_else preproc_if preproc_ifdef translation_unit"
    ),
    wrappers=_words("template_declaration"),
    imports=_words("preproc_include"),
    keywords=_words(
        "NULL auto bool break case char class const const_cast constexpr continue default delete do double dynamic_cast else enum extern false float for friend goto if inline int long namespace new noexcept nullptr operator override private protected public register reinterpret_cast restrict return short signed sizeof static static_cast std struct switch template this true typedef typename union unsigned using virtual void volatile while"
    ),
)
SPECS["java"] = LangSpec(
    name="java",
    defs=_defs(
        class_="class_declaration interface_declaration enum_declaration record_declaration annotation_type_declaration",
        function="method_declaration constructor_declaration",
    ),
    containers=_words("class_body enum_body enum_body_declarations interface_body program"),
    imports=_words("import_declaration"),
    comments=_words("block_comment line_comment"),
    keywords=_words(
        "Object Override String abstract assert boolean break byte case catch char class const continue default do double else enum extends false final finally float for goto if implements import instanceof int interface long native new null package private protected public return short static strictfp super switch synchronized this throw throws transient true try var void volatile while"
    ),
)
SPECS["lua"] = LangSpec(
    name="lua",
    defs=_defs(function="function_declaration assignment_statement"),
    containers=_words("chunk"),
    wrappers=_words("variable_declaration"),
    imports=_words("assignment_statement function_call variable_declaration"),
    member_kinds=frozenset(),
    nest_members=False,
    body_open="",
    body_close="end",
    stub=" ... end",
    keywords=_words(
        "and break do else elseif end false for function goto if in local nil not or repeat require return self then true until while"
    ),
)
SPECS["bash"] = LangSpec(
    name="bash",
    defs=_defs(function="function_definition"),
    containers=_words("program"),
    imports=_words("command"),
    member_kinds=frozenset(),
    nest_members=False,
    stub=" { ...; }",
    keywords=_words(
        "case declare do done echo elif else esac exit export false fi for function if in local readonly return select set shift source then time true unset until while"
    ),
)


def spec_for(grammar: str | None) -> LangSpec | None:
    return SPECS.get(grammar) if grammar else None
