"""One function from a cursor to a suggestion, shared by `fimble complete` and the LSP handlers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from fimble.completion.filters import DEFAULT_FILTERS, Filter, FilterContext, Suggestion, apply_filters
from fimble.context.window import cut_prefix, cut_suffix
from fimble.errors import ContextOverflowError
from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend, OnText
from fimble.prompt.assemble import Prompt, Snippet, Window, assemble
from fimble.settings import Settings

# Room kept free in the context window besides the answer, for special tokens and tokenizer boundary effects.
_SLACK_TOKENS = 16


@dataclass(frozen=True)
class CompletionRequest:
    text: str
    offset: int  # string index of the cursor in `text`
    language_id: str
    path: str  # workspace-relative path (or file name) shown to multi-file models
    settings: Settings
    snippets: tuple[Snippet, ...] = ()
    repo: str = ""

    @property
    def prefix(self) -> str:
        return self.text[: self.offset]

    @property
    def suffix(self) -> str:
        return self.text[self.offset :]


@dataclass
class Completion:
    text: str  # empty when nothing worth showing was generated
    replace_suffix: int  # characters right of the cursor the suggestion replaces
    prompt: Prompt
    generation: GenerationResult
    timings_ms: dict[str, float] = field(default_factory=dict)

    def stats(self) -> dict[str, float | int | str]:
        g = self.generation
        return {
            "prompt_tokens": g.prompt_tokens,
            "reused_tokens": g.reused_tokens,
            "generated_tokens": g.generated_tokens,
            "stop_reason": g.stop_reason,
            "tokens_per_second": round(g.tokens_per_second, 1),
            **{f"{k}_ms": round(v, 1) for k, v in self.timings_ms.items()},
        }


def build_prompt(backend: ModelBackend, req: CompletionRequest) -> Prompt:
    fmt = backend.info.format
    budget = backend.info.n_ctx - req.settings.max_tokens - _SLACK_TOKENS
    if budget <= 32:
        raise ContextOverflowError(
            f"maxTokens ({req.settings.max_tokens}) leaves no room for a prompt in a {backend.info.n_ctx}-token "
            "context; lower maxTokens or raise nCtx."
        )
    context_tokens = 0
    snippets = list(req.snippets)
    suffix_budget = min(budget // 4, 512) if fmt.uses_suffix else 0
    window = Window(
        prefix=cut_prefix(backend, req.prefix, budget - suffix_budget - context_tokens),
        suffix=cut_suffix(backend, req.suffix, suffix_budget),
        path=req.path or PurePath(req.path).name,
        language_id=req.language_id,
    )
    prompt = assemble(backend, fmt, window, snippets, repo=req.repo)
    # Snippets are budgeted by the context engine; if they still overflow, drop them rather than fail.
    while len(prompt.ids) > backend.info.n_ctx - req.settings.max_tokens and snippets:
        snippets.pop()
        prompt = assemble(backend, fmt, window, snippets, repo=req.repo)
    return prompt


def complete(
    backend: ModelBackend,
    req: CompletionRequest,
    cancel: CancelToken,
    on_text: OnText | None = None,
    filters: Sequence[Filter] = DEFAULT_FILTERS,
) -> Completion:
    t0 = time.monotonic()
    prompt = build_prompt(backend, req)
    t1 = time.monotonic()
    params = GenerationParams(max_tokens=req.settings.max_tokens, temperature=req.settings.temperature)
    result = backend.generate(prompt.ids, params, cancel, on_text)
    t2 = time.monotonic()
    ctx = FilterContext(prefix=req.prefix, suffix=req.suffix, language_id=req.language_id)
    shaped = apply_filters(Suggestion(result.text), ctx, filters) if result.stop_reason != "cancelled" else None
    t3 = time.monotonic()
    return Completion(
        text=shaped.text if shaped else "",
        replace_suffix=shaped.replace_suffix if shaped else 0,
        prompt=prompt,
        generation=result,
        timings_ms={
            "prompt_build": (t1 - t0) * 1000,
            "prompt_eval": result.prompt_ms,
            "generate": result.generate_ms,
            "filters": (t3 - t2) * 1000,
            "total": (t3 - t0) * 1000,
        },
    )
