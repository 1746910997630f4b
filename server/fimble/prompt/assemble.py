"""Assemble a prompt: stable context first, the cursor part last, so consecutive prompts share a long prefix
and the model's KV cache is reused; every part labelled with its source and token count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fimble.model.backend import ModelBackend
from fimble.prompt.formats import FimFormat, Piece, Special, merge_text


@dataclass(frozen=True)
class Snippet:
    """A piece of context for the prompt, from one source (cross-file definition, recent edit, git diff...)."""

    source: str
    path: str
    text: str
    score: float = 0.0


@dataclass(frozen=True)
class Window:
    """The text around the cursor that goes into the prompt, already cut to its token budget."""

    prefix: str
    suffix: str
    path: str
    language_id: str


@dataclass
class PromptPart:
    source: str
    tokens: int
    ms: float = 0.0
    text: str = ""


@dataclass
class Prompt:
    format: str
    ids: list[int]
    pieces: list[Piece]
    parts: list[PromptPart] = field(default_factory=list)

    def text(self) -> str:
        """The prompt as a person reads it: special tokens shown by name."""
        return "".join(p.text if isinstance(p, Special) else p for p in self.pieces)

    def labelled(self) -> str:
        lines = [f"format: {self.format}; {len(self.ids)} tokens"]
        for part in self.parts:
            lines.append(f"--- {part.source}: {part.tokens} tokens, {part.ms:.1f} ms")
            lines.append(part.text)
        return "\n".join(lines)


# Line-comment syntax for rendering context into languages whose model has no file-separator tokens.
COMMENT_PREFIX: dict[str, str] = {
    "python": "#", "shellscript": "#", "bash": "#", "sh": "#", "ruby": "#", "perl": "#", "r": "#", "yaml": "#",
    "toml": "#", "dockerfile": "#", "makefile": "#", "elixir": "#", "julia": "#", "nim": "#",
    "lua": "--", "sql": "--", "haskell": "--", "ada": "--",
    "lisp": ";", "clojure": ";", "scheme": ";",
}  # fmt: skip


def comment_prefix(language_id: str) -> str:
    return COMMENT_PREFIX.get(language_id, "//")


def as_comment(text: str, language_id: str) -> str:
    mark = comment_prefix(language_id)
    return "".join(f"{mark} {line}".rstrip() + "\n" for line in text.splitlines())


def context_as_comments(fmt: FimFormat) -> bool:
    """Whether context snippets go into the prompt as comments (a FIM format without file separators); with file
    separators, or for a prefix-only model, they go in as code."""
    return not fmt.multi_file and fmt.uses_suffix


def assemble(
    backend: ModelBackend,
    fmt: FimFormat,
    window: Window,
    snippets: Sequence[Snippet] = (),
    repo: str = "",
) -> Prompt:
    """Build the prompt pieces and ids. Snippets must arrive already ranked and budgeted (most stable first)."""
    pieces: list[Piece] = []
    parts: list[PromptPart] = []
    prefix = window.prefix

    if fmt.multi_file and fmt.file is not None:
        if fmt.repo_header and repo:
            header = fmt.render(fmt.repo_header, repo=repo)
            pieces += header
            parts.append(PromptPart("repo", len(backend.encode(header, add_bos=False)), text=repo))
        for snip in snippets:
            rendered = fmt.render(fmt.file, path=snip.path, content=snip.text.rstrip("\n"))
            pieces += rendered
            parts.append(_part(backend, snip.source, rendered, f"{snip.path}\n{snip.text}"))
        if fmt.current_file:
            pieces += fmt.render(fmt.current_file, path=window.path)
    elif snippets and context_as_comments(fmt):
        # A FIM format without file separators: context becomes comments at the top of the prefix, so the prefix
        # still reads as the one file the suffix continues.
        comment = "".join(as_comment(f"{snip.path}:\n{snip.text.rstrip()}", window.language_id) for snip in snippets)
        pieces.append(comment)
        for snip in snippets:
            parts.append(_part(backend, snip.source, [as_comment(snip.text, window.language_id)], snip.text))
    elif snippets:
        # A prefix-only model reads the prompt as one file, and copies names and call shapes from code far more
        # readily than from comments (shown as comments, it went on writing comments); each piece of context is
        # code under a comment naming its file, and a comment names the current file before the window.
        mark = comment_prefix(window.language_id)
        for snip in snippets:
            block = f"{mark} {snip.path}\n{snip.text.rstrip()}\n\n"
            pieces.append(block)
            parts.append(_part(backend, snip.source, [block], snip.text))
        pieces.append(f"{mark} {window.path}\n")

    cursor = fmt.render(fmt.fim, prefix=prefix, suffix=window.suffix, path=window.path)
    pieces += cursor
    pieces = merge_text(pieces)
    ids = backend.encode(pieces)
    parts.append(PromptPart("cursor window", max(0, len(ids) - sum(p.tokens for p in parts)), text=_show(cursor)))
    return Prompt(format=fmt.name, ids=ids, pieces=pieces, parts=parts)


def _part(backend: ModelBackend, source: str, pieces: list[Piece], text: str) -> PromptPart:
    return PromptPart(source, len(backend.encode(pieces, add_bos=False)), text=text)


def _show(pieces: Sequence[Piece]) -> str:
    return "".join(p.text if isinstance(p, Special) else p for p in pieces)
