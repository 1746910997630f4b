"""llama.cpp's llama-server as a fimble engine.

- Prompts go to `/completion` as token ids, so the server evaluates exactly the prompt fimble built (special tokens
  can never be injected through file text) with `cache_prompt` on, and `id_slot` pins this editor to one server
  slot so consecutive keystrokes reuse that slot's KV cache even when many editors share the server.
- Tokens come from `/tokenize` (cached), so budgets are exact; `/props` and `/v1/models` give the model's name and
  the context size per slot; special tokens are found by tokenizing every template's spellings once.
- A model whose family fimble has no template for, but whose GGUF names FIM tokens, is served through `/infill`:
  fimble sends the (already budgeted) prefix and suffix as token ids and llama-server adds its own FIM tokens.
- Streaming is SSE; cancelling closes the connection, which makes llama-server stop generating.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
from collections.abc import Generator, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from fimble.model.backend import CancelToken, GenerationParams, ModelInfo, StopReason
from fimble.model.remote.failures import RemoteError
from fimble.model.remote.format_choice import candidate_specials, choose, configured_format, synthetic_header
from fimble.model.remote.http import HttpClient
from fimble.model.remote.remote_backend import Chunk, Final, RemoteBackend
from fimble.model.remote.tokenizers import CachedTokenizer
from fimble.prompt.formats import FimFormat
from fimble.settings import Settings

# Placeholders for llama-server's own FIM tokens: encode() maps them to these negative ids, which never reach the
# server; generate() cuts the prompt at them and sends the parts to /infill.
_INFILL_IDS = {"fim_prefix": -1001, "fim_suffix": -1002, "fim_middle": -1003}
INFILL_FORMAT = FimFormat(
    name="llama-server-infill",
    description="llama-server /infill: the server inserts the FIM tokens named in the model's GGUF metadata",
    tokens={role: f"<fimble-infill:{role}>" for role in _INFILL_IDS},
    fim="{{fim_prefix}}{prefix}{{fim_suffix}}{suffix}{{fim_middle}}",
    stop=(),
    add_bos=False,  # /infill adds BOS itself when the model wants one
    source="llama-server",
)
_STOP_TYPES: dict[str, StopReason] = {"eos": "eos", "word": "stop", "limit": "length"}


def _slot_key() -> str:
    """Same user, machine and workspace -> same slot, so an editor restart finds its KV cache still warm."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return f"{user}@{socket.gethostname()}:{os.getcwd()}"


def stable_slot(total_slots: int, key: str | None = None) -> int | None:
    if total_slots <= 1:
        return None  # one slot: nothing to choose, and id_slot would only serialise requests the same way
    digest = hashlib.sha256((key or _slot_key()).encode()).digest()
    return int.from_bytes(digest[:4], "big") % total_slots


