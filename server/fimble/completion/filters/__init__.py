"""Post-processing filters. Each has the same shape: (suggestion, context) -> suggestion | None, and golden tests
in tests/completion/golden/. The order matters: shape first (scope, repetition), then tidy, then verify syntax."""

from fimble.completion.filters.base import Filter, FilterContext, Suggestion, apply_filters
from fimble.completion.filters.basic import drop_empty, normalize_newlines, trim_trailing_whitespace
from fimble.completion.filters.indentation import match_file_indentation
from fimble.completion.filters.overlap import merge_with_line_suffix
from fimble.completion.filters.repetition import drop_degenerate, stop_at_suffix_repeat
from fimble.completion.filters.scope import limit_to_scope
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

__all__ = ["DEFAULT_FILTERS", "Filter", "FilterContext", "Suggestion", "apply_filters"]
