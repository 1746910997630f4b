"""Owns the loaded model and the single worker thread every model call runs on.

llama.cpp contexts are not thread-safe and two generations at once would only halve each one's speed, so all
model work (load, warm, generate) is serialised on one thread, off the LSP event loop. Requests that arrive while
the model loads simply queue behind the load. A newer request for the same key (a document) cancels the older one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from fimble.errors import FimbleError, ModelError, SettingsError
from fimble.model.backend import CancelToken, ModelBackend, ReportsStatus, RoutesCalls
from fimble.model.gguf_meta import read_header
from fimble.model.resolve import ResolvedModel, resolve_model
from fimble.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
State = Literal["idle", "loading", "ready", "error"]
StatusListener = Callable[[State, str], None]
BackendFactory = Callable[[ResolvedModel, Settings], ModelBackend]

# Settings whose change needs the model loaded again.
LOAD_KEYS = ("model", "n_ctx", "n_threads", "n_gpu_layers", "n_batch")
# ... and, for a remote engine (read with getattr: 'remote_model' and 'prompt_format' may not exist yet).
REMOTE_KEYS = ("backend", "url", "api_key_env", "request_timeout_ms", "fallback_model", "remote_model", "prompt_format")
BACKENDS = ("llama.cpp", "llama-server", "openai")


class Cancelled(Exception):
    """The request was cancelled or superseded before or while it ran."""


def load_llama_cpp(resolved: ResolvedModel, settings: Settings) -> ModelBackend:
    from fimble.model.llama_cpp_backend import LlamaCppBackend

    return LlamaCppBackend(resolved.path, settings, read_header(resolved.path))


def is_remote(settings: Settings) -> bool:
    return settings.backend != "llama.cpp"


def resolve_for(settings: Settings) -> ResolvedModel:
    """The model file for the in-process engine; a remote engine needs no local file (the embedded default model
    is not even looked for), so 'origin' names the server instead."""
    if not is_remote(settings):
        return resolve_model(settings.model)
    return ResolvedModel(Path(settings.url or ""), f"{settings.backend} at {settings.url}")


def load_backend(resolved: ResolvedModel, settings: Settings) -> ModelBackend:
    """The engine named by the 'backend' setting. A remote engine comes wrapped in a `RemoteSession`: it reports
    the server's state to the client and answers from 'fallbackModel' (a local .gguf) while the server is down."""
    if settings.backend == "llama.cpp":
        return load_llama_cpp(resolved, settings)
    from fimble.model.remote.fallback import RemoteSession
    from fimble.model.remote.llama_server import LlamaServerBackend
    from fimble.model.remote.openai_compat import OpenAICompatBackend

    remote: LlamaServerBackend | OpenAICompatBackend
    if settings.backend == "llama-server":
        remote = LlamaServerBackend(settings)
    elif settings.backend == "openai":
        remote = OpenAICompatBackend(settings)
    else:
        raise SettingsError(f"Unknown 'backend' {settings.backend!r}; use one of: {', '.join(BACKENDS)}.")
    fallback_path = settings.fallback_model
    loader: Callable[[], ModelBackend] | None = None
    if fallback_path:
        fallback = ResolvedModel(Path(fallback_path).expanduser(), "fallbackModel")
        loader = functools.partial(load_llama_cpp, fallback, settings)
    session = RemoteSession(remote, loader, Path(fallback_path).name if fallback_path else "")
    session.connect()  # an unreachable server is not a load failure: it may come up later, and the fallback works
    return session


def run_on(backend: ModelBackend, fn: Callable[[ModelBackend], T]) -> T:
    """Run one request; a remote session picks the server or the fallback model for the whole of it."""
    if isinstance(backend, RoutesCalls):
        return backend.call(fn)
    return fn(backend)


