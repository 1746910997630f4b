"""fimble: an offline, Copilot-style coding assistant served over LSP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fimble")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
