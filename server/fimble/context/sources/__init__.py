"""Context sources, one module each; see fimble.context.base for the shape they share."""

from fimble.context.sources.definitions import DefinitionsSource
from fimble.context.sources.git import GitSource
from fimble.context.sources.ring import RingSource
from fimble.context.sources.scope import ScopeSource

__all__ = ["DefinitionsSource", "GitSource", "RingSource", "ScopeSource"]
