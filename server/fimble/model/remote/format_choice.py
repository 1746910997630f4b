"""Which FIM template a remote model gets. fimble builds FIM prompts itself (from `prompts/fim`), so a server's chat
template never touches a completion prompt; it only needs to know the model's family.

In order: the 'promptFormat' setting (a template name from prompts/fim, for servers that reveal nothing); the
model's vocabulary where the server exposes it (Ollama's /api/show lists the GGUF metadata, and any server with a
tokenize endpoint lets fimble probe which special tokens exist); the model's name ("qwen2.5-coder-7b" ...);
prefix-only otherwise, which works with any model but ignores the text after the cursor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fimble.errors import SettingsError
from fimble.model.gguf_meta import GGUFHeader
from fimble.prompt.formats import FimFormat, all_formats, format_by_name, select_format

# Model-name patterns for servers without a vocabulary to probe (vLLM without /tokenize, LM Studio): first match.
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"qwen[\W_]*\d*(\.\d+)?[\W_]*coder", "qwen2.5-coder"),
    (r"starcoder[\W_]*2", "starcoder2"),
    (r"starcoder|santacoder", "starcoder"),
    (r"deepseek[\W_]*coder", "deepseek-coder"),
    (r"code[\W_]*llama", "codellama"),
    (r"codestral", "codestral"),
    (r"code[\W_]*gemma", "codegemma"),
    (r"granite.*code", "granite"),
)


def configured_format(settings: Any) -> FimFormat | None:
    """The 'promptFormat' setting (read defensively: it may not exist in every Settings version)."""
    name = settings.prompt_format
    if not name or str(name).lower() == "auto":
        return None
    try:
        return format_by_name(str(name))
    except KeyError:
        names = ", ".join(sorted({f.name for f in all_formats()}))
        raise SettingsError(f"Unknown 'promptFormat' {name!r}; use 'auto' or one of: {names}.") from None


def candidate_specials() -> list[str]:
    """Every special-token spelling some template uses (to match or to stop on), for probing a vocabulary."""
    seen: dict[str, None] = {}
    for fmt in all_formats():
        for tok in (*fmt.tokens.values(), *fmt._match.get("tokens", ()), *fmt.stop):
            seen.setdefault(tok, None)
    return list(seen)


def synthetic_header(
    name: str, architecture: str, tokens: Iterable[str], metadata: Mapping[str, Any] | None = None
) -> GGUFHeader:
    """A GGUFHeader holding what a server told us, so the local format selection logic applies unchanged."""
    meta: dict[str, Any] = dict(metadata or {})
    meta.setdefault("general.name", name)
    meta.setdefault("general.architecture", architecture)
    return GGUFHeader(
        path=Path(name), version=3, metadata=meta, tensor_count=0, file_size=0, required_size=None, tokens=list(tokens)
    )


def format_from_name(model_id: str) -> FimFormat | None:
    lowered = model_id.lower()
    for pattern, name in _NAME_PATTERNS:
        if re.search(pattern, lowered):
            return format_by_name(name)
    return None


def probe_vocabulary(is_special: Callable[[str], int | None]) -> dict[str, int]:
    """{spelling: id} of the candidate specials the server's vocabulary has."""
    found: dict[str, int] = {}
    for tok in candidate_specials():
        tid = is_special(tok)
        if tid is not None:
            found[tok] = tid
    return found


def choose(
    settings: Any,
    *,
    model_id: str,
    header: GGUFHeader | None,
) -> tuple[FimFormat, str]:
    """(format, how it was chosen) for the status line and `fimble doctor`."""
    fmt = configured_format(settings)
    if fmt is not None:
        return fmt, "promptFormat setting"
    if header is not None:
        # A vocabulary we could read beats a name: it says what the model really has.
        return select_format(header), "model vocabulary"
    by_name = format_from_name(model_id)
    if by_name is not None:
        return by_name, "model name"
    return format_by_name("prefix-only"), "nothing known about the model; set 'promptFormat' if it has FIM tokens"
