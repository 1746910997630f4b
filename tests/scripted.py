"""The test suite's scripted model: a real `ModelBackend` whose answers are given in advance (the fix loop's tests, a
scripted `fimble serve`), and the evaluation harness's completer answering through it (the harness's tests).

It implements the same protocol as the llama.cpp engine (tokenize, encode with special tokens, streaming generate
that honours stop strings, max_tokens, cancel and deadlines), so the code under test cannot tell the difference,
and it records every prompt it was sent. One character is one token, which keeps budgets easy to reason about.
Tests that need real model behaviour use the tiny GGUF or the embedded model instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fimble.completion.pipeline import Completion
from fimble.errors import ModelError
from fimble.model.backend import (
    CancelToken,
    GenerationParams,
    GenerationResult,
    ModelInfo,
    OnText,
    StopReason,
    encode_pieces,
    find_stop,
)
from fimble.prompt.assemble import Prompt
from fimble.prompt.formats import Piece, format_by_name
from fimble.settings import Settings

# Special tokens live above the Unicode range so they can never collide with a character's code point.
_SPECIAL_BASE = 0x110000
BOS = "<bos>"

Answer = str | Callable[[str], str]  # fixed text, or computed from the prompt (special tokens shown by name)


@dataclass
class Call:
    prompt: str
    params: GenerationParams
    result: GenerationResult | None = None


@dataclass
class ScriptedBackend:
    answers: list[Answer] = field(default_factory=list)
    chat_template: str | None = None
    specials: tuple[str, ...] = ("<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<|im_end|>")
    n_ctx: int = 8192
    add_bos: bool = False
    delay_s: float = 0.0  # per streamed chunk, to make time budgets and cancellation observable
    repeat_last: bool = True  # keep giving the last answer once the script runs out
    name: str = "scripted"  # general.name, which some prompt formats are chosen by (Sweep's, Zeta's)
    calls: list[Call] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self._vocab = {text: _SPECIAL_BASE + i for i, text in enumerate((BOS, *self.specials))}
        self._names = {i: text for text, i in self._vocab.items()}
        self.info = ModelInfo(
            path="scripted",
            name=self.name,
            architecture="scripted",
            format=format_by_name("prefix-only"),
            n_ctx=self.n_ctx,
            n_ctx_train=self.n_ctx,
            chat_template=self.chat_template,
            file_size=0,
        )

    @property
    def prompts(self) -> list[str]:
        return [c.prompt for c in self.calls]

    # -- tokens ------------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        return [ord(ch) for ch in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(self._names.get(t, "") if t >= _SPECIAL_BASE else chr(t) for t in tokens)

    def token_id(self, piece: str) -> int | None:
        return self._vocab.get(piece)

    def encode(self, pieces: Sequence[Piece], add_bos: bool | None = None) -> list[int]:
        use_bos = self.add_bos if add_bos is None else add_bos
        return encode_pieces(self, pieces, self._vocab[BOS] if use_bos else None)

    # -- generation --------------------------------------------------------------------------------------
    def _next_answer(self, prompt: str) -> str:
        index = len(self.calls) - 1
        if index < len(self.answers):
            answer = self.answers[index]
        elif self.answers and self.repeat_last:
            answer = self.answers[-1]
        else:
            answer = ""
        return answer(prompt) if callable(answer) else answer

    def generate(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        cancel: CancelToken,
        on_text: OnText | None = None,
    ) -> GenerationResult:
        if self.closed:
            raise ModelError("The scripted backend was closed.")
        started = time.monotonic()
        call = Call(self.detokenize(prompt), params)
        self.calls.append(call)
        answer = self._next_answer(call.prompt)
        text = ""
        reason: StopReason = "eos"
        generated = 0
        chunk = 4
        for i in range(0, len(answer), chunk):
            if cancel.cancelled:
                reason = "cancelled"
                break
            if cancel.expired():
                reason = "deadline"
                break
            if generated >= params.max_tokens:
                reason = "length"
                break
            piece = answer[i : i + min(chunk, params.max_tokens - generated)]
            generated += len(piece)
            text += piece
            cut = find_stop(text, params.stop)
            if cut != -1:
                text = text[:cut]
                reason = "stop"
                break
            if on_text is not None:
                on_text(piece)
            if self.delay_s:
                time.sleep(self.delay_s)
        else:
            if generated >= params.max_tokens and len(answer) > params.max_tokens:
                reason = "length"
        elapsed = (time.monotonic() - started) * 1000
        result = GenerationResult(text, reason, len(prompt), 0, generated, 0.0, elapsed)
        call.result = result
        return result

    def close(self) -> None:
        self.closed = True


def scripted_factory(backend: ScriptedBackend) -> Callable[..., ScriptedBackend]:
    """A `ModelRuntime` backend factory that always yields `backend` (the runtime then drives it like any model)."""

    def factory(*_: object) -> ScriptedBackend:
        backend.closed = False
        return backend

    return factory


class ScriptedCompleter:
    """The evaluation harness's completer (the interface of `fimble.evaluation.pipeline_runner.Engine`) with a scripted
    model behind it: the prompt is the text before the cursor, the answer is the one `answers` gives for that text
    (none: empty), unfiltered, so scoring can be checked without a model. Records what the harness asked, and checks
    that the file on disk is the exact document at each call (the context engine reads it there)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.backend = ScriptedBackend(answers=[lambda prefix: answers.get(prefix, "")])
        self.calls: list[tuple[Path, str, int]] = []
        self.changed: list[str] = []
        self.prompts: list[tuple[Path, str, int]] = []

    def complete(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Completion:
        self.calls.append((root, rel_path, offset))
        assert (root / rel_path).read_text(encoding="utf-8") == text, "the harness must put the exact document on disk"
        prompt = self._prompt(text, offset)
        # No token limit: the answer is given whole, the harness scores what it is given.
        result = self.backend.generate(prompt.ids, GenerationParams(max_tokens=1 << 20), CancelToken())
        return Completion(
            text=result.text,
            replace_suffix=0,
            prompt=prompt,
            generation=result,
            timings_ms={"total": result.generate_ms},
        )

    def prompt(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Prompt:
        self.prompts.append((root, rel_path, offset))
        assert (root / rel_path).read_text(encoding="utf-8") == text
        return self._prompt(text, offset)

    def _prompt(self, text: str, offset: int) -> Prompt:
        prefix = text[:offset]
        return Prompt(format="scripted", ids=self.backend.tokenize(prefix), pieces=[prefix])

    def file_changed(self, root: Path, rel_path: str) -> None:
        self.changed.append(rel_path)

    def drop_context(self, root: Path) -> None:
        pass
