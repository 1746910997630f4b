"""Fix and explain prompts from the templates in `prompts/fix` and `prompts/explain`.

A model with a chat template in its GGUF metadata gets its own template (rendered with Jinja2 in a sandbox, the way
llama.cpp and transformers render it); other models get a completion-style prompt. Either way the user's code is kept
apart from special tokens: only the template's own text is searched for special-token strings, so a file containing
"<start_of_turn>" can never inject a turn.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

from fimble.errors import ContextOverflowError
from fimble.model.backend import ModelBackend
from fimble.prompt.formats import Piece, Special, merge_text
from fimble.prompt.templates import load_text

Task = Literal["fix", "explain"]
Style = Literal["chat", "completion"]

_SLOT = re.compile(r"\{(\w+)\}")
# Strings in a rendered chat template that may be special tokens: <...>, <|...|>, [INST]-style.
_SPECIAL_CANDIDATE = re.compile(r"<[^<>\s]{1,48}>|\[/?[A-Z_]{2,24}\]")
_CONTENT_MARKER = "\ue000fimble-content\ue001"
# Tokens kept free besides prompt and answer (tokenizer boundary effects, template tokens counted approximately).
SLACK_TOKENS = 16

FENCES = {
    "shellscript": "bash", "sh": "bash", "typescriptreact": "tsx", "javascriptreact": "jsx", "plaintext": "",
    "csharp": "cs", "cpp": "cpp", "c": "c",
}  # fmt: skip


def fence_for(language_id: str) -> str:
    return FENCES.get(language_id, language_id)


@dataclass(frozen=True)
class PromptTemplate:
    task: Task
    style: Style
    main: str  # the completion prompt, or the chat user turn
    prefill: str
    stop: tuple[str, ...]
    sections: Mapping[str, str]


@cache
def load_template(task: Task, style: Style) -> PromptTemplate:
    data = tomllib.loads(load_text(f"{task}/{style}.toml"))
    tpl = data["template"]
    return PromptTemplate(
        task=task,
        style=style,
        main=tpl["prompt"] if style == "completion" else tpl["user"],
        prefill=tpl.get("prefill", ""),
        stop=tuple(tpl.get("stop", ())),
        sections=dict(data.get("sections", {})),
    )


def fill(template: str, slots: Mapping[str, str]) -> str:
    """Replace {name} for known slot names only, in one pass: braces in code or in filled-in values stay as they are."""
    return _SLOT.sub(lambda m: slots[m.group(1)] if m.group(1) in slots else m.group(0), template)


@dataclass
class BuiltPrompt:
    style: Style
    pieces: list[Piece]
    ids: list[int]
    stop: tuple[str, ...]
    prefill: str  # text the answer starts with (already in the prompt)
    sections: list[str] = field(default_factory=list)  # sections that made it in
    dropped: list[str] = field(default_factory=list)  # sections dropped to fit

    def text(self) -> str:
        return "".join(p.text if isinstance(p, Special) else p for p in self.pieces)


class ChatTemplateError(Exception):
    pass


@cache
def _compiled(source: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def split_specials(backend: ModelBackend, text: str) -> list[Piece]:
    """Template text into pieces, with special-token strings the vocabulary knows as Special."""
    pieces: list[Piece] = []
    pos = 0
    for m in _SPECIAL_CANDIDATE.finditer(text):
        if backend.token_id(m.group(0)) is None:
            continue
        pieces.append(text[pos : m.start()])
        pieces.append(Special(m.group(0)))
        pos = m.end()
    pieces.append(text[pos:])
    return merge_text(pieces)


def render_chat(backend: ModelBackend, template: str, user_text: str, prefill: str) -> list[Piece]:
    """One user turn rendered with the model's chat template, plus the assistant's prefill.

    The template sees a marker instead of the user's text; the text goes in afterwards as a plain piece. BOS is left
    to the tokenizer (bos_token renders empty), so it is never doubled.
    """
    try:
        rendered = _compiled(template).render(
            messages=[{"role": "user", "content": _CONTENT_MARKER}],
            add_generation_prompt=True,
            bos_token="",
            eos_token="",
            tools=None,
        )
    except Exception as exc:
        raise ChatTemplateError(f"the model's chat template failed to render: {exc}") from exc
    if rendered.count(_CONTENT_MARKER) != 1:
        raise ChatTemplateError("the model's chat template does not show the user's message exactly once")
    before, after = rendered.split(_CONTENT_MARKER)
    return merge_text([*split_specials(backend, before), user_text, *split_specials(backend, after), prefill])


def count_tokens(backend: ModelBackend, text: str) -> int:
    return len(backend.tokenize(text)) if text else 0


def build_prompt(
    backend: ModelBackend,
    task: Task,
    slots: Mapping[str, str],
    sections: Mapping[str, Mapping[str, str] | None],
    drop_order: Sequence[str],
    answer_tokens: int,
) -> BuiltPrompt:
    """Render the task's template for this model, dropping optional sections (in `drop_order`) until prompt and
    answer fit the context window. `sections` maps a section name to its slot values, or None when unavailable."""
    style: Style = "chat" if backend.info.chat_template else "completion"
    try:
        return _build(backend, load_template(task, style), slots, sections, drop_order, answer_tokens)
    except ChatTemplateError:
        # An exotic or broken template must not make the feature unusable: fall back to plain completion.
        return _build(backend, load_template(task, "completion"), slots, sections, drop_order, answer_tokens)


def _build(
    backend: ModelBackend,
    tpl: PromptTemplate,
    slots: Mapping[str, str],
    sections: Mapping[str, Mapping[str, str] | None],
    drop_order: Sequence[str],
    answer_tokens: int,
) -> BuiltPrompt:
    present = [name for name in tpl.sections if sections.get(name) is not None]
    dropped: list[str] = [name for name in tpl.sections if name not in present]
    limit = backend.info.n_ctx - answer_tokens - SLACK_TOKENS
    order = [n for n in drop_order if n in present] + [n for n in present if n not in drop_order]
    while True:
        values = dict(slots)
        for name in tpl.sections:
            section_slots = sections.get(name)
            if name in present and section_slots is not None:
                values[name] = fill(tpl.sections[name], {**slots, **section_slots})
            else:
                values[name] = ""
        prefill = fill(tpl.prefill, values)
        main = fill(tpl.main, values)
        if tpl.style == "chat":
            template = backend.info.chat_template or ""
            pieces = render_chat(backend, template, main, prefill)
        else:
            pieces = merge_text([main])
        ids = backend.encode(pieces)
        if len(ids) <= limit:
            return BuiltPrompt(tpl.style, pieces, ids, tpl.stop, prefill, present, dropped)
        if not order:
            raise ContextOverflowError(
                f"The {tpl.task} prompt needs {len(ids)} tokens plus {answer_tokens} for the answer, but the context "
                f"window holds {backend.info.n_ctx}; select less code or raise nCtx."
            )
        victim = order.pop(0)
        present.remove(victim)
        dropped.append(victim)
