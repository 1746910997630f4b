"""The typist of the latency replays: types a region of a real file as a person does (accepting whole suggestions
or their next word, accepting some wrong ones and undoing them, making typos and backspacing them), and where in a
file such a replay starts and ends."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import tree_sitter

from fimble.completion.filters.suggestion import indent_width
from fimble.syntax.error_nodes import count_errors
from fimble.syntax.grammars import get_parser


@dataclass
class Typist:
    """Types `region` between `before` and `after`; `extra` is text typed by mistake (a typo, a wrong accept)."""

    before: str
    region: str
    after: str
    rng: random.Random
    accept_rate: float
    typo_rate: float
    pos: int = 0
    extra: str = ""
    extra_kind: str = ""  # "typo" or "accept-wrong"
    last: str = ""  # the previous action

    @property
    def text(self) -> str:
        return self.before + self.region[: self.pos] + self.extra + self.after

    @property
    def offset(self) -> int:
        return len(self.before) + self.pos + len(self.extra)

    @property
    def done(self) -> bool:
        return self.pos >= len(self.region) and not self.extra

    def next_action(self, suggestion: str) -> tuple[str, int, int, str]:
        """(kind, start, end, new_text): the next edit, as a replacement of text[start:end] by new_text."""
        action = self._next(suggestion)
        self.last = action[0]
        return action

    def _next(self, suggestion: str) -> tuple[str, int, int, str]:
        cursor = self.offset
        if self.extra:
            # Fix the mistake first: a typo is backspaced, a wrong suggestion is undone in one step.
            if self.extra_kind == "typo":
                self.extra = self.extra[:-1]
                return "backspace", cursor - 1, cursor, ""
            start = cursor - len(self.extra)
            self.extra = ""
            return "undo", start, cursor, ""
        upcoming = self.region[self.pos :]
        if suggestion and upcoming.startswith(suggestion):
            self.pos += len(suggestion)
            return "accept", cursor, cursor, suggestion
        word = _first_word(suggestion)
        if len(word) >= 2 and upcoming.startswith(word):
            self.pos += len(word)
            return "accept-word", cursor, cursor, word
        if suggestion and self.rng.random() < self.accept_rate:
            self.extra, self.extra_kind = suggestion, "accept-wrong"
            return "accept-wrong", cursor, cursor, suggestion
        char = upcoming[0]
        # Never two typos in a row on the same character: a person gets it right after backspacing.
        if char.isalnum() and self.last != "backspace" and self.rng.random() < self.typo_rate:
            typo = "x" if char != "x" else "z"
            self.extra, self.extra_kind = typo, "typo"
            return "typo", cursor, cursor, typo
        if char == "\n":
            # Editors auto-indent a new line: Enter inserts the newline and the next line's indentation.
            rest = upcoming[1:]
            indent = rest[: len(rest) - len(rest.lstrip(" \t"))]
            self.pos += 1 + len(indent)
            return "type", cursor, cursor, "\n" + indent
        self.pos += 1
        return "type", cursor, cursor, char


def _first_word(text: str) -> str:
    """The part VS Code's "accept next word" takes: leading whitespace plus one identifier or one symbol run."""
    m = re.match(r"\s*(\w+|[^\w\s]+)", text)
    return m.group(0) if m else ""


def start_offset(text: str, line: int | None, path: str = "") -> int:
    """Cursor start: after the indentation of `line` (1-based), or of the first indented statement line at or after
    40% of the file (the middle of real code, with context on both sides), not inside a string or a comment where
    the file's grammar can tell."""
    lines = text.split("\n")
    if line is not None:
        if not 1 <= line <= len(lines):
            raise ValueError(f"--line {line} is outside the file (1..{len(lines)}).")
        row = line - 1
    else:
        parser = get_parser(None, path) if path else None
        tree = parser.parse(text.encode("utf-8", "surrogatepass")) if parser else None
        row = next(
            (
                r
                for r in range(int(len(lines) * 0.4), len(lines))
                if lines[r].startswith((" ", "\t"))
                and re.match(r"\s+[A-Za-z_]", lines[r])
                and not (tree and _in_string_or_comment(tree, r, indent_width(lines[r])))
            ),
            0,
        )
    offset = sum(len(x) + 1 for x in lines[:row])
    return offset + len(lines[row]) - len(lines[row].lstrip(" \t"))


def _in_string_or_comment(tree: tree_sitter.Tree, row: int, column: int) -> bool:
    node: tree_sitter.Node | None = tree.root_node.descendant_for_point_range((row, column), (row, column))
    while node is not None:
        if "string" in node.type or "comment" in node.type:
            return True
        node = node.parent
    return False


def region_end(text: str, start: int, chars: int, path: str = "") -> int:
    """End of the region to type: at least `chars` characters, extended to the end of a line where the rest of the
    file still parses as well as the whole file does (so not inside a docstring or an open bracket), or else to the
    end of the line `chars` reaches.

    Someone typing code top to bottom never has the closing half of a docstring below the cursor without its
    opening half above; a replay cut there would measure a file state no editor sees, and every suggestion's
    syntax check would run against a suffix whose strings and code have swapped places."""
    end = min(len(text), start + chars)
    newline = text.find("\n", end)
    first = len(text) if newline == -1 else newline
    parser = get_parser(None, path) if path else None
    if parser is None:
        return first
    whole = count_errors(parser.parse(text.encode("utf-8", "surrogatepass")).root_node)[0]
    candidate = first
    for _ in range(_REGION_SEARCH_LINES):
        rest = (text[:start] + text[candidate:]).encode("utf-8", "surrogatepass")
        if count_errors(parser.parse(rest).root_node)[0] <= whole:
            return candidate
        newline = text.find("\n", candidate + 1)
        if newline == -1:
            break
        candidate = newline
    return first


# How many lines past `chars` the region may grow to reach a clean end.
_REGION_SEARCH_LINES = 60
