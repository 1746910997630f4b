"""Post-processing filters. Each has the same shape: (suggestion, context) -> suggestion | None, and golden tests
in tests/completion/golden/. The order matters: shape first (scope, repetition), then tidy, then verify syntax."""

from fimble.completion.filters.basic import drop_empty, normalize_newlines, trim_trailing_whitespace
from fimble.completion.filters.block_end import limit_to_scope
from fimble.completion.filters.indentation import match_file_indentation
from fimble.completion.filters.overlap import merge_with_line_suffix
from fimble.completion.filters.repetition import drop_degenerate, stop_at_suffix_repeat
from fimble.completion.filters.suggestion import Filter, FilterContext, Filtered, Suggestion, apply_filters, run_filters
from fimble.completion.filters.syntax import no_new_syntax_errors

DEFAULT_FILTERS: tuple[Filter, ...] = (
    normalize_newlines,
    limit_to_scope,
    stop_at_suffix_repeat,
    drop_degenerate,
    match_file_indentation,
    trim_trailing_whitespace,
    merge_with_line_suffix,
    no_new_syntax_errors,
    drop_empty,
)

# Why a suggestion was not shown, by the filter that dropped it: said in `fimble complete`, the `fimble/status`
# notification and the log, so an empty answer is never a mystery.
WHY_DROPPED: dict[str, str] = {
    "the model": "the model wrote nothing",
    "normalize_newlines": "it held nothing but line breaks",
    "limit_to_scope": "it only went on past the end of the current block",
    "stop_at_suffix_repeat": "it only repeated the code after the cursor",
    "drop_degenerate": "it repeated itself (a loop)",
    "match_file_indentation": "its indentation did not fit the file",
    "trim_trailing_whitespace": "it was only whitespace",
    "merge_with_line_suffix": "it only repeated the rest of the line",
    "no_new_syntax_errors": "it would add a syntax error",
    "drop_empty": "nothing was left once it was cleaned up",
}


def why_dropped(filtered: Filtered) -> str:
    return WHY_DROPPED.get(filtered.dropped_by, f"the {filtered.dropped_by} filter dropped it")


__all__ = [
    "DEFAULT_FILTERS",
    "WHY_DROPPED",
    "Filter",
    "FilterContext",
    "Filtered",
    "Suggestion",
    "apply_filters",
    "run_filters",
    "why_dropped",
]
