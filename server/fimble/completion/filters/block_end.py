"""Single line or a block, and where the block ends: decided from the text at the cursor.

Mid-line, a suggestion only finishes the line. At the end of a line it finishes the statement (its line, then
continuation lines or a body deeper than it); on an empty line it may be a block. Either ends where the generated
code leaves the cursor's scope: the first line indented less than the scope, or the line that closes a bracket
opened before the suggestion began.
"""

from __future__ import annotations

from fimble.completion.filters.suggestion import FilterContext, Suggestion, indent_width
from fimble.languages import LINE_COMMENT_MARKS, comment_prefix

MAX_BLOCK_LINES = 24
_OPENERS = "([{"
_CLOSERS = ")]}"
_BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->", " do", " then")


def is_mid_line(ctx: FilterContext) -> bool:
    """Code (not just closing brackets, quotes or punctuation) to the right of the cursor."""
    rest = ctx.line_suffix.strip()
    return bool(rest.strip(")]}\"'`;,"))


def in_comment_or_string(ctx: FilterContext) -> bool:
    """The cursor sits in a line comment or an unterminated string on its line (a cheap lexical check: it runs
    on every keystroke, and being wrong only costs a multi-line suggestion)."""
    quote: str | None = None
    semicolon_comments = comment_prefix(ctx.language_id) == ";"  # elsewhere ';' ends a statement
    line = ctx.line_prefix
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif any(line.startswith(mark, i) for mark in LINE_COMMENT_MARKS) and (ch != ";" or semicolon_comments):
            return True
        i += 1
    return quote is not None


def opens_block(ctx: FilterContext) -> bool:
    line = ctx.line_prefix.rstrip()
    return line.endswith(_BLOCK_OPENERS)


def limit_to_scope(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    if is_mid_line(ctx) or in_comment_or_string(ctx):
        return s.with_text(s.text.split("\n", 1)[0])
    lines = s.text.split("\n")
    if len(lines) == 1:
        return s
    line_prefix = ctx.line_prefix
    if line_prefix.strip():
        # A statement being typed ends with its own line: what may follow is its continuation or, after a block
        # opener, its body, both deeper than the line. The next statement at the line's level is a guess the user
        # has not started; leaving it out keeps the suggestion (and its generation) short.
        floor = indent_width(line_prefix) + 1
        last = line_prefix[-1]
        if (last.isalnum() or last == "_") and not lines[0].strip():
            return s.with_text("")  # the model ended a half-typed word with a line break: it has nothing to add
    else:
        header = _previous_code_line(ctx.prefix)
        if header is not None and header.rstrip().endswith(_BLOCK_OPENERS):
            floor = indent_width(header) + 1  # first line of a body
        else:
            floor = len(line_prefix.expandtabs(4))  # an empty line: the cursor's column is the scope's indentation
    kept = [lines[0]]
    # Brackets left open before the cursor may be closed by the suggestion (`compute(a,` + `b)`).
    depth = max(0, _bracket_delta(line_prefix)) + _bracket_delta(lines[0])
    seen_blank = False
    for line in lines[1:]:
        if len(kept) >= MAX_BLOCK_LINES:
            break
        if not line.strip():
            seen_blank = kept[-1].strip() != "" or seen_blank
        elif floor == 0 and seen_blank and indent_width(line) == 0 and "".join(kept).strip():
            break  # at top level a blank line then new top-level code starts the next definition
        if line.strip():
            if indent_width(line) < floor:
                # A closing bracket at the header's level closes what the suggestion opened: keep it, then stop.
                if depth > 0 and line.strip()[0] in _CLOSERS:
                    kept.append(line)
                break
            depth += _bracket_delta(line)
            if depth < 0:
                break
        kept.append(line)
    return s.with_text("\n".join(kept))


def _previous_code_line(prefix: str) -> str | None:
    """The last non-blank line before the cursor's line."""
    lines = prefix.split("\n")[:-1]
    for line in reversed(lines[-50:]):
        if line.strip():
            return line
    return None


def _bracket_delta(line: str) -> int:
    return sum(line.count(c) for c in _OPENERS) - sum(line.count(c) for c in _CLOSERS)
