"""The one place the harness turns a file and a cursor into a pipeline call.

Context (scope, cross-file definitions, recent edits, git) belongs to the pipeline and its `context_sources`
setting: the harness gives it a real workspace on disk and the project's own context engine over that workspace
(indexed synchronously, as a command-line caller does), never snippets of its own.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from fimble.completion.pipeline import Completion, CompletionRequest, build_prompt, complete
from fimble.context.engine import ContextEngine
from fimble.evaluation.memo import MemoBackend, ModelMemo
from fimble.languages import language_from_path
from fimble.model.backend import CancelToken, ModelBackend, ModelInfo, Scores
from fimble.model.prompt_states import common_prefix
from fimble.model.runtime import ModelRuntime
from fimble.prompt.assemble import Prompt
from fimble.prompt.budget import token_counter
from fimble.prompt.formats import merge_text
from fimble.settings import Settings

# Seconds the context engine's background worker may take to re-read a file the harness rewrote.
_REINDEX_TIMEOUT_S = 30.0

# The context sources size their snippets with a characters-per-token ratio the pipeline measures once per model, on
# the first request's text. Measured on whichever task a run happens to start with, it would make the same task's
# context differ between runs; the harness measures it on this fixed text instead.
CALIBRATION_SAMPLE = '''"""Read a configuration file and merge it with the defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULTS: dict[str, Any] = {"timeout": 30, "retries": 3, "verbose": False}


@dataclass
class Config:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected an object")
        merged = dict(DEFAULTS)
        for key, value in raw.items():
            if key not in DEFAULTS:
                raise ConfigError(f"{path}: unknown key {key!r}")
            merged[key] = value
        return cls(path, merged)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)
'''


class Engine:
    """The model loaded once through the same runtime as the CLI and the server; completions run on its worker."""

    def __init__(self, settings: Settings, memo: Path | None = None) -> None:
        """`memo`: a file of the model's earlier answers (see memo.py), used and extended; None: always ask."""
        self.settings = settings
        self.runtime = ModelRuntime()
        self.runtime.load(settings)
        self._contexts: dict[Path, ContextEngine] = {}
        self._proxy: MemoBackend | None = None
        try:
            self.info: ModelInfo = self.runtime.backend_sync().info
            self.memo = ModelMemo(memo, self.info.path) if memo is not None else None
            self.runtime.run_sync(lambda backend: token_counter(backend, CALIBRATION_SAMPLE))
        except BaseException:
            self.runtime.shutdown()
            raise

    def _backend(self, backend: ModelBackend, document: str = "") -> ModelBackend:
        """The backend a request uses: the model itself, or the model behind the memo."""
        if self.memo is None:
            return backend
        proxy = self._proxy
        if proxy is None or proxy.inner is not backend:
            proxy = self._proxy = MemoBackend(backend, self.memo)
            token_counter(proxy, CALIBRATION_SAMPLE)
        proxy.document = document
        return proxy

    def context_for(self, root: Path) -> ContextEngine:
        """The context engine over `root`, indexed before the first request (no persistent cache: the workspaces
        are temporary), its sources free of deadlines."""
        root = root.resolve()
        engine = self._contexts.get(root)
        if engine is None:
            # Untimed: what context a task gets must not depend on how loaded the machine is while it runs.
            engine = ContextEngine(root, cache_file=False, timed=False)
            engine.index_now()
            self._contexts[root] = engine
        return engine

    def file_changed(self, root: Path, rel_path: str) -> None:
        """Tell the workspace's context engine (if any) that a file on disk changed, and wait until it re-read it,
        so the index never holds a line the harness has masked."""
        engine = self._contexts.get(root.resolve())
        if engine is None:
            return
        engine.on_saved((root.resolve() / rel_path).as_uri())
        # Short waits in a loop: each `wait_idle` first makes debounced jobs due, but the re-index itself schedules
        # more (an index save 15 s later), which one long wait would sit out.
        deadline = time.monotonic() + _REINDEX_TIMEOUT_S
        while not engine.wait_idle(0.05) and time.monotonic() < deadline:
            pass

    def drop_context(self, root: Path) -> None:
        engine = self._contexts.pop(root.resolve(), None)
        if engine is not None:
            engine.close()

    def complete(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Completion:
        """The pipeline on `text` (the file `root/rel_path`, cursor at `offset`), built like the server builds it."""
        request = self._request(root, rel_path, text, offset, settings)
        # What the pipeline's stop check reads besides the prompt: the document and the cursor.
        document = hashlib.sha256(f"{offset}:{text}".encode("utf-8", "surrogatepass")).hexdigest()
        # No deadline, like `fimble complete`: quality should not depend on how loaded the machine is. The server's
        # time budget is a latency feature, measured by the latency benchmark instead.
        return self.runtime.run_sync(lambda backend: complete(self._backend(backend, document), request, CancelToken()))

    def prompt(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Prompt:
        """The prompt the pipeline would send, without generating (for scoring the true line alone)."""
        request = self._request(root, rel_path, text, offset, settings)
        return self.runtime.run_sync(lambda backend: build_prompt(self._backend(backend), request))

    def _request(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> CompletionRequest:
        path = root.resolve() / rel_path
        return CompletionRequest(
            text=text,
            offset=offset,
            language_id=language_from_path(rel_path),
            path=rel_path,
            settings=settings,
            repo=root.name,
            uri=path.as_uri(),
            # With no sources selected the pipeline ignores the engine; skip indexing the workspace then.
            context=self.context_for(root) if settings.context_sources else None,
        )

    def score(self, prompt: Prompt, text: str) -> float | None:
        """Log-probability of `text` typed at the end of `prompt` (None for engines that cannot score, such as
        remote servers). The prompt and the text are tokenized together, as the model would read them."""

        def run(backend: ModelBackend) -> float | None:
            scorer = self._backend(backend)
            if not isinstance(backend, Scores) or not isinstance(scorer, Scores):
                return None
            joined = backend.encode(merge_text([*prompt.pieces, text]))
            keep = common_prefix(prompt.ids, joined)
            return float(scorer.log_likelihood(joined[:keep], joined[keep:]))

        return self.runtime.run_sync(run)

    def close(self) -> None:
        for engine in self._contexts.values():
            engine.close()
        self._contexts.clear()
        self.runtime.shutdown()
