"""The cursor window: token-budgeted cuts, then edges moved to syntactic boundaries."""

from __future__ import annotations

from typing import cast

from fimble.context.window import snap_window
from fimble.model.backend import ModelBackend
from fimble.prompt.budget import cut_prefix, cut_suffix
from fimble.syntax.trees import parse_text


class _CharTokens:
    """One token per character: budgets in the tests read as character counts."""

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]


BACKEND = cast(ModelBackend, _CharTokens())

CODE = """import os

def first(a):
    total = compute(
        a,
        b,
    )
    return total

def second(b):
    text = \"\"\"a long
string that spans
lines\"\"\"
    return text + b
"""


def test_cuts_fit_the_budget_at_line_boundaries() -> None:
    prefix = cut_prefix(BACKEND, CODE, 60)
    assert len(prefix) <= 60 and CODE.endswith(prefix) and (prefix == CODE or CODE[-len(prefix) - 1] == "\n")
    suffix = cut_suffix(BACKEND, CODE, 50)
    assert len(suffix) <= 50 and CODE.startswith(suffix)
    assert cut_prefix(BACKEND, CODE, 0) == "" and cut_suffix(BACKEND, CODE, 0) == ""


def test_one_enormous_line_is_cut_between_identifiers() -> None:
    line = " ".join(f"identifier_{i}" for i in range(2000))
    prefix = cut_prefix(BACKEND, line, 100)
    assert len(prefix) <= 100 and line.endswith(prefix)
    assert prefix.startswith(" ") or prefix.startswith("identifier_")
    suffix = cut_suffix(BACKEND, line, 100)
    assert len(suffix) <= 100 and line.startswith(suffix) and not suffix[-1].isalnum()


def test_prefix_start_moves_out_of_an_argument_list_and_a_string() -> None:
    tree = parse_text(CODE, "python")
    cursor = CODE.index("return text")
    inside_call = CODE.index("        b,")  # a window cut inside `compute(` ... `)`
    start, _ = snap_window(tree, CODE, cursor, inside_call, len(CODE))
    assert CODE[start:].startswith("    return total")
    inside_string = CODE.index("string that spans")
    start, _ = snap_window(tree, CODE, len(CODE) - 1, inside_string, len(CODE))
    assert CODE[start:].startswith("    return text + b")


def test_suffix_end_moves_back_to_a_statement_start() -> None:
    tree = parse_text(CODE, "python")
    cursor = CODE.index("import os") + 3
    end_in_call = CODE.index("        b,") + len("        b,")  # a line cut inside `compute(` ... `)`
    _, end = snap_window(tree, CODE, cursor, 0, end_in_call)
    assert CODE[:end].endswith("def first(a):\n")
    assert cursor < end <= end_in_call


def test_without_a_tree_edges_move_to_paragraphs() -> None:
    text = "alpha\nbeta\n\ngamma\ndelta\n\nepsilon\nzeta\n"
    start, end = snap_window(None, text, text.index("delta"), text.index("beta"), len(text) - 2)
    assert text[start:].startswith("gamma")
    assert start <= text.index("delta") <= end


def test_snapping_never_passes_the_cursor() -> None:
    tree = parse_text(CODE, "python")
    for cursor in range(0, len(CODE), 7):
        for lo in range(0, cursor, 11):
            if lo and CODE[lo - 1] != "\n":
                continue
            start, end = snap_window(tree, CODE, cursor, lo, len(CODE))
            assert lo <= start <= cursor <= end <= len(CODE)
