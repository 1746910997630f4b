"""FIM prompt formats: choose one from a model's GGUF header, render it into text and special-token pieces.

Special tokens are kept apart from text all the way to the tokenizer, so a user's file that happens to contain
"<|fim_prefix|>" is tokenized as plain text and can never inject control tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fimble.model.gguf_meta import GGUFHeader
from fimble.prompt.templates import load_folder

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}|\{(\w+)\}")


@dataclass(frozen=True)
class Special:
    """A special token, by the vocabulary string that names it."""

    text: str


Piece = str | Special


@dataclass(frozen=True)
class FimFormat:
    name: str
    description: str
    tokens: dict[str, str]
    fim: str
    stop: tuple[str, ...] = ()
    repo_header: str | None = None
    file: str | None = None
    current_file: str | None = None
    add_bos: bool | None = None
    source: str = ""
    _match: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def uses_suffix(self) -> bool:
        return "{suffix}" in self.fim

    @property
    def is_fim(self) -> bool:
        return bool(self.tokens)

    @property
    def multi_file(self) -> bool:
        return self.file is not None

    def render(self, template: str, **slots: str) -> list[Piece]:
        return render_template(template, self.tokens, slots)


def render_template(template: str, tokens: dict[str, str], slots: Mapping[str, str | Sequence[Piece]]) -> list[Piece]:
    """Pieces of one template: `{{role}}` as the special token `tokens[role]`, `{slot}` as its text, or its pieces when
    it was rendered already (unknown slots render empty). Slot values are never scanned for placeholders, so a file's
    text cannot add a special token."""
    pieces: list[Piece] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > pos:
            pieces.append(template[pos : m.start()])
        role, slot = m.group(1), m.group(2)
        if role is not None:
            pieces.append(Special(tokens[role]))
        else:
            value = slots.get(slot, "")
            if isinstance(value, str):
                pieces.append(value)
            else:
                pieces.extend(value)
        pos = m.end()
    if pos < len(template):
        pieces.append(template[pos:])
    return merge_text(pieces)


def merge_text(pieces: list[Piece]) -> list[Piece]:
    """Join adjacent text pieces and drop empty ones, so tokenization does not depend on how a prompt was built."""
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str):
            if not piece:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + piece
                continue
        out.append(piece)
    return out


def _from_toml(filename: str, data: dict[str, Any]) -> FimFormat:
    tpl = data.get("template", {})
    return FimFormat(
        name=data["name"],
        description=data.get("description", ""),
        tokens=dict(data.get("tokens", {})),
        fim=tpl["fim"],
        stop=tuple(tpl.get("stop", ())),
        repo_header=tpl.get("repo_header"),
        file=tpl.get("file"),
        current_file=tpl.get("current_file"),
        add_bos=tpl.get("add_bos"),
        source=filename,
        _match={"priority": data.get("priority", 0), **data.get("match", {})},
    )


def all_formats() -> list[FimFormat]:
    return [_from_toml(name, data) for name, data in load_folder("fim")]


def format_by_name(name: str) -> FimFormat:
    for fmt in all_formats():
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def _matches(fmt: FimFormat, header: GGUFHeader, vocab: set[str]) -> bool:
    match = fmt._match
    if any(tok not in vocab for tok in match.get("tokens", ())):
        return False
    archs = match.get("architectures")
    if archs and header.architecture not in archs:
        return False
    pattern = match.get("name_pattern")
    return not (pattern and not re.search(pattern, str(header.get("general.name", ""))))


def select_format(header: GGUFHeader) -> FimFormat:
    """The best format for a model: a known family, else generic FIM from metadata ids, else prefix-only."""
    vocab = set(header.tokens)
    candidates = [f for f in all_formats() if _matches(f, header, vocab)]
    candidates.sort(key=lambda f: f._match["priority"], reverse=True)
    best = candidates[0] if candidates else format_by_name("prefix-only")
    if best.is_fim:
        return best
    generic = _generic_from_metadata(header)
    return generic if generic is not None else best


def _generic_from_metadata(header: GGUFHeader) -> FimFormat | None:
    """llama.cpp converters record FIM token ids in metadata; use them for families without a template file."""
    ids = {
        role: header.get(f"tokenizer.ggml.{key}_token_id")
        for role, key in (("fim_prefix", "fim_pre"), ("fim_suffix", "fim_suf"), ("fim_middle", "fim_mid"))
    }
    if any(not isinstance(i, int) or not 0 <= i < len(header.tokens) for i in ids.values()):
        return None
    tokens = {role: header.tokens[i] for role, i in ids.items() if i is not None}
    stops = [
        header.tokens[i]
        for key in ("fim_pad", "fim_sep", "eot")
        if isinstance(i := header.get(f"tokenizer.ggml.{key}_token_id"), int) and 0 <= i < len(header.tokens)
    ]
    return FimFormat(
        name="generic-fim",
        description="FIM tokens named in the GGUF metadata (tokenizer.ggml.fim_*_token_id)",
        tokens=tokens,
        fim="{{fim_prefix}}{prefix}{{fim_suffix}}{suffix}{{fim_middle}}",
        stop=tuple(stops),
        source="metadata",
    )
