"""What fimble's latency is set against: bare llama.cpp from an empty KV cache (the cost a plain integration pays per
request) and a llama.cpp `llama-server` with its own prompt cache."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from fimble.settings import Settings
from fimble_dev.record import Request


def bare_params(model_path: str, settings: Settings) -> dict[str, Any]:
    """The same context size, batch and threads as fimble's backend gives the model, so only the caching differs."""
    from fimble.model.gguf_meta import read_header
    from fimble.model.llama_cpp_backend import MAX_AUTO_CTX, default_threads

    header = read_header(model_path)
    n_ctx_train = int(header.get(f"{header.architecture}.context_length", 0) or 0)
    n_ctx = settings.n_ctx or min(n_ctx_train or 4096, MAX_AUTO_CTX)
    if n_ctx_train:
        n_ctx = min(n_ctx, n_ctx_train)
    threads = settings.n_threads or default_threads()
    return {
        "n_ctx": n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_batch,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_gpu_layers": settings.n_gpu_layers,
        "verbose": False,
    }


class BareLlama:
    """llama-cpp-python called directly, from an empty KV cache for every prompt: the cost a plain integration pays
    per request. The model is loaded once (loading is not part of a request); the cache is cleared before each
    prompt, and as many tokens are generated as fimble generated for that request."""

    def __init__(self, model_path: str, settings: Settings) -> None:
        import llama_cpp

        self.settings = settings
        self.llm = llama_cpp.Llama(model_path=model_path, **bare_params(model_path, settings))
        self.mismatched = 0

    def run(self, req: Request) -> None:
        if not req.prompt:
            return
        llm = self.llm
        ids = list(llm.tokenize(req.prompt.encode("utf-8"), add_bos=False, special=True))
        bos = llm.token_bos()
        # fimble's prompt text shows special tokens by name; BOS is not in the text but counted in `tokens`.
        if req.prompt_tokens_debug is not None and len(ids) + 1 == req.prompt_tokens_debug and bos >= 0:
            ids = [bos, *ids]
        if req.prompt_tokens_debug is not None and len(ids) != req.prompt_tokens_debug:
            self.mismatched += 1
        n_gen = req.tokens_to_generate or self.settings.max_tokens
        llm.reset()
        kv_clear = getattr(llm._ctx, "kv_cache_clear", None)
        if kv_clear is not None:
            kv_clear()
        t0 = time.monotonic()
        llm.create_completion(ids, max_tokens=n_gen, temperature=0.0)
        req.bare_ms = (time.monotonic() - t0) * 1000
        req.bare_tokens = len(ids)

    def note(self) -> str:
        return (
            f"{self.mismatched} prompt(s) tokenized to a different length than fimble's" if self.mismatched else "exact"
        )

    def close(self) -> None:
        self.llm.close()


class Peer:
    """A llama.cpp `llama-server` with its prompt cache on, sent each request as it happens."""

    def __init__(self, url: str, mode: str, settings: Settings, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.mode = mode  # "auto", "completion" or "infill"
        self.settings = settings
        self.timeout_s = timeout_s
        self.errors = 0
        self.modes: set[str] = set()

    def run(self, req: Request) -> None:
        mode = self.mode
        if mode == "auto":  # /infill for models with FIM tokens, as llama.cpp's own editor plugins use
            mode = "completion" if req.prompt_format in ("", "prefix-only") else "infill"
        if mode == "completion" and not req.prompt:
            return
        self.modes.add(mode)
        n_gen = req.tokens_to_generate or self.settings.max_tokens
        body: dict[str, Any] = {"n_predict": n_gen, "temperature": 0.0, "cache_prompt": True, "stream": False}
        if mode == "infill":
            body.update(input_prefix=req.prefix, input_suffix=req.suffix)
        else:
            body["prompt"] = req.prompt  # special tokens by name: llama-server parses them in prompt text
        request = urllib.request.Request(
            f"{self.url}/{mode}", data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}
        )
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read() or b"{}")
        except (OSError, ValueError, urllib.error.URLError) as exc:
            self.errors += 1
            if self.errors == 1:
                print(f"peer {self.url}/{mode}: {exc}", file=sys.stderr)
            return
        req.peer_ms = (time.monotonic() - t0) * 1000
        timings = answer.get("timings") if isinstance(answer, dict) else None
        if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
            req.peer_cached_tokens = timings["cache_n"]

    def note(self) -> str:
        modes = "/".join(sorted(self.modes)) or self.mode
        return f"{modes} at {self.url}: " + (f"{self.errors} request(s) failed" if self.errors else "ok")
