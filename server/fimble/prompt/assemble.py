"""Assemble a prompt: stable context first, the cursor part last, so consecutive prompts share a long prefix
and the model's KV cache is reused; every part labelled with its source and token count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fimble.languages import comment_prefix
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
    # Token offsets in `ids` where a part begins: each context snippet, the current file's header, the text before
    # (and, suffix first, after) the cursor. The next prompts part from this one there when a passage changes, so
    # the model keeps a state of its cache at each (GenerationParams.boundaries).
    boundaries: tuple[int, ...] = ()

    def text(self) -> str:
        """The prompt as a person reads it: special tokens shown by name."""
        return "".join(p.text if isinstance(p, Special) else p for p in self.pieces)

    def labelled(self) -> str:
        lines = [f"format: {self.format}; {len(self.ids)} tokens"]
        for part in self.parts:
            lines.append(f"--- {part.source}: {part.tokens} tokens, {part.ms:.1f} ms")
            lines.append(part.text)
        return "\n".join(lines)


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
    parts: list[PromptPart] = []
    # The context in the order it is read, one entry per place the next prompt may part from this one: its pieces
    # and their tokens on their own.
    segments: list[tuple[list[Piece], list[int]]] = []

    def add(rendered: list[Piece], part: PromptPart | None = None) -> None:
        ids = backend.encode(rendered, add_bos=False)
        segments.append((rendered, ids))
        if part is not None:
            part.tokens = len(ids)
            parts.append(part)

    if fmt.multi_file and fmt.file is not None:
        if fmt.repo_header and repo:
            add(fmt.render(fmt.repo_header, repo=repo), PromptPart("repo", 0, text=repo))
        for snip in snippets:
            rendered = fmt.render(fmt.file, path=snip.path, content=snip.text.rstrip("\n"))
            add(rendered, PromptPart(snip.source, 0, text=f"{snip.path}\n{snip.text}"))
        if fmt.current_file:
            add(fmt.render(fmt.current_file, path=window.path))
    elif snippets and context_as_comments(fmt):
        # A FIM format without file separators: context becomes comments at the top of the prefix, so the prefix
        # still reads as the one file the suffix continues.
        for snip in snippets:
            comment = as_comment(f"{snip.path}:\n{snip.text.rstrip()}", window.language_id)
            add([comment], PromptPart(snip.source, 0, text=snip.text))
    elif snippets:
        # A prefix-only model reads the prompt as one file, and copies names and call shapes from code far more
        # readily than from comments (shown as comments, it went on writing comments); each piece of context is
        # code under a comment naming its file, and a comment names the current file before the window.
        mark = comment_prefix(window.language_id)
        for snip in snippets:
            add([f"{mark} {snip.path}\n{snip.text.rstrip()}\n\n"], PromptPart(snip.source, 0, text=snip.text))
        add([f"{mark} {window.path}\n"])

    cursor = fmt.render(fmt.fim, prefix=window.prefix, suffix=window.suffix, path=window.path)
    pieces = merge_text([piece for rendered, _ in segments for piece in rendered] + cursor)
    ids = backend.encode(pieces)
    bos = len(backend.encode([]))
    starts: list[tuple[int, Sequence[int]]] = []
    offset = bos
    for _, segment_ids in segments:
        starts.append((offset, segment_ids[:_ALIGN_TOKENS]))
        offset += len(segment_ids)
    starts += _cursor_starts(backend, fmt, window, offset)
    parts.append(PromptPart("cursor window", max(0, len(ids) - sum(p.tokens for p in parts)), text=_show(cursor)))
    return Prompt(format=fmt.name, ids=ids, pieces=pieces, parts=parts, boundaries=_aligned(ids, starts))


# How many of a part's first tokens must be found at its computed offset for the offset to count as a boundary.
_ALIGN_TOKENS = 4
# How far from its computed offset a part's first tokens are looked for (joining texts can merge a token or two).
_ALIGN_SLACK = 3
# Characters of the text before or after the cursor tokenized to find where it begins.
_HEAD_CHARS = 80


def _cursor_starts(backend: ModelBackend, fmt: FimFormat, window: Window, offset: int) -> list[tuple[int, list[int]]]:
    """(offset, first tokens) of the text before the cursor and, suffix first, of the text after it, within the
    cursor part at `offset`: the window's start moves on its grid, the suffix when the cursor changes lines, and
    the next prompt parts from this one there."""
    starts = []
    for slot, text in (("prefix", window.prefix), ("suffix", window.suffix)):
        at = fmt.fim.find("{" + slot + "}")
        if at < 0 or not text:
            continue
        before = fmt.render(fmt.fim[:at], prefix=window.prefix, suffix=window.suffix, path=window.path)
        head = backend.tokenize(text[:_HEAD_CHARS])
        if len(text) > _HEAD_CHARS:
            head = head[:-1]  # the last token of a cut text may differ from the whole text's
        starts.append((offset + len(backend.encode(before, add_bos=False)), head[:_ALIGN_TOKENS]))
    return starts


def _aligned(ids: Sequence[int], starts: Sequence[tuple[int, Sequence[int]]]) -> tuple[int, ...]:
    """The offsets (inside the prompt, not at its ends) where each part's first tokens really are: tokenizing the
    joined text may merge a token across a join, which moves what follows by one or two."""
    found: set[int] = set()
    for offset, head in starts:
        if not head:
            continue
        for delta in sorted(range(-_ALIGN_SLACK, _ALIGN_SLACK + 1), key=abs):
            at = offset + delta
            if 0 < at < len(ids) and list(ids[at : at + len(head)]) == list(head):
                found.add(at)
                break
    return tuple(sorted(found))


def _show(pieces: Sequence[Piece]) -> str:
    return "".join(p.text if isinstance(p, Special) else p for p in pieces)
