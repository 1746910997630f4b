"""One next-edit prediction: the region around the cursor, a prompt in the model's format, one greedy rewrite of the
region, and the checked minimal edits it amounts to. Blocking: runs on the model worker thread (ModelRuntime)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import tree_sitter

from fimble.agent.edits import Replacement
from fimble.context.source_types import ContextQuery
from fimble.model.backend import BACKGROUND_BATCH, CancelToken, GenerationParams, GenerationResult, ModelBackend
from fimble.next_edit.checks import changed_names, check_rewrite, refusal
from fimble.next_edit.edit_formats import select_next_edit_format, with_newline
from fimble.next_edit.prompt import NextEditPrompt, build_prompt, original_region
from fimble.next_edit.recent_edits import Hunk
from fimble.next_edit.region import Region, editable_region
from fimble.prompt.assemble import Snippet
from fimble.settings import Settings

if TYPE_CHECKING:
    from fimble.context.engine import ContextEngine

log = logging.getLogger(__name__)

# Context sources that say what the region's names are; the recent-edit ring is the history itself here, and the
# scope is in the region and the file around it.
CONTEXT_SOURCES = ("definitions", "similar")
CONTEXT_SHARE = 8  # at most 1/8 of the context window for passages
CONTEXT_DEADLINE_S = 0.05
# Room to write: the region's own tokens, half as many again (an added line or two), and some slack.
ANSWER_SLACK_TOKENS = 24
FOLLOWED_HUNKS = 3  # the last edits a model not trained for next edits must follow


@dataclass(frozen=True)
class NextEditRequest:
    text: str
    offset: int  # the cursor
    language_id: str
    path: str  # as prompts name the file
    hunks: tuple[Hunk, ...]  # the recent edits, oldest first
    settings: Settings
    context: ContextEngine | None = None
    uri: str = ""


@dataclass
class NextEditAnswer:
    replacements: list[Replacement]  # against request.text; empty: `reason` says why
    reason: str
    region: Region
    rewritten: str | None = None  # the model's region, before the checks
    format: str = ""
    generation: GenerationResult | None = None
    model: str = ""  # the model that wrote it (nextEditModel or the completion model)
    prompt: NextEditPrompt | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


def _passages(request: NextEditRequest, region: Region, backend: ModelBackend) -> list[Snippet]:
    engine = request.context
    sources = tuple(s for s in request.settings.context_sources if s in CONTEXT_SOURCES)
    if engine is None or not sources:
        return []
    query = ContextQuery(
        request.text, request.offset, request.language_id, request.path, request.uri, (region.start, region.end)
    )
    try:
        found = engine.gather(
            query,
            sources,
            backend.info.n_ctx // CONTEXT_SHARE,
            lambda s: len(backend.tokenize(s)),
            time.monotonic() + CONTEXT_DEADLINE_S,
        )
    except Exception:  # context is a bonus; a failing source must not cost the edit
        log.exception("next edit: gathering context failed")
        return []
    return found.snippets


def followed_names(hunks: tuple[Hunk, ...]) -> frozenset[str]:
    """What the user's last edits renamed, added or removed, by name."""
    return frozenset().union(*(changed_names(h.before, h.after) for h in hunks[-FOLLOWED_HUNKS:]))


def _document_tree(request: NextEditRequest) -> tree_sitter.Tree | None:
    """The open document's own syntax tree, kept up to date by the context engine (None: the checks parse)."""
    engine = request.context
    if engine is None or not request.uri:
        return None
    try:
        return engine.trees.tree(request.uri, request.text)
    except Exception:
        log.exception("next edit: the document's syntax tree")
        return None


def predict(backend: ModelBackend, request: NextEditRequest, cancel: CancelToken) -> NextEditAnswer:
    started = time.monotonic()
    region = editable_region(request.text, request.offset, request.settings.next_edit_lines)
    timings: dict[str, float] = {}
    refused = refusal(request.text, request.language_id, request.path, region)
    if refused:
        return NextEditAnswer([], refused, region, timings_ms={"total": (time.monotonic() - started) * 1000})
    fmt = select_next_edit_format(backend)
    region_tokens = len(backend.tokenize(with_newline(region.text)))
    max_tokens = region_tokens + region_tokens // 2 + ANSWER_SLACK_TOKENS
    passages = _passages(request, region, backend)
    prompt = build_prompt(
        backend,
        fmt,
        text=request.text,
        region=region,
        cursor=request.offset,
        path=request.path,
        language_id=request.language_id,
        hunks=request.hunks,
        passages=passages,
        budget_tokens=backend.info.n_ctx - max_tokens,
    )
    timings["prompt_build"] = (time.monotonic() - started) * 1000
    if prompt is None:
        reason = "the region and its instructions do not fit the model's context window"
        return NextEditAnswer([], reason, region, format=fmt.name, timings_ms=timings)
    # Small prompt batches: a keystroke's completion cancels a next edit and waits for at most one of them.
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, stop=fmt.stops, batch=BACKGROUND_BATCH)
    generation = backend.generate(prompt.ids, params, cancel)
    after_model = time.monotonic()
    timings["model"] = generation.prompt_ms + generation.generate_ms
    rewritten = fmt.parse(generation.text, generation.stop_reason, region.text)
    original = original_region(region, request.path, request.hunks)
    tree = _document_tree(request)
    timings["document_tree"] = (time.monotonic() - after_model) * 1000
    follows = followed_names(request.hunks) if fmt.must_follow else None
    checked = check_rewrite(request.text, request.language_id, request.path, region, rewritten, original, tree, follows)
    timings["checks"] = (time.monotonic() - after_model) * 1000
    timings["total"] = (time.monotonic() - started) * 1000
    reason = "cancelled" if generation.stop_reason == "cancelled" else checked.reason
    return NextEditAnswer(
        checked.replacements, reason, region, rewritten, fmt.name, generation, backend.info.name, prompt, timings
    )
