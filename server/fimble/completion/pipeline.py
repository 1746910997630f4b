"""One function from a cursor to a suggestion, shared by `fimble complete` and the LSP handlers."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from fimble.completion.filters import (
    DEFAULT_FILTERS,
    Filter,
    FilterContext,
    Suggestion,
    apply_filters,
    run_filters,
    why_dropped,
)
from fimble.completion.filters.block_end import in_comment_or_string, is_mid_line, limit_to_scope
from fimble.context.source_types import ContextProvider, ContextQuery, ContextResult
from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend, OnText, Warms
from fimble.prompt.assemble import Prompt, PromptPart, Snippet, Window, assemble, context_as_comments
from fimble.prompt.budget import (
    MIN_CONTEXT_TOKENS,
    context_budget,
    cut_prefix,
    cut_suffix,
    fits,
    prompt_budget,
    refunded_prefix_budget,
    snippet_tokens,
    suffix_budget,
    token_counter,
)
from fimble.settings import Settings

# All context sources together get this long per request (each source also has its own, shorter deadline).
CONTEXT_DEADLINE_S = 0.05


@dataclass(frozen=True)
class CompletionRequest:
    text: str
    offset: int  # string index of the cursor in `text`
    language_id: str
    path: str  # workspace-relative path (or file name) shown to multi-file models
    settings: Settings
    snippets: tuple[Snippet, ...] = ()  # given snippets bypass the context engine
    repo: str = ""
    uri: str = ""  # the document's URI, so the context engine finds its incremental syntax tree
    context: ContextProvider | None = None  # the context engine; None = cursor window only

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
    alternatives: list[Suggestion] = field(default_factory=list)  # further candidates (manual trigger)
    empty_reason: str = ""  # why nothing is shown, for the user and the log ('' when something is)
    cut_by_clock: bool = False  # the time budget stopped the generation: what is shown is its whole lines only
    layout: Layout | None = None  # how the prompt was cut (None when it was given)

    @property
    def finished(self) -> bool:
        """Whether the model got to the end of its answer: neither the clock nor a cancel stopped it."""
        return self.generation.stop_reason not in ("deadline", "cancelled")

    @property
    def suggestions(self) -> list[Suggestion]:
        first = [Suggestion(self.text, self.replace_suffix)] if self.text else []
        return first + self.alternatives

    def stats(self) -> dict[str, float | int | str]:
        g = self.generation
        return {
            "prompt_tokens": g.prompt_tokens,
            "reused_tokens": g.reused_tokens,
            "generated_tokens": g.generated_tokens,
            "stop_reason": g.stop_reason,
            "tokens_per_second": round(g.tokens_per_second, 1),
            **({"empty_reason": self.empty_reason} if self.empty_reason else {}),
            **{f"{k}_ms": round(v, 1) for k, v in self.timings_ms.items()},
        }


def whole_lines(text: str) -> str:
    """What a generation stopped by the clock may show: the lines it finished. A line cut mid-way (mid-word,
    mid-expression) is never shown, and never served later from the typed-through cache as if complete."""
    return text[: text.rfind("\n") + 1]


def empty_reason(result: GenerationResult, text: str, dropped: str) -> str:
    if result.stop_reason == "cancelled":
        return "cancelled: a newer request took its place"
    if result.stop_reason == "deadline" and result.generated_tokens == 0:
        return "the time budget ran out before the model wrote anything"
    if result.stop_reason == "deadline" and not text.strip():
        return "the time budget ran out in the middle of the first line (a cut line is never shown)"
    return dropped


@dataclass(frozen=True)
class Layout:
    """How a prompt was cut from its request: its context snippets, its cursor window and the budgets that shaped it.
    The prompt the request after an accepted suggestion will send is predicted from it (`accepted_prompt`), without
    asking the context engine again: the same snippets (they keep their place from one keystroke to the next) and
    a window cut and snapped the same way around the longer prefix."""

    snippets: tuple[Snippet, ...]
    cut: tuple[int, int]  # string offsets of the window's ends as cut to the token budgets, before snapping
    prefix_budget: int  # tokens the window's prefix could take
    suffix_budget: int
    # Moves window ends to syntactic boundaries in the request's text (from the context engine); None: no snapping
    snap: Callable[[int, int], tuple[int, int]] | None = None


def build_prompt(backend: ModelBackend, req: CompletionRequest) -> Prompt:
    return plan_prompt(backend, req)[0]


def plan_prompt(backend: ModelBackend, req: CompletionRequest) -> tuple[Prompt, Layout]:
    """The prompt for a request, and how it was cut (see Layout)."""
    fmt = backend.info.format
    budget = prompt_budget(backend.info.n_ctx, req.settings.max_tokens)
    snippets = list(req.snippets)
    path = req.path or PurePath(req.path).name
    sources = tuple(req.settings.context_sources)
    engine = req.context if req.context is not None and sources and not snippets else None
    suffix_tokens = suffix_budget(budget, fmt.uses_suffix)
    window_budget = prefix_budget = budget - suffix_tokens
    t0 = time.monotonic()
    # The window as it would be without context; context then fits around it (see prompt/budget.py).
    prefix = cut_prefix(backend, req.prefix, prefix_budget)
    suffix = cut_suffix(backend, req.suffix, suffix_tokens)
    context_tokens = free = 0
    if engine is not None:
        context_tokens, free = context_budget(budget, window_budget, len(backend.tokenize(prefix)))
        if context_tokens > free:
            prefix_budget = window_budget - context_tokens
            prefix = cut_prefix(backend, req.prefix, prefix_budget)
    window_ms = (time.monotonic() - t0) * 1000
    context = ContextResult()
    if engine is not None and context_tokens >= MIN_CONTEXT_TOKENS:
        count = token_counter(backend, req.prefix, per_line=1.0 if context_as_comments(fmt) else 0.0)
        query = ContextQuery(
            text=req.text,
            offset=req.offset,
            language_id=req.language_id,
            path=path,
            uri=req.uri,
            window=(req.offset - len(prefix), req.offset + len(suffix)),
        )
        context = engine.gather(query, sources, context_tokens, count, time.monotonic() + CONTEXT_DEADLINE_S)
        snippets = list(context.snippets)
        used = snippet_tokens(((s.path, s.text) for s in snippets), count)
        refunded = refunded_prefix_budget(window_budget, context_tokens, free, used)
        if refunded is not None:  # what the sources left goes back to the window
            t1 = time.monotonic()
            prefix_budget = refunded
            prefix = cut_prefix(backend, req.prefix, prefix_budget)
            window_ms += (time.monotonic() - t1) * 1000
    cut = (req.offset - len(prefix), req.offset + len(suffix))
    if context.snap is not None:
        start, end = context.snap(*cut)
        prefix, suffix = req.text[start : req.offset], req.text[req.offset : end]
    window = Window(prefix=prefix, suffix=suffix, path=path, language_id=req.language_id)
    prompt = _assemble_within(backend, req, window, snippets)
    label_parts(prompt, context, window_ms)
    return prompt, Layout(tuple(snippets), cut, prefix_budget, suffix_tokens, context.snap)


def _assemble_within(backend: ModelBackend, req: CompletionRequest, window: Window, snippets: list[Snippet]) -> Prompt:
    """`assemble`, dropping snippets (from `snippets`, in place) until the prompt fits the context window."""
    fmt = backend.info.format
    prompt = assemble(backend, fmt, window, snippets, repo=req.repo)
    # Snippets are budgeted on estimates; if they still overflow, drop the least relevant rather than fail.
    while not fits(len(prompt.ids), backend.info.n_ctx, req.settings.max_tokens) and snippets:
        snippets.remove(min(snippets, key=lambda s: s.score))
        prompt = assemble(backend, fmt, window, snippets, repo=req.repo)
    return prompt


def label_parts(prompt: Prompt, context: ContextResult, window_ms: float) -> None:
    """Give each prompt part the time its source took; sources that contributed nothing get an empty part saying
    why, so --show-prompt and fimble/debugPrompt account for every source."""
    seen: set[str] = set()
    for part in prompt.parts:
        if part.source == "cursor window":
            part.ms = window_ms
        elif part.source not in seen and part.source in context.timings_ms:
            part.ms = context.timings_ms[part.source]
        seen.add(part.source)
    missing = [
        PromptPart(name, 0, ms, text="(syntax tree update)" if name == "syntax" else f"({context.notes.get(name, '')})")
        for name, ms in context.timings_ms.items()
        if name not in seen
    ]
    missing += [
        PromptPart(name, 0, 0.0, text=f"({note})")
        for name, note in context.notes.items()
        if name not in seen and name not in context.timings_ms
    ]
    at = next((i for i, p in enumerate(prompt.parts) if p.source == "cursor window"), len(prompt.parts))
    prompt.parts[at:at] = missing


def accepted(req: CompletionRequest, suggestion: Suggestion) -> CompletionRequest:
    """The request the editor will send once `suggestion` is accepted: its text inserted, the cursor after it."""
    end = req.offset + suggestion.replace_suffix
    text = req.text[: req.offset] + suggestion.text + req.text[end:]
    return dataclasses.replace(req, text=text, offset=req.offset + len(suggestion.text))


def accepted_prompt(backend: ModelBackend, req: CompletionRequest, suggestion: Suggestion, layout: Layout) -> Prompt:
    """The prompt of the request after `suggestion` (made for `req`, cut as `layout` says) is accepted, as
    `plan_prompt` will build it when the context sources propose the same snippets again: the window is cut to the
    same budgets around the longer prefix and snapped with the same syntax tree (the text before the old cursor, and
    after the replaced part, is unchanged; only offsets after the cursor shift)."""
    after = accepted(req, suggestion)
    shift = len(suggestion.text) - suggestion.replace_suffix
    prefix = cut_prefix(backend, after.prefix, layout.prefix_budget)
    suffix = cut_suffix(backend, after.suffix, layout.suffix_budget)
    start, end = after.offset - len(prefix), after.offset + len(suffix)
    if layout.snap is not None and start <= req.offset:
        # The snap works in the old text: the window's start lies before the old cursor, its end after the replaced
        # characters, which moved by `shift`.
        old_start, old_end = layout.snap(start, max(req.offset + suggestion.replace_suffix, end - shift))
        start, end = old_start, max(after.offset, old_end + shift)
    path = req.path or PurePath(req.path).name
    window = Window(
        prefix=after.text[start : after.offset],
        suffix=after.text[after.offset : end],
        path=path,
        language_id=req.language_id,
    )
    return _assemble_within(backend, after, window, list(layout.snippets))


def completion_done(ctx: FilterContext) -> Callable[[str], bool]:
    """A generation stop check: True once the text holds a whole suggestion, so no token is generated only to be
    cut by the filters. Mid-line (or in a comment or string) that is the end of the line; otherwise the first
    complete line that the scope filter would cut (the block ended)."""
    single_line = is_mid_line(ctx) or in_comment_or_string(ctx)
    seen_lines = 0

    def done(text: str) -> bool:
        nonlocal seen_lines
        newlines = text.count("\n")
        if newlines == seen_lines:  # only a finished line can change the answer
            return False
        seen_lines = newlines
        if single_line:
            return True
        complete = text[: text.rfind("\n") + 1]  # the finished lines (and an empty line begun after them)
        kept = limit_to_scope(Suggestion(complete), ctx)
        return kept is not None and kept.text.count("\n") < complete.count("\n")

    return done


# Extra candidates on a manual trigger are sampled, not greedy, so they differ from the first.
_ALTERNATIVE_TEMPERATURE = 0.7


def complete(
    backend: ModelBackend,
    req: CompletionRequest,
    cancel: CancelToken,
    on_text: OnText | None = None,
    filters: Sequence[Filter] = DEFAULT_FILTERS,
    candidates: int = 1,
    planned: tuple[Prompt, Layout | None] | None = None,
) -> Completion:
    """Suggestion(s) at the cursor. With `candidates` > 1 (a manual trigger) further distinct suggestions are
    sampled; they reuse the prompt already in the KV cache, so each costs only its generation. `planned`: the
    prompt (and its layout) already built for this very request, in idle time or by an earlier request left
    unfinished at the same cursor (finishing it evaluates exactly what that one began)."""
    t0 = time.monotonic()
    prompt, layout = planned if planned is not None else plan_prompt(backend, req)
    t1 = time.monotonic()
    ctx = FilterContext(prefix=req.prefix, suffix=req.suffix, language_id=req.language_id, path=req.path)
    params = GenerationParams(
        max_tokens=req.settings.max_tokens,
        temperature=req.settings.temperature,
        stop_check=completion_done(ctx),
        boundaries=prompt.boundaries,
    )
    result = backend.generate(prompt.ids, params, cancel, on_text)
    t2 = time.monotonic()
    cut_by_clock = result.stop_reason == "deadline"
    raw = whole_lines(result.text) if cut_by_clock else result.text
    shaped: Suggestion | None = None
    why = ""
    if result.stop_reason != "cancelled":
        filtered = run_filters(Suggestion(raw), ctx, filters)
        shaped = filtered.suggestion
        why = why_dropped(filtered) if shaped is None else ""
    t3 = time.monotonic()
    alternatives: list[Suggestion] = []
    seen = {shaped.text} if shaped else set()
    for seed in range(1, candidates * 2 if candidates > 1 else 1):  # automatic triggers: one attempt, no extras
        if len(alternatives) + (1 if shaped else 0) >= candidates or cancel.cancelled or cancel.expired():
            break
        extra = backend.generate(
            prompt.ids,
            GenerationParams(
                max_tokens=params.max_tokens,
                temperature=_ALTERNATIVE_TEMPERATURE,
                seed=seed,
                stop_check=params.stop_check,
            ),
            cancel,
        )
        text = whole_lines(extra.text) if extra.stop_reason == "deadline" else extra.text
        candidate = apply_filters(Suggestion(text), ctx, filters)
        if candidate is not None and candidate.text not in seen:
            seen.add(candidate.text)
            alternatives.append(candidate)
    if shaped is None and alternatives:
        shaped = alternatives.pop(0)
    t4 = time.monotonic()
    return Completion(
        text=shaped.text if shaped else "",
        replace_suffix=shaped.replace_suffix if shaped else 0,
        prompt=prompt,
        generation=result,
        alternatives=alternatives,
        empty_reason="" if shaped else empty_reason(result, raw, why),
        cut_by_clock=cut_by_clock,
        layout=layout,
        timings_ms={
            "prompt_build": (t1 - t0) * 1000,
            "prompt_eval": result.prompt_ms,
            "generate": result.generate_ms,
            "filters": (t3 - t2) * 1000,
            "alternatives": (t4 - t3) * 1000,
            "total": (t4 - t0) * 1000,
        },
    )


def warm(backend: ModelBackend, req: CompletionRequest, cancel: CancelToken) -> int:
    """Evaluate the prompt a request at `req` would send, without generating, so the next real request finds
    most of it in the KV cache. Returns the tokens evaluated (0 for engines that cannot warm)."""
    if not can_warm(backend):
        return 0
    return evaluate(backend, build_prompt(backend, req), cancel)


def warm_accepted(
    backend: ModelBackend, req: CompletionRequest, suggestion: Suggestion, layout: Layout, cancel: CancelToken
) -> int:
    """Speculative warm-up (llama.vim's speculative FIM): evaluate the prompt the request after accepting
    `suggestion` will send, so the suggestion after an accept does not wait for it."""
    if not can_warm(backend):
        return 0
    return evaluate(backend, accepted_prompt(backend, req, suggestion, layout), cancel)


def can_warm(backend: ModelBackend) -> bool:
    return isinstance(backend, Warms)  # optional: an OpenAI-compatible server keeps its own cache


def evaluate(backend: ModelBackend, prompt: Prompt, cancel: CancelToken) -> int:
    """Evaluate `prompt` into the KV cache, stopping between two batches once `cancel` is set; the tokens evaluated."""
    if not isinstance(backend, Warms) or cancel.cancelled:
        return 0
    return int(backend.warm(prompt.ids, cancel, prompt.boundaries))
