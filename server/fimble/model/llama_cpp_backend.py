"""The in-process llama.cpp engine (llama-cpp-python), with KV-cache reuse across requests.

Consecutive prompts share a long prefix (stable context first, the cursor part last), so only the tokens after the
longest common prefix with the previous prompt are evaluated. The loop checks the cancel token between prompt batches
and between generated tokens, so a cancelled request stops within one token.
"""

from __future__ import annotations

import codecs
import ctypes
import itertools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fimble.errors import ContextOverflowError, ModelError
from fimble.model.backend import (
    BACKGROUND_BATCH,
    CancelToken,
    GenerationParams,
    GenerationResult,
    ModelInfo,
    OnText,
    StopReason,
    encode_pieces,
    special_ids,
    take_piece,
)
from fimble.model.gguf_meta import GGUFHeader, check_complete, read_header
from fimble.model.line_tokens import LineTokenMemo
from fimble.model.prompt_states import (
    MIN_SAVED_TOKENS,
    Checkpoint,
    PromptStates,
    Snapshot,
    common_prefix,
    reach,
    thin,
)
from fimble.prompt.formats import Piece, select_format
from fimble.settings import Settings

MAX_AUTO_CTX = 32768
# With sliding-window layers, a long feed leaves a checkpoint this many tokens before its end: the next prompts
# part from it there (the word being typed is tokenized anew), and going back to it re-evaluates only these.
CHECKPOINT_BEFORE_END = 16
# At most this many checkpoints at a time (one is the sliding-window layers' last window: 7.9 MB for Gemma 3 270M);
# past it, those worth least go (`thin`). A snapshot keeps fewer: it comes back mostly whole (an undo, a file
# switch), and a 1,500-token prompt's own state is only 12.5 MB.
MAX_CHECKPOINTS = 8
SNAPSHOT_CHECKPOINTS = 4
# A checkpoint this close after another is not taken: going back to the earlier one costs only these tokens.
MIN_CHECKPOINT_GAP = 32


def default_threads() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        count = os.cpu_count() or 1
    return max(1, min(count, 8))


def gpu_offload_supported() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return False


