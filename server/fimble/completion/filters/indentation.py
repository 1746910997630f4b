"""Indentation consistent with the file: tabs or spaces as the file uses them."""

from __future__ import annotations

from fimble.completion.filters.suggestion import FilterContext, Suggestion, indent_of


def match_file_indentation(s: Suggestion, ctx: FilterContext) -> Suggestion | None:
    unit = ctx.indent_unit
    lines = s.text.split("\n")
    if len(lines) == 1:
        return s
    out = [lines[0]]
    for line in lines[1:]:
        lead = indent_of(line)
        body = line[len(lead) :]
        if unit == "\t" and " " in lead:
            lead = "\t" * (len(lead.expandtabs(4)) // 4) + " " * (len(lead.expandtabs(4)) % 4)
        elif unit != "\t" and "\t" in lead:
            lead = lead.expandtabs(len(unit))
        out.append(lead + body)
    return s.with_text("\n".join(out))
