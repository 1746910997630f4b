"""Syntax trees: grammar loading and per-document incremental trees."""

from fimble.languages import grammar_name
from fimble.syntax.grammars import get_language, get_parser, supported_languages

__all__ = ["get_language", "get_parser", "grammar_name", "supported_languages"]