@dataclass(frozen=True)
class FileIdentity:
    """What says a file is still the one that was loaded: a rewrite in place changes size or mtime, a replacement
    (os.replace, a download) the inode."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @staticmethod
    def of(path: Path) -> FileIdentity:
        """The file's identity now; all -1 when it cannot be seen (missing, unreadable folder)."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return FileIdentity(-1, -1, -1, -1)
        return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class LoadOutcome:
    """The result of the latest load. Updated in place when the model file changes and is loaded again, so every
    request queued with it finds the current model."""

    backend: ModelBackend | None
    error: FimbleError | None
    resolved: ResolvedModel | None
    settings: Settings | None = None
    # The local model file's identity when its load began; None: nothing to watch (a remote engine, no file).
    identity: FileIdentity | None = None


class ModelRuntime:
    def __init__(self, factory: BackendFactory = load_backend) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fimble-model")
        self._factory = factory
        self._load: Future[LoadOutcome] | None = None
        self._loaded_with: Settings | None = None
        self._listeners: list[StatusListener] = []
        self._latest: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self.state: State = "idle"
        self.model_name: str | None = None  # of the model loaded last, set before "ready" is announced

    def on_status(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def _set_state(self, state: State, message: str) -> None:
        self.state = state
        for listener in self._listeners:
            try:
                listener(state, message)
            except Exception:  # a listener must never break the runtime
                log.exception("status listener failed")

    # -- loading -----------------------------------------------------------------------------------------
    def needs_reload(self, settings: Settings) -> bool:
        old = self._loaded_with
        if old is None:
            return True
        keys = LOAD_KEYS + (REMOTE_KEYS if is_remote(old) or is_remote(settings) else ("backend",))
        return any(getattr(old, k, None) != getattr(settings, k, None) for k in keys)

    def load(self, settings: Settings) -> Future[LoadOutcome]:
        """Queue a (re)load on the worker; requests submitted after this run with the new model."""
        self._loaded_with = settings
        previous = self._load
        self._set_state("loading", "loading model")

        def job() -> LoadOutcome:
            old = previous.result() if previous is not None else None
            if old is not None and old.backend is not None:
                old.backend.close()  # free memory before the new model is loaded
                old.backend = None
            outcome = LoadOutcome(None, None, None, settings)
            self._load_into(outcome)
            return outcome

        self._load = self._executor.submit(job)
        return self._load

    def _load_into(self, outcome: LoadOutcome) -> None:
        """Load `outcome.settings`' model on the worker thread, recording the result (and the file's identity
        before the load read it) in `outcome`."""
        settings = outcome.settings
        assert settings is not None
        outcome.backend, outcome.error, outcome.identity = None, None, None
        try:
            outcome.resolved = resolved = resolve_for(settings)
            if not is_remote(settings):
                outcome.identity = FileIdentity.of(resolved.path)
            backend = self._factory(resolved, settings)
        except FimbleError as exc:
            self.model_name = None
            outcome.error = exc
            self._set_state("error", str(exc))
            return
        except Exception as exc:  # an unexpected failure in llama.cpp must not take the server down
            log.exception("model load failed")
            self.model_name = None
            outcome.error = ModelError(f"Loading the model failed: {exc}")
            self._set_state("error", str(outcome.error))
            return
        outcome.backend = backend
        if isinstance(backend, ReportsStatus):
            # A remote session reports the server's state itself, now and whenever it changes.
            def remote_status(state: State, message: str, session: ModelBackend = backend) -> None:
                self.model_name = session.info.name
                self._set_state(state, message)

            backend.bind_status(remote_status)
            return
        info = backend.info
        self.model_name = info.name
        self._set_state(
            "ready",
            f"{info.name} ({info.format.name} format) loaded in {info.load_ms:.0f} ms from {resolved.origin}",
        )

    def _current(self, outcome: LoadOutcome) -> ModelBackend:
        """On the worker, before each request: the loaded backend, loaded again first when its file changed on disk
        since (rewritten in place, replaced, deleted). The model is held in memory (no mmap), so a change cannot
        crash a request in flight; this makes the next one use the new file, or report why it cannot be loaded."""
        if outcome.identity is not None and outcome.resolved is not None:
            now = FileIdentity.of(outcome.resolved.path)
            if now != outcome.identity:
                path = outcome.resolved.path
                log.warning(
                    "the model file %s changed on disk (%s, was %s); loading it again", path, now, outcome.identity
                )
                self._set_state("loading", f"the model file {path.name} changed on disk; loading it again")
                if outcome.backend is not None:
                    outcome.backend.close()
                self._load_into(outcome)
        return _backend_of(outcome)

    async def backend(self) -> ModelBackend:
        """The loaded backend, waiting for a load in progress; raises the load's error."""
        if self._load is None:
            raise ModelError("No model has been loaded yet.")
        outcome = await asyncio.wrap_future(self._load)
        return _backend_of(outcome)

    def backend_sync(self) -> ModelBackend:
        if self._load is None:
            raise ModelError("No model has been loaded yet.")
        return _backend_of(self._load.result())

    @property
    def loaded(self) -> ModelBackend | None:
        if self._load is None or not self._load.done():
            return None
        return self._load.result().backend

    # -- running -----------------------------------------------------------------------------------------
    def token_for(self, key: str | None, deadline_ms: int | None = None) -> CancelToken:
        """A cancel token for a new request; cancels the previous request with the same key (newest wins). Its
        `deadline_ms` budget starts when the request reaches the model."""
        token = CancelToken(budget_s=deadline_ms / 1000 if deadline_ms else None)
        if key is not None:
            with self._lock:
                old = self._latest.get(key)
                if old is not None:
                    old.cancel()
                self._latest[key] = token
        return token

    def cancel(self, key: str) -> None:
        """Cancel the request running under `key` and stop tracking the key."""
        with self._lock:
            token = self._latest.pop(key, None)
        if token is not None:
            token.cancel()

    def forget(self, key: str) -> None:
        """Stop tracking `key` (a closed document's) and let what runs under it finish: one token per key would
        otherwise stay for every document ever opened."""
        with self._lock:
            self._latest.pop(key, None)

    def tracked_keys(self) -> list[str]:
        """The keys whose newest request is tracked (for tests)."""
        with self._lock:
            return list(self._latest)

    def submit(self, fn: Callable[[ModelBackend], T], cancel: CancelToken) -> Future[T]:
        """Run `fn(backend)` on the worker after any load in progress; skipped if cancelled before it starts."""
        load = self._load

        def job() -> T:
            if load is None:
                raise ModelError("No model has been loaded yet.")
            backend = self._current(load.result())  # a changed model file is loaded again here, off the budget
            if cancel.cancelled:
                raise Cancelled()
            cancel.start()
            return run_on(backend, fn)

        return self._executor.submit(job)

    async def run(
        self,
        fn: Callable[[ModelBackend], T],
        cancel: CancelToken,
        on_abandoned: Callable[[Future[T]], None] | None = None,
    ) -> T:
        """Await `fn` on the worker. If the caller is cancelled ($/cancelRequest), the generation is told to stop
        and `on_abandoned` later receives the finished future (for logging what the cancel saved)."""
        future = self.submit(fn, cancel)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancel.cancel()
            if on_abandoned is not None:
                future.add_done_callback(on_abandoned)
            raise

    def run_sync(self, fn: Callable[[ModelBackend], T], cancel: CancelToken | None = None) -> T:
        return self.submit(fn, cancel or CancelToken()).result()

    def cancel_all(self) -> None:
        """Tell every keyed request, queued or running, to stop (shutdown, exit)."""
        with self._lock:
            tokens = list(self._latest.values())
        for token in tokens:
            token.cancel()

    def shutdown(self) -> None:
        self.cancel_all()
        load = self._load
        if load is not None:

            def close() -> None:
                outcome = load.result()
                if outcome.backend is not None:
                    outcome.backend.close()

            self._executor.submit(close)
        self._executor.shutdown(wait=True, cancel_futures=True)


def _backend_of(outcome: LoadOutcome) -> ModelBackend:
    if outcome.backend is None:
        raise outcome.error or ModelError("The model is not loaded.")
    return outcome.backend