class LlamaCppBackend:
    """Owns one llama.cpp model and context. Not thread-safe: the runtime calls it from one worker thread."""

    def __init__(self, path: str | Path, settings: Settings, header: GGUFHeader | None = None) -> None:
        started = time.monotonic()
        header = header or read_header(path)
        check_complete(header)
        try:
            import llama_cpp
        except ImportError as exc:  # pragma: no cover - llama-cpp-python is a hard dependency
            raise ModelError(f"llama-cpp-python is not importable: {exc}") from exc
        self._llama_cpp = llama_cpp
        n_ctx_train = int(header.get(f"{header.architecture}.context_length", 0) or 0)
        n_ctx = settings.n_ctx or min(n_ctx_train or 4096, MAX_AUTO_CTX)
        if n_ctx_train:
            n_ctx = min(n_ctx, n_ctx_train)
        threads = settings.n_threads or default_threads()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(header.path),
                n_ctx=n_ctx,
                n_batch=settings.n_batch,
                n_ubatch=settings.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=settings.n_gpu_layers,
                # Sliding-window layers (Gemma 3) keep only the last window + batch of positions: decoding attends
                # over fewer cells (8-12% faster per token than a full-size SWA cache on a laptop CPU). The cache
                # can then be trimmed only back to where the window is still whole (_min_keep), which is what typing
                # does; further back goes through checkpoints of those layers (_feed, _reuse_prefix).
                swa_full=False,
                # Read the weights into the process's own memory instead of mapping the file: a mapped file that is
                # truncated or rewritten in place (a download, `cp` over it) kills the server with SIGBUS on the
                # next page it touches. The runtime notices a changed file before each request and loads it again.
                use_mmap=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {header.path} (architecture '{header.architecture}'): {exc}. "
                "The architecture may be unsupported by this llama-cpp-python build; try a newer one."
            ) from None
        self._n_vocab = int(self._llm.n_vocab())
        self._n_swa = int(llama_cpp.llama_model_n_swa(self._llm.model))
        # Sliding-window layers' state at points of the prompt, so the cache can go back further than the window
        # it holds (as llama-server's context checkpoints do).
        self._checkpoints: list[Checkpoint] = []
        self._lines = LineTokenMemo(self._tokenize_text)
        self._vocab_index = {tok: i for i, tok in enumerate(header.tokens)} if header.tokens else {}
        fmt = select_format(header)
        add_bos_meta = header.get("tokenizer.ggml.add_bos_token")
        self._add_bos = fmt.add_bos if fmt.add_bos is not None else bool(add_bos_meta)
        self._bos = int(self._llm.token_bos()) if self._llm.token_bos() >= 0 else None
        self._decoder_errors = "replace"
        self.info = ModelInfo(
            path=str(header.path),
            name=str(header.get("general.name") or header.path.stem),
            architecture=header.architecture,
            format=fmt,
            n_ctx=self._llm.n_ctx(),
            n_ctx_train=n_ctx_train,
            chat_template=header.get("tokenizer.chat_template"),
            file_size=header.file_size,
            load_ms=(time.monotonic() - started) * 1000,
            gpu_layers=settings.n_gpu_layers,
            gpu_offload_supported=gpu_offload_supported(),
        )
        self._stop_ids, self._stop_texts = special_ids(self, fmt.stop)
        self._states = PromptStates(settings.prompt_cache_mb * 1024 * 1024)

    # -- tokens ------------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        return self._lines.tokenize(text)

    def _tokenize_text(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=False))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(self._llm.detokenize(list(tokens))).decode("utf-8", errors="replace")

    def token_id(self, piece: str) -> int | None:
        tid = self._vocab_index.get(piece)
        if tid is not None:
            return tid
        ids = self._llm.tokenize(piece.encode("utf-8"), add_bos=False, special=True)
        if len(ids) == 1 and self._is_control(ids[0]):
            return int(ids[0])
        return None

    def _is_control(self, token: int) -> bool:
        attr = self._llama_cpp.llama_vocab_get_attr(self._llm._model.vocab, token)
        return bool(attr & (self._llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | self._llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED))

    def encode(self, pieces: Sequence[Piece], add_bos: bool | None = None) -> list[int]:
        use_bos = self._add_bos if add_bos is None else add_bos
        return encode_pieces(self, pieces, self._bos if use_bos else None)

    # -- generation --------------------------------------------------------------------------------------
    @property
    def cached_tokens(self) -> list[int]:
        return [int(t) for t in self._llm.input_ids[: self._llm.n_tokens]]

    def _is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))

    def generate(
        self,
        prompt: Sequence[int],
        params: GenerationParams,
        cancel: CancelToken,
        on_text: OnText | None = None,
    ) -> GenerationResult:
        llm = self._llm
        prompt = list(prompt)
        n_ctx = self.info.n_ctx
        if not prompt:
            raise ContextOverflowError("The prompt is empty.")
        if len(prompt) >= n_ctx:
            raise ContextOverflowError(
                f"The prompt has {len(prompt)} tokens but the context window holds {n_ctx}; raise n_ctx or send less."
            )
        t0 = time.monotonic()
        reused = self._reuse_prefix(prompt)
        batch = min(llm.n_batch, params.batch) if params.batch else llm.n_batch
        if not self._feed(prompt[reused:], batch, lambda: cancel.cancelled or cancel.expired(), params.boundaries):
            # The cache now holds a valid prefix of this prompt; the next request reuses it.
            return GenerationResult(
                "", "cancelled" if cancel.cancelled else "deadline", len(prompt), reused, 0,
                (time.monotonic() - t0) * 1000, 0.0,
            )  # fmt: skip
        t1 = time.monotonic()
        stop_ids = self._stop_ids
        stop_texts = self._stop_texts + tuple(params.stop)
        decoder = codecs.getincrementaldecoder("utf-8")(errors=self._decoder_errors)
        text = ""
        generated = 0
        reason: StopReason = "length"
        while generated < params.max_tokens:
            if cancel.cancelled:
                reason = "cancelled"
                break
            if cancel.expired():
                reason = "deadline"
                break
            if llm.n_tokens >= n_ctx:
                reason = "context"
                break
            token = self._next_token(params, generated)
            generated += 1
            if token in stop_ids or self._is_eog(token):
                reason = "eos" if self._is_eog(token) else "stop"
                break
            piece = decoder.decode(bytes(llm.detokenize([token])))
            if piece:
                text, stop = take_piece(text, piece, stop_texts, params, on_text)
                if stop:
                    reason = "stop"
                    break
            llm.eval([token])
        text += decoder.decode(b"", final=True) if reason == "length" else ""
        t2 = time.monotonic()
        return GenerationResult(
            text=text,
            stop_reason=reason,
            prompt_tokens=len(prompt),
            reused_tokens=reused,
            generated_tokens=generated,
            prompt_ms=(t1 - t0) * 1000,
            generate_ms=(t2 - t1) * 1000,
        )

    def _next_token(self, params: GenerationParams, step: int) -> int:
        if params.temperature <= 0:
            # Greedy: the argmax of the last logits. llama.cpp's sampler chain would copy and sort the whole
            # vocabulary (262k entries for Gemma) first, a tenth of each token's time on a laptop CPU.
            logits = self._llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1)
            return int(np.ctypeslib.as_array(logits, shape=(self._n_vocab,)).argmax())
        llm = self._llm
        # llama-cpp-python builds a fresh sampler, seeded from this, for every token: vary it per request seed
        # (so a manual trigger's candidates differ) and per step (so the draws are not all the same number).
        llm.set_seed(params.seed * 1_000_003 + step)
        return int(llm.sample(temp=params.temperature, top_k=params.top_k, top_p=params.top_p, repeat_penalty=1.0))

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Trim the KV cache to the longest prefix shared with `prompt` that it can continue exactly (from the live
        cache, a checkpoint or a snapshot); returns how many tokens are kept."""
        llm = self._llm
        cached = self.cached_tokens
        # The last prompt token is always evaluated again, for fresh logits.
        shared = min(common_prefix(cached, prompt), len(prompt) - 1)
        if len(cached) - shared >= MIN_SAVED_TOKENS:
            self._save_state(cached)
        checkpoint: Checkpoint | None = None
        keep = shared
        if shared < self._min_keep():
            checkpoint = reach(self._checkpoints, shared)
            keep = checkpoint.position if checkpoint is not None else 0
        # While typing the live cache holds all but the last token or two: no snapshot can beat it, so none is
        # looked at.
        if len(prompt) - 1 - keep >= MIN_SAVED_TOKENS:
            snapshot, restorable = self._states.best(prompt, len(prompt) - 1)
            if snapshot is not None and restorable - keep >= MIN_SAVED_TOKENS:
                if self._restore_state(snapshot):
                    keep = restorable
                    checkpoint = None if keep >= snapshot.min_keep else reach(self._checkpoints, keep)
                else:  # the cache is empty now
                    keep, checkpoint = 0, None
        if checkpoint is not None and not self._restore_checkpoint(checkpoint):
            keep = 0
        self._checkpoints = [c for c in self._checkpoints if c.position <= keep]
        if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
            return keep
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self._checkpoints = []
        return 0

    def _min_keep(self) -> int:
        """The shortest prefix the live KV cache can be trimmed to and still continue exactly: sliding-window
        layers hold only recent positions, and the next token must see a whole window of them (0: any prefix)."""
        if not self._n_swa:
            return 0
        memory = self._llama_cpp.llama_get_memory(self._llm._ctx.ctx)
        oldest = int(self._llama_cpp.llama_memory_seq_pos_min(memory, 0))
        return oldest + self._n_swa if oldest > 0 else 0

    def _read_state(self, flags: int, most: int | None = None) -> bytes | None:
        """Sequence 0's state from llama.cpp (`flags`: all of it, or the sliding-window layers only); None when it
        is empty or bigger than `most` bytes."""
        lib, ctx = self._llama_cpp, self._llm._ctx.ctx
        size = int(lib.llama_state_seq_get_size_ext(ctx, 0, flags))
        if size <= 0 or (most is not None and size > most):
            return None
        buffer = (ctypes.c_uint8 * size)()
        written = int(lib.llama_state_seq_get_data_ext(ctx, buffer, size, 0, flags))
        return bytes(memoryview(buffer)[:written]) if 0 < written <= size else None

    def _write_state(self, data: bytes, flags: int) -> bool:
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return int(
            self._llama_cpp.llama_state_seq_set_data_ext(self._llm._ctx.ctx, buffer, len(data), 0, flags)
        ) == len(data)

    def _take_checkpoint(self, placed: bool = True, exact: bool = False) -> None:
        """A checkpoint where the cache ends now (`placed`: where a prompt is likely to part, not just on the
        window's grid); `exact`: even right after another (where a feed stopped)."""
        position = self._llm.n_tokens
        kept = self._checkpoints
        last = kept[-1] if kept else Checkpoint(0, b"")
        if position == last.position:
            return
        if position - last.position < MIN_CHECKPOINT_GAP and not exact:
            if not placed or last.placed:
                return
            kept = kept[:-1]  # a grid checkpoint just before a placed one adds nothing
        data = self._read_state(self._llama_cpp.LLAMA_STATE_SEQ_FLAGS_SWA_ONLY)
        if data is not None:
            self._checkpoints = thin([*kept, Checkpoint(position, data, placed)], MAX_CHECKPOINTS)

    def _restore_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Bring back the sliding-window layers' state at the checkpoint; the caller trims the rest to it."""
        return self._write_state(checkpoint.data, self._llama_cpp.LLAMA_STATE_SEQ_FLAGS_SWA_ONLY)

    def _save_state(self, tokens: Sequence[int]) -> None:
        """Snapshot the KV cache's sequence before most of it is thrown away (see prompt_states)."""
        if not self._states.budget_bytes:
            return
        data = self._read_state(0, most=self._states.budget_bytes)
        if data is not None:
            # Sliding-window layers save only their last window: the restored cache continues only at its end.
            min_keep = len(tokens) if self._n_swa else 0
            checkpoints = tuple(thin(self._checkpoints, SNAPSHOT_CHECKPOINTS))
            self._states.add(Snapshot(tuple(tokens), data, min_keep, checkpoints))

    def _restore_state(self, snapshot: Snapshot) -> bool:
        """Replace the cache with `snapshot`; on failure it is left empty (the caller starts over)."""
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        if not self._write_state(snapshot.data, 0):
            return False
        self._checkpoints = list(snapshot.checkpoints)
        n = len(snapshot.tokens)
        llm.input_ids[:n] = snapshot.tokens
        llm.n_tokens = n
        return True

    def log_likelihood(self, prompt: Sequence[int], continuation: Sequence[int]) -> float:
        """Natural-log probability the model gives `continuation` right after `prompt` (teacher forcing): a finer
        measure of what a prompt buys than whether greedy decoding happens to reproduce a line exactly."""
        prompt, continuation = list(prompt), list(continuation)
        if not prompt or len(prompt) + len(continuation) >= self.info.n_ctx:
            raise ContextOverflowError("The prompt and continuation do not fit in the context window.")
        llm = self._llm
        self._feed(prompt[self._reuse_prefix(prompt) :], llm.n_batch, lambda: False)
        total = 0.0
        for token in continuation:
            pointer = self._llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
            top = logits.max()
            total += float(logits[token] - top - np.log(np.exp(logits - top).sum()))
            llm.eval([token])
        return total

    def warm(self, prompt: Sequence[int], cancel: CancelToken, boundaries: Sequence[int] = ()) -> int:
        """Evaluate a prompt without generating, so the next request finds it in the KV cache; returns the number
        of tokens evaluated. Stops between batches when cancelled (a real request arrived); what it evaluated is
        kept exactly (see `_feed`). `boundaries`: where the prompt's parts begin (`Prompt.boundaries`)."""
        prompt = list(prompt)[: self.info.n_ctx - 1]
        if not prompt:
            return 0
        before = self._reuse_prefix(prompt)
        # Small batches: a keystroke's request waits for at most one of them before it takes over the worker.
        self._feed(prompt[before:], min(self._llm.n_batch, BACKGROUND_BATCH), lambda: cancel.cancelled, boundaries)
        return self._llm.n_tokens - before

    def _feed(
        self, tokens: Sequence[int], batch: int, stop: Callable[[], bool], boundaries: Sequence[int] = ()
    ) -> bool:
        """Evaluate `tokens` after what the KV cache holds, `batch` at a time, checking `stop` before each batch;
        False when it stopped early (the cache then holds a valid prefix).

        Sliding-window layers keep only their last window, so the cache can be taken back only to where a
        checkpoint of them was left. A feed leaves one where the next prompts are likely to part from this one:
        at the prompt's `boundaries` (where a context passage, the file header or the window begins: a changed
        passage re-evaluates from its own start), a few tokens before the end (the last word typed is tokenized
        anew), at each multiple of the window (for prompts without boundaries), and where it stops early, so a
        feed cut by the clock or by a newer request keeps everything it evaluated."""
        batch = max(1, batch)
        start = self._llm.n_tokens
        end = start + len(tokens)
        placed: set[int] = set()
        grid: set[int] = set()
        if self._n_swa and tokens:
            placed = {b for b in boundaries if start < b < end}
            if len(tokens) > CHECKPOINT_BEFORE_END:
                grid = set(range(start - start % self._n_swa + self._n_swa, end, self._n_swa))
                placed.add(end - CHECKPOINT_BEFORE_END)
        cuts = sorted({*range(start, end, batch), *placed, *grid, end})
        for a, b in itertools.pairwise(cuts):
            if stop():
                if self._n_swa and a > start:
                    self._take_checkpoint(exact=True)
                return False
            self._llm.eval(list(tokens[a - start : b - start]))
            if b in placed or b in grid:
                self._take_checkpoint(placed=b in placed)
        return True

    def close(self) -> None:
        llm: Any = getattr(self, "_llm", None)
        if llm is not None:
            llm.close()
            del self._llm
