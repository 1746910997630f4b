"""Next-edit prompt formats (prompts/next_edit/*.toml): chosen from the model's vocabulary and name as FIM formats
are, rendered into text and special-token pieces, and the model's answer read back into the rewritten region."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fimble.model.backend import ModelBackend, StopReason
from fimble.prompt.formats import Piece, render_template
from fimble.prompt.templates import load_folder

# An answer ended by one of these holds the whole region; any other stop (length, deadline) cut it.
_COMPLETE: tuple[StopReason, ...] = ("stop", "eos")


@dataclass(frozen=True)
class NextEditFormat:
    name: str
    description: str
    source: str
    tokens: dict[str, str]
    prompt: str
    hunk: str
    passage: str
    end: str
    stop: tuple[str, ...] = ()
    strip: tuple[str, ...] = ()
    start_of_file: str = ""
    add_bos: bool | None = None
    # A model not trained for next edits (the generic format) guesses; its edit is shown only when it follows the
    # user's: it takes away or brings in a name one of the last edits took away or brought in.
    must_follow: bool = False
    _match: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.end, *self.stop)

    def render(self, template: str, **slots: str | Sequence[Piece]) -> list[Piece]:
        return render_template(template, self.tokens, slots)

    def answer_for(self, region: str) -> str:
        """What a perfect model writes for a region that should read `region` (a scripted oracle's answer)."""
        return with_newline(region) + self.end

    def parse(self, answer: str, stop_reason: StopReason, region: str) -> str | None:
        """The rewritten region in a model's answer (the engine has cut it at the end marker); None when the answer
        was cut off before the region ended."""
        if stop_reason not in _COMPLETE:
            return None
        cut = answer.find(self.end)
        if cut != -1:
            answer = answer[:cut]
        for marker in self.strip:
            answer = answer.replace(marker, "")
        if not region.endswith("\n") and answer.endswith("\n"):
            answer = answer[:-1]  # the prompt gave the file's last line a newline it does not have
        return answer


def with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _from_toml(filename: str, data: dict[str, Any]) -> NextEditFormat:
    tpl = data["template"]
    return NextEditFormat(
        name=data["name"],
        description=data.get("description", ""),
        source=data.get("source", filename),
        tokens=dict(data.get("tokens", {})),
        prompt=tpl["prompt"],
        hunk=tpl["hunk"],
        passage=tpl.get("passage", ""),
        end=tpl["end"],
        stop=tuple(tpl.get("stop", ())),
        strip=tuple(tpl.get("strip", ())),
        start_of_file=tpl.get("start_of_file", ""),
        add_bos=tpl.get("add_bos"),
        must_follow=bool(tpl.get("must_follow", False)),
        _match={"priority": data.get("priority", 0), **data.get("match", {})},
    )


def all_next_edit_formats() -> list[NextEditFormat]:
    return [_from_toml(name, data) for name, data in load_folder("next_edit")]


def next_edit_format_by_name(name: str) -> NextEditFormat:
    for fmt in all_next_edit_formats():
        if fmt.name == name:
            return fmt
    raise KeyError(name)


def _matches(fmt: NextEditFormat, backend: ModelBackend) -> bool:
    match = fmt._match
    if any(backend.token_id(tok) is None for tok in match.get("tokens", ())):
        return False
    pattern = match.get("name_pattern")
    names = f"{backend.info.name}\n{backend.info.path}"
    return not (pattern and not re.search(pattern, names))


def select_next_edit_format(backend: ModelBackend) -> NextEditFormat:
    """The format a model was trained with (by its special tokens and its name), else the generic one."""
    candidates = [f for f in all_next_edit_formats() if _matches(f, backend)]
    candidates.sort(key=lambda f: f._match["priority"], reverse=True)
    return candidates[0] if candidates else next_edit_format_by_name("generic")
