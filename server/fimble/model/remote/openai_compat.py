"""OpenAI-compatible servers as a fimble engine: vLLM, LM Studio, llama-cpp-python's server (and llama-server's
/v1 API), plus Ollama through its native API.

fimble renders the FIM prompt itself from the family template and sends it to `/v1/completions` (never the chat
API), so no chat template touches it. Ollama is the exception that proves the rule: its OpenAI `/v1/completions`
wraps every prompt in the model's template and cannot be told not to, so fimble detects Ollama (`/api/version`)
and uses its native `/api/generate` with `raw: true` instead.

Tokens: where the server has a tokenize endpoint (vLLM `/tokenize`, llama-cpp-python `/extras/tokenize`,
llama-server `/tokenize`) fimble counts with it; otherwise it uses the calibrated estimate in `tokenizers.py`. Prompts
travel as text; the ids the pipeline holds map back to that exact text (remembered prompts, or the estimate's
self-describing ids).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal

from fimble.model.backend import CancelToken, GenerationParams, ModelInfo, StopReason
from fimble.model.gguf_meta import GGUFHeader
from fimble.model.remote.failures import RemoteError
from fimble.model.remote.format_choice import candidate_specials, choose, synthetic_header
from fimble.model.remote.http import Framing, HttpClient
from fimble.model.remote.remote_backend import Chunk, Final, RemoteBackend
from fimble.model.remote.tokenizers import CachedTokenizer, EstimateTokenizer
from fimble.prompt.formats import Piece, Special
from fimble.settings import Settings

TokenizerStyle = Literal["vllm", "llama-server", "llama-cpp-python"]
_FINISH: dict[str, StopReason] = {"stop": "eos", "length": "length", "eos": "eos"}
_PROBE_TEXT = "def fimble(x):\n    return x"


class OpenAICompatBackend(RemoteBackend):
    engine = "openai"

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        client = HttpClient(
            settings.url,
            engine=self.engine,
            timeout_ms=settings.request_timeout_ms,
            api_key_env=settings.api_key_env,
            strip_suffixes=("/v1",),  # users paste OpenAI "base URLs" ending in /v1; fimble adds the API path
            environ=environ,
            not_found_hint="Give the server's base address (e.g. http://gpu-box:8000, with or without /v1); "
            "for llama.cpp's llama-server, 'backend' = 'llama-server' works better.",
        )
        super().__init__(settings, client)
        self.model_id = ""
        self.ollama = False
        self.tokenizer_style: TokenizerStyle | None = None
        self.estimate = EstimateTokenizer()
        self._server_tokens: CachedTokenizer | None = None
        self._bos_prefix = 0
        self._memory: OrderedDict[tuple[int, ...], str] = OrderedDict()

    # -- discovery -------------------------------------------------------------------------------------------
    def _discover(self) -> ModelInfo:
        wanted = self.settings.remote_model
        self.ollama = self._is_ollama()
        header: GGUFHeader | None = None
        n_ctx_server = 0
        n_ctx_train = 0
        if self.ollama:
            self.model_id = self._pick_model(wanted, self._ollama_models())
            header, n_ctx_train = self._ollama_header(self.model_id)
        else:
            models = self.client.get_json("/v1/models")
            cards = models.get("data") if isinstance(models, dict) else None
            if not isinstance(cards, list):
                raise RemoteError(
                    f"{self.label} answered /v1/models without a model list; is 'url' an OpenAI-compatible server?",
                    "protocol",
                )
            card_by_id = {str(c.get("id")): c for c in cards if isinstance(c, dict) and c.get("id")}
            self.model_id = self._pick_model(wanted, list(card_by_id))
            card: dict[str, Any] = card_by_id.get(self.model_id, {})
            raw_meta = card.get("meta")
            meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
            n_ctx_server = _int(card.get("max_model_len")) or _int(meta.get("n_ctx")) or 0
            n_ctx_train = _int(meta.get("n_ctx_train")) or n_ctx_server
            self._detect_tokenizer()
            if self._server_tokens is not None:
                vocab = {c: tid for c in candidate_specials() if (tid := self._probe_special(c)) is not None}
                self._specials.update(vocab)
                header = synthetic_header(self.model_id, "unknown", vocab)
        fmt, source = choose(self.settings, model_id=self.model_id, header=header)
        self.format_source = source
        if self._server_tokens is None:
            # Virtual ids: specials the chosen template uses get negative ids; nothing else is special.
            for text in (*fmt.tokens.values(), *fmt.stop):
                self._specials[text] = self.estimate.special_id(text)
        n_ctx = self.settings.n_ctx or n_ctx_server or n_ctx_train or 4096
        for cap in (n_ctx_server, n_ctx_train):
            if cap:
                n_ctx = min(n_ctx, cap)
        return ModelInfo(
            path=self.client.endpoint.display,
            name=self.model_id,
            architecture=header.architecture if header is not None else "remote",
            format=fmt,
            n_ctx=n_ctx,
            n_ctx_train=n_ctx_train,
            chat_template=None,
            file_size=0,
        )

    def _pick_model(self, wanted: str | None, available: list[str]) -> str:
        if wanted:
            if available and wanted not in available:
                raise RemoteError(
                    f"{self.label} does not serve the model {wanted!r} named by 'remoteModel'; it serves: "
                    f"{', '.join(available[:10])}.",
                    "config",
                )
            return wanted
        if not available:
            raise RemoteError(f"{self.label} serves no model yet; load one, or name it in 'remoteModel'.", "loading")
        return available[0]

    def _is_ollama(self) -> bool:
        try:
            answer = self.client.get_json("/api/version", retry=False)
        except RemoteError as exc:
            if exc.kind in ("connect", "timeout", "tls"):
                raise
            return False
        return isinstance(answer, dict) and isinstance(answer.get("version"), str)

    def _ollama_models(self) -> list[str]:
        tags = self.client.get_json("/api/tags")
        models = tags.get("models") if isinstance(tags, dict) else None
        if not isinstance(models, list):
            raise RemoteError(f"{self.label} answered /api/tags without a model list.", "protocol")
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    def _ollama_header(self, model: str) -> tuple[GGUFHeader | None, int]:
        """Ollama exposes the model's GGUF metadata, vocabulary included, so family detection works as locally."""
        try:
            show = self.client.post_json("/api/show", {"model": model, "verbose": True})
        except RemoteError as exc:
            if exc.kind in ("connect", "timeout", "tls", "auth"):
                raise
            return None, 0
        info = show.get("model_info") if isinstance(show, dict) else None
        if not isinstance(info, dict):
            return None, 0
        tokens = info.get("tokenizer.ggml.tokens")
        arch = str(info.get("general.architecture") or "unknown")
        metadata = {k: v for k, v in info.items() if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges")}
        header = synthetic_header(model, arch, tokens if isinstance(tokens, list) else [], metadata)
        return (header if header.tokens else None), _int(info.get(f"{arch}.context_length")) or 0

    def _detect_tokenizer(self) -> None:
        probes: tuple[tuple[TokenizerStyle, Callable[[str], list[int]]], ...] = (
            ("vllm", self._tokenize_vllm),
            ("llama-server", self._tokenize_llama_server),
            ("llama-cpp-python", self._tokenize_llama_cpp_python),
        )
        for style, fn in probes:
            try:
                ids = fn(_PROBE_TEXT)
            except RemoteError as exc:
                if exc.kind in ("connect", "timeout", "tls"):
                    raise
                continue
            if ids:
                self.tokenizer_style = style
                if style == "llama-cpp-python":
                    self._bos_prefix = len(fn(""))  # it always adds the model's BOS; counts must not
                self._server_tokens = CachedTokenizer(fn)
                return

    # -- tokenize endpoints ----------------------------------------------------------------------------------
    def _tokenize_vllm(self, text: str) -> list[int]:
        answer = self.client.post_json(
            "/tokenize", {"model": self.model_id, "prompt": text, "add_special_tokens": False}, retry=False
        )
        return _ids(answer, "tokens")

    def _tokenize_llama_server(self, text: str) -> list[int]:
        return _ids(self.client.post_json("/tokenize", {"content": text}, retry=False), "tokens")

    def _tokenize_llama_cpp_python(self, text: str) -> list[int]:
        return _ids(self.client.post_json("/extras/tokenize", {"input": text, "model": self.model_id}), "tokens")

    # -- tokens ----------------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        if self._server_tokens is None:
            return self.estimate.tokenize(text)
        return self._server_tokens(text)[self._bos_prefix :]

    def _detokenize(self, tokens: list[int]) -> str:
        if self._server_tokens is None:
            return self.estimate.detokenize(tokens)
        text = self._memory.get(tuple(tokens))
        if text is not None:
            return text
        if self.tokenizer_style == "vllm":
            return _text(self.client.post_json("/detokenize", {"model": self.model_id, "tokens": tokens}), "prompt")
        if self.tokenizer_style == "llama-server":
            return _text(self.client.post_json("/detokenize", {"tokens": tokens}), "content")
        return _text(self.client.post_json("/extras/detokenize", {"tokens": tokens, "model": self.model_id}), "text")

    def _probe_special(self, piece: str) -> int | None:
        if self._server_tokens is None:
            return None  # estimate mode: only the chosen template's specials exist (set in _discover)
        ids = self._server_tokens(piece)[self._bos_prefix :]
        return ids[0] if len(ids) == 1 else None

    def _remember(self, ids: list[int], pieces: Sequence[Piece]) -> None:
        if self._server_tokens is None:
            return  # virtual ids decode themselves
        self._memory[tuple(ids)] = "".join(p.text if isinstance(p, Special) else p for p in pieces)
        while len(self._memory) > 16:
            self._memory.popitem(last=False)

    def prompt_text(self, prompt: list[int]) -> str:
        """The text a prompt's ids stand for, special tokens spelled out (the server's tokenizer parses them)."""
        if self._server_tokens is None:
            return self.estimate.detokenize(prompt)
        return self._detokenize(prompt)

    def _observe(self, prompt: list[int], final: Final) -> None:
        if self._server_tokens is None and not self.ollama and final.prompt_tokens is not None:
            # Ollama reports only the tokens it had to evaluate (cached ones are left out), so it cannot calibrate.
            self.estimate.observe(len(prompt), final.prompt_tokens)

    # -- generation ------------------------------------------------------------------------------------------
    def _stream(
        self, prompt: list[int], params: GenerationParams, cancel: CancelToken, stops: tuple[str, ...]
    ) -> Generator[Chunk, None, None]:
        text = self.prompt_text(prompt)
        if self.ollama:
            yield from self._stream_ollama(text, params, cancel, stops)
            return
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": text,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stops:
            body["stop"] = list(stops)
        # Not in OpenAI's API, but the servers fimble targets take them (each ignores the spelling it lacks):
        # no repetition penalty, as the in-process backend, because code repeats itself legitimately.
        body["repeat_penalty"] = 1.0  # llama.cpp, llama-cpp-python, LM Studio
        body["repetition_penalty"] = 1.0  # vLLM
        if params.temperature > 0:
            body["top_k"] = params.top_k
        finish: StopReason | None = None
        usage: dict[str, Any] = {}
        for event in self.client.stream("/v1/completions", body, cancel):
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
            choices = event.get("choices") or []
            if not isinstance(choices, list):
                raise TypeError("choices is not a list")
            for choice in choices:
                delta = choice.get("text") or ""
                if not isinstance(delta, str):
                    raise TypeError("choice text is not text")
                if delta:
                    yield delta, None
                reason = choice.get("finish_reason")
                if reason:
                    finish = _FINISH.get(str(reason), "eos")
        if finish is None:
            return  # cancelled, deadline, or the stream broke off: the caller tells which
        details = usage.get("prompt_tokens_details")
        yield (
            "",
            Final(
                stop_reason=finish,
                prompt_tokens=_int(usage.get("prompt_tokens")),
                reused_tokens=_int(details.get("cached_tokens")) if isinstance(details, dict) else None,
                generated_tokens=_int(usage.get("completion_tokens")),
            ),
        )

    def _stream_ollama(
        self, text: str, params: GenerationParams, cancel: CancelToken, stops: tuple[str, ...]
    ) -> Generator[Chunk, None, None]:
        options: dict[str, Any] = {
            "num_predict": params.max_tokens,
            "temperature": params.temperature,
            "top_k": params.top_k,
            "top_p": params.top_p,
            "seed": params.seed,
            "repeat_penalty": 1.0,
            "num_ctx": self.info.n_ctx,  # Ollama's default context is small and it truncates silently
        }
        if stops:
            options["stop"] = list(stops)
        body = {"model": self.model_id, "prompt": text, "raw": True, "stream": True, "options": options}
        framing: Framing = "ndjson"
        for event in self.client.stream("/api/generate", body, cancel, framing):
            delta = event.get("response") or ""
            if not isinstance(delta, str):
                raise TypeError("response is not text")
            if delta:
                yield delta, None
            if event.get("done"):
                yield (
                    "",
                    Final(
                        stop_reason=_FINISH.get(str(event.get("done_reason")), "eos"),
                        prompt_tokens=_int(event.get("prompt_eval_count")),
                        generated_tokens=_int(event.get("eval_count")),
                        prompt_ms=_ns_to_ms(event.get("prompt_eval_duration")),
                        generate_ms=_ns_to_ms(event.get("eval_duration")),
                    ),
                )
                return


def _ids(answer: Any, key: str) -> list[int]:
    tokens = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise RemoteError("tokenize answer without a list of token ids", "protocol")
    return list(tokens)


def _text(answer: Any, key: str) -> str:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, str):
        raise RemoteError("detokenize answer without text", "protocol")
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ns_to_ms(value: Any) -> float | None:
    return value / 1e6 if isinstance(value, int | float) and not isinstance(value, bool) else None
