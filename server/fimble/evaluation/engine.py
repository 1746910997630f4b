"""The one place the harness turns a file and a cursor into a pipeline call.

Context (scope, cross-file definitions, recent edits, git) belongs to the pipeline and its `context_sources`
setting: the harness gives it a real workspace on disk and the project's own context engine over that workspace
(indexed synchronously, as a command-line caller does), never snippets of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

from fimble.completion.pipeline import Completion, CompletionRequest, build_prompt, complete
from fimble.context.engine import ContextEngine
from fimble.documents.languages import language_from_path
from fimble.model.backend import CancelToken, ModelBackend, ModelInfo
from fimble.model.prompt_states import common_prefix
from fimble.model.runtime import ModelRuntime
from fimble.prompt.assemble import Prompt
from fimble.prompt.formats import merge_text
from fimble.settings import Settings

# Seconds the context engine's background worker may take to re-read a file the harness rewrote.
_REINDEX_TIMEOUT_S = 30.0


class Engine:
    """The model loaded once through the same runtime as the CLI and the server; completions run on its worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = ModelRuntime()
        self.runtime.load(settings)
        self._contexts: dict[Path, ContextEngine] = {}
        try:
            self.info: ModelInfo = self.runtime.backend_sync().info
        except BaseException:
            self.runtime.shutdown()
            raise

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
        # No deadline, like `fimble complete`: quality should not depend on how loaded the machine is. The server's
        # time budget is a latency feature, measured by the latency benchmark instead.
        return self.runtime.run_sync(lambda backend: complete(backend, request, CancelToken()))

    def prompt(self, root: Path, rel_path: str, text: str, offset: int, settings: Settings) -> Prompt:
        """The prompt the pipeline would send, without generating (for scoring the true line alone)."""
        request = self._request(root, rel_path, text, offset, settings)
        return self.runtime.run_sync(lambda backend: build_prompt(backend, request))

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
            scorer = getattr(backend, "log_likelihood", None)
            if scorer is None:
                return None
            joined = backend.encode(merge_text([*prompt.pieces, text]))
            keep = common_prefix(prompt.ids, joined)
            return float(scorer(joined[:keep], joined[keep:]))

        return self.runtime.run_sync(run)

    def close(self) -> None:
        for engine in self._contexts.values():
            engine.close()
        self._contexts.clear()
        self.runtime.shutdown()
