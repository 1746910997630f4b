"""Errors a user can act on. Each carries a message meant to be shown as is (CLI stderr, LSP showMessage)."""

from __future__ import annotations


class FimbleError(Exception):
    """Base class: `str(error)` is a complete, readable sentence for the user."""


class ModelError(FimbleError):
    """The model is missing, unreadable, corrupt or not supported by llama.cpp."""


class ContextOverflowError(FimbleError):
    """The prompt cannot fit the model's context window even after trimming."""


class DocumentError(FimbleError):
    """A request names a document that is not open or a position outside it."""


class SettingsError(FimbleError):
    """A setting has a value of the wrong type or out of range."""
