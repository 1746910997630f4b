"""The model's answers to prompts it was given before, kept on disk between evaluation runs.

Greedy generation and teacher-forced scoring are functions of the model file and the prompt's tokens. A run that
compares a change to the context engine with the cursor window alone sends mostly prompts an earlier run already
sent (every window-only prompt, and every task the change does not touch); on a CPU where one prompt costs seconds
to a minute, answering those from the file is what makes trying a change on a few hundred tasks possible.

The file is JSON lines, one answer a line, appended as answers come (a stopped run keeps what it paid for). The key
is a hash of everything the answer depends on: the model file (path, size, modification time), the prompt's ids,
and for a generation its parameters and the document (the pipeline's stop check reads the text around the cursor).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fimble.model.backend import CancelToken, GenerationParams, GenerationResult, ModelBackend, OnText


class ModelMemo:
    def __init__(self, path: Path, model_path: str) -> None:
        self.path = path
        try:
            st = Path(model_path).stat()
            self._model = f"{model_path}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            self._model = model_path
        self._answers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    self._answers[entry["key"]] = entry["value"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line a stopped run cut short
            if text and not text.endswith("\n"):
                with path.open("a", encoding="utf-8") as fh:
                    fh.write("\n")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)

    def key(self, *parts: object) -> str:
        blob = json.dumps([self._model, *parts], separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str) -> Any | None:
        with self._lock:
            value = self._answers.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._answers[key] = value
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")


class MemoBackend:
    """A model backend that answers `generate` and `log_likelihood` from the memo when it can, and asks the model
    (and remembers) when it cannot. Everything else goes to the model. `document` names the text the pipeline's stop
    check reads; the harness sets it before each request."""

    def __init__(self, backend: ModelBackend, memo: ModelMemo) -> None:
        self.inner = backend
        self._memo = memo
        self.document = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(
        self, prompt: Sequence[int], params: GenerationParams, cancel: CancelToken, on_text: OnText | None = None
    ) -> GenerationResult:
        key = self._memo.key(
            "generate", list(prompt), params.max_tokens, params.temperature, list(params.stop), params.top_k,
            params.top_p, params.seed, params.stop_check is not None, self.document,
        )  # fmt: skip
        known = self._memo.get(key)
        if known is not None:
            return GenerationResult(**known)
        result = self.inner.generate(prompt, params, cancel, on_text)
        if result.stop_reason not in ("cancelled", "deadline"):  # an answer cut short is no answer to keep
            self._memo.put(key, asdict(result))
        return result

    def log_likelihood(self, prompt: Sequence[int], continuation: Sequence[int]) -> float:
        key = self._memo.key("log_likelihood", list(prompt), list(continuation))
        known = self._memo.get(key)
        if known is not None:
            return float(known)
        value = float(self.inner.log_likelihood(prompt, continuation))  # type: ignore[attr-defined]
        self._memo.put(key, value)
        return value