class LlamaServerBackend(RemoteBackend):
    engine = "llama-server"

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        client = HttpClient(
            settings.url,
            engine=self.engine,
            timeout_ms=settings.request_timeout_ms,
            api_key_env=settings.api_key_env,
            environ=environ,
            not_found_hint="For vLLM, Ollama, LM Studio or llama-cpp-python's server set 'backend' to 'openai'.",
        )
        super().__init__(settings, client)
        self._tokens = CachedTokenizer(self._server_tokenize)
        self.slot: int | None = None
        self.total_slots = 1
        self.infill = False

    # -- discovery -------------------------------------------------------------------------------------------
    def _discover(self) -> ModelInfo:
        props = self.client.get_json("/props")
        settings_block = props.get("default_generation_settings") if isinstance(props, dict) else None
        if not isinstance(settings_block, dict):
            raise RemoteError(
                f"{self.label} answered /props, but not the way llama-server does. If it is vLLM, Ollama, LM Studio "
                "or llama-cpp-python's server, set 'backend' to 'openai'.",
                "protocol",
            )
        server_ctx = _int(settings_block.get("n_ctx")) or _int(props.get("n_ctx")) or 0
        self.total_slots = _int(props.get("total_slots")) or 1
        model_path = str(props.get("model_path") or "")
        name = str(props.get("model_alias") or model_path or "llama-server")
        if name.endswith(".gguf") or "/" in name:
            name = PurePath(name).stem  # the alias defaults to the model's path; its file name reads better
        meta = self._model_meta()
        # Does the model want BOS? llama-server prepends it to text prompts, never to token-id prompts, so fimble
        # adds it itself, exactly as the in-process backend does.
        with_bos = self._raw_tokenize("", add_special=True)
        self._bos = with_bos[0] if len(with_bos) == 1 else None
        vocab = self._probe_vocabulary()
        self._specials.update(vocab)
        header = synthetic_header(name, "unknown", vocab)
        fmt, source = choose(self.settings, model_id=name, header=header)
        self.infill = False
        if not fmt.is_fim and configured_format(self.settings) is None and self._infill_supported():
            fmt, source = INFILL_FORMAT, "the model's FIM tokens, through llama-server /infill"
            self.infill = True
            self._specials.update({INFILL_FORMAT.tokens[r]: i for r, i in _INFILL_IDS.items()})
        self.format_source = source
        self._add_bos = fmt.add_bos if fmt.add_bos is not None else self._bos is not None
        self.slot = stable_slot(self.total_slots)
        n_ctx = server_ctx or self.settings.n_ctx or 4096
        if self.settings.n_ctx and server_ctx:
            n_ctx = min(self.settings.n_ctx, server_ctx)  # nCtx may only shrink what the server's slot holds
        return ModelInfo(
            path=self.client.endpoint.display,
            name=name,
            architecture="remote",
            format=fmt,
            n_ctx=n_ctx,
            n_ctx_train=_int(meta.get("n_ctx_train")) or 0,
            chat_template=props.get("chat_template") or None,
            file_size=_int(meta.get("size")) or 0,
        )

    def _model_meta(self) -> dict[str, Any]:
        try:
            models = self.client.get_json("/v1/models", retry=False)
        except RemoteError as exc:
            if exc.kind in ("connect", "timeout", "tls", "auth"):
                raise
            return {}  # older servers: the size and training context are only nice to have
        data = models.get("data") if isinstance(models, dict) else None
        if isinstance(data, list) and data and isinstance(data[0], dict) and isinstance(data[0].get("meta"), dict):
            return dict(data[0]["meta"])
        return {}

    def _probe_vocabulary(self) -> dict[str, int]:
        """Which template spellings are special tokens of this model, in one /tokenize call: tokenized with special
        parsing, a spelling the vocabulary has comes back as one token whose piece is the spelling itself."""
        candidates = candidate_specials()
        wanted = {c: c for c in candidates} | {c.replace("▁", " "): c for c in candidates if "▁" in c}
        answer = self.client.post_json(
            "/tokenize", {"content": "\n".join(candidates), "parse_special": True, "with_pieces": True}
        )
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise RemoteError(f"{self.label} answered /tokenize without a token list.", "protocol")
        found: dict[str, int] = {}
        if tokens and all(isinstance(t, dict) for t in tokens):
            for t in tokens:
                piece, tid = t.get("piece"), t.get("id")
                if isinstance(piece, str) and isinstance(tid, int) and piece in wanted:
                    found[wanted[piece]] = tid
            return found
        for cand in candidates:  # servers without with_pieces: one call per spelling
            tid = self._probe_special(cand)
            if tid is not None:
                found[cand] = tid
        return found

    def _infill_supported(self) -> bool:
        try:
            self.client.post_json(
                "/infill",
                {"input_prefix": "", "input_suffix": "", "n_predict": 1, "cache_prompt": False, "temperature": 0},
                retry=False,
            )
        except RemoteError as exc:
            if exc.kind in ("connect", "timeout", "tls", "auth"):
                raise
            return False  # 501 "Infill is not supported by this model"
        return True

    # -- tokens ----------------------------------------------------------------------------------------------
    def _raw_tokenize(self, text: str, add_special: bool = False, parse_special: bool = False) -> list[int]:
        answer = self.client.post_json(
            "/tokenize", {"content": text, "add_special": add_special, "parse_special": parse_special}
        )
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise RemoteError(f"{self.label} answered /tokenize without a list of token ids.", "protocol")
        return list(tokens)

    def _server_tokenize(self, text: str) -> list[int]:
        return self._raw_tokenize(text)

    def _tokenize(self, text: str) -> list[int]:
        return self._tokens(text)

    def _detokenize(self, tokens: list[int]) -> str:
        answer = self.client.post_json("/detokenize", {"tokens": [t for t in tokens if t >= 0]})
        content = answer.get("content") if isinstance(answer, dict) else None
        if not isinstance(content, str):
            raise RemoteError(f"{self.label} answered /detokenize without text.", "protocol")
        return content

    def _probe_special(self, piece: str) -> int | None:
        ids = self._raw_tokenize(piece, parse_special=True)
        if len(ids) != 1:
            return None
        return ids[0]

    # -- generation ------------------------------------------------------------------------------------------
    def warm(self, prompt: list[int], cancel: CancelToken, boundaries: Sequence[int] = ()) -> int:
        """Evaluate a prompt into this editor's slot without generating (n_predict 0), so the next keystroke's
        request finds it in the server's KV cache. Best effort: returns the tokens the server evaluated. (The
        server places its own checkpoints: `boundaries` is for the in-process engine.)"""
        self.ensure_ready()
        ids = [t for t in prompt if t >= 0][: self.info.n_ctx - 1]
        if not ids or self.infill:
            return 0
        # Streamed, so that a real request cancelling the warm-up closes the connection at once instead of waiting
        # for the server to finish evaluating.
        body: dict[str, Any] = {"prompt": ids, "n_predict": 0, "cache_prompt": True, "stream": True}
        if self.slot is not None:
            body["id_slot"] = self.slot
        for event in self.client.stream("/completion", body, cancel, retry=False):
            if event.get("stop"):
                return _int(event.get("tokens_evaluated")) or 0
        return 0

    def _request(
        self, prompt: list[int], params: GenerationParams, stops: tuple[str, ...]
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "n_predict": params.max_tokens,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "seed": params.seed,
            "repeat_penalty": 1.0,  # as the in-process backend: code repeats itself legitimately
            "stop": list(stops),
            "stream": True,
            "cache_prompt": True,
        }
        if self.slot is not None:
            body["id_slot"] = self.slot
        marks = {i: prompt.index(i) for i in _INFILL_IDS.values() if i in prompt}
        if self.infill and len(marks) == 3:
            pre, suf, mid = (marks[_INFILL_IDS[r]] for r in ("fim_prefix", "fim_suffix", "fim_middle"))
            # Text before the prefix mark is context fimble rendered as comments; it belongs to the prefix.
            body["input_prefix"] = prompt[:pre] + prompt[pre + 1 : suf]
            body["input_suffix"] = prompt[suf + 1 : mid]
            body["input_extra"] = []
            return "/infill", body
        body["prompt"] = [t for t in prompt if t >= 0]
        return "/completion", body

    def _stream(
        self, prompt: list[int], params: GenerationParams, cancel: CancelToken, stops: tuple[str, ...]
    ) -> Generator[Chunk, None, None]:
        path, body = self._request(prompt, params, stops)
        for event in self.client.stream(path, body, cancel):
            content = event.get("content") or ""
            if not isinstance(content, str):
                raise TypeError("content is not text")
            if not event.get("stop"):
                if content:
                    yield content, None
                continue
            raw_timings = event.get("timings")
            timings: dict[str, Any] = raw_timings if isinstance(raw_timings, dict) else {}
            cached = _int(timings.get("cache_n"))
            processed = _int(timings.get("prompt_n"))
            final = Final(
                stop_reason=_STOP_TYPES.get(str(event.get("stop_type")), "eos"),
                prompt_tokens=(cached or 0) + processed
                if processed is not None
                else _int(event.get("tokens_evaluated")),
                reused_tokens=cached,
                generated_tokens=_int(event.get("tokens_predicted")) or _int(timings.get("predicted_n")),
                prompt_ms=_float(timings.get("prompt_ms")),
                generate_ms=_float(timings.get("predicted_ms")),
            )
            if content:
                yield content, None
            yield "", final
            return


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
