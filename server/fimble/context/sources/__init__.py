"""Context sources, one module each; see fimble.context.source_types for the shape they share."""

from fimble.context.sources.definitions import DefinitionsSource
from fimble.context.sources.git import GitSource
from fimble.context.sources.ring import RingSource
from fimble.context.sources.scope import ScopeSource
from fimble.context.sources.similar import SimilarSource

__all__ = ["DefinitionsSource", "GitSource", "RingSource", "ScopeSource", "SimilarSource"]
