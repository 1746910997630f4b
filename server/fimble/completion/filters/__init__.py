"""Post-processing filters. Each has the same shape: (suggestion, context) -> suggestion | None."""

from fimble.completion.filters.base import Filter, FilterContext, Suggestion, apply_filters
from fimble.completion.filters.basic import DEFAULT_FILTERS

__all__ = ["DEFAULT_FILTERS", "Filter", "FilterContext", "Suggestion", "apply_filters"]
