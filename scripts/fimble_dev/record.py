"""What a latency replay records: one request per keystroke, read from the answer and from the structured
`fimble/status` notification the server sends with it (never from its log)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One keystroke and the suggestion it led to."""

    index: int
    action: str  # the keystroke that preceded the request
    offset: int
    latency_ms: float | None = None  # request sent -> answer received
    key_to_suggestion_ms: float | None = None  # keystroke -> answer (includes the debounce)
    suggestion: str = ""
    error: str = ""
    cached: bool | None = None  # from fimble/status; None when the server does not say
    prompt_tokens: int | None = None
    reused_tokens: int | None = None
    generated_tokens: int | None = None
    model_ms: float | None = None  # prompt evaluation + generation (+ extra candidates)
    server_ms: float | None = None  # the pipeline's own time besides the model
    overhead_ms: float | None = None  # latency minus model time: everything but the model, transport included
    prompt: str = ""
    prompt_format: str = ""
    prompt_tokens_debug: int | None = None
    prefix: str = ""  # text before and after the cursor, for a peer's /infill
    suffix: str = ""
    # What bare llama.cpp and the peer generate: as many tokens as fimble did or, for an answer from fimble's cache,
    # as many as that suggestion takes (they have no such cache and must generate it).
    tokens_to_generate: int | None = None
    bare_ms: float | None = None
    bare_tokens: int | None = None
    peer_ms: float | None = None
    peer_cached_tokens: int | None = None
    phases_ms: dict[str, float] = field(default_factory=dict)  # the pipeline's timings by phase (timingsMs)
    queue_ms: float | None = None  # the wait behind earlier model work
    stop_reason: str = ""  # why generation stopped ("eos", "stop", "length", "deadline", ...); "" for a cache hit
    empty_reason: str = ""  # why nothing was shown, in words


@dataclass
class NextEditAsk:
    """A `fimble/nextEdit` the replay sent when typing paused without ghost text, as the clients do."""

    outcome: str = ""  # "edits", "empty", "cancelled" (a keystroke's completion came first), "error"
    latency_ms: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Session:
    requests: list[Request] = field(default_factory=list)
    keystrokes: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    next_edits: list[NextEditAsk] = field(default_factory=list)
    model: str = ""
    model_path: str = ""
    load_ms: float | None = None
    status_fields: set[str] = field(default_factory=set)


def take_status(req: Request, statuses: list[dict[str, Any]], session: Session | None = None) -> None:
    """Fill `req` from the `fimble/status` notifications that came with its answer: the last `ready` one is the
    answer's (one request at a time). Its fields are the protocol's (editor-clients/PROTOCOL.md)."""
    ready = [s for s in statuses if s.get("state") == "ready"]
    if not ready:
        return
    status = ready[-1]
    if session is not None:
        session.status_fields.update(status)
    if isinstance(status.get("cached"), bool):
        req.cached = status["cached"]
    for key, attr in (("promptTokens", "prompt_tokens"), ("reusedTokens", "reused_tokens"),
                      ("generatedTokens", "generated_tokens")):  # fmt: skip
        if isinstance(status.get(key), int):
            setattr(req, attr, status[key])
    for key, attr in (("serverMs", "server_ms"), ("queueMs", "queue_ms")):
        if isinstance(status.get(key), int | float):
            setattr(req, attr, float(status[key]))
    req.stop_reason = str(status.get("stopReason", ""))
    req.empty_reason = str(status.get("emptyReason", ""))
    timings = status.get("timingsMs")
    if isinstance(timings, dict):
        req.phases_ms = {k: float(v) for k, v in timings.items() if isinstance(v, int | float)}
    if req.cached:
        req.model_ms = 0.0
    elif req.phases_ms:
        # Model time: the prompt, the suggestion, and any further candidates the pipeline sampled.
        req.model_ms = sum(req.phases_ms.get(k, 0.0) for k in ("prompt_eval", "generate", "alternatives"))
    if req.model_ms is not None and req.latency_ms is not None:
        req.overhead_ms = max(0.0, req.latency_ms - req.model_ms)
