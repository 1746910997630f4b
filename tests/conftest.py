"""Shared fixtures: tiny real GGUF models (random weights, real llama.cpp path) and a pytest-lsp client."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities, make_test_lsp_client

from fimble_dev.tiny_gguf import FAMILY_SPECIAL_TOKENS, SCRIPTED, TinyModelSpec, write_tiny_gguf

# One thread: on a 2-core machine llama.cpp's spinning workers otherwise fight the test process for the CPU.
TEST_ENV = {"FIMBLE_N_THREADS": "1", "FIMBLE_N_CTX": "2048", "FIMBLE_TIME_BUDGET_MS": "30000"}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Path:
    """A FIM-less tiny model: exercises the prefix-only path like the embedded Gemma model. Scripted: it writes
    `val=fn(x)` (or `ok` when sampled), which survives fimble's filters, so the whole path can be checked."""
    return write_tiny_gguf(models_dir / "tiny-plain.gguf", TinyModelSpec(name="tiny-plain", script=SCRIPTED))


@pytest.fixture(scope="session")
def tiny_random_model(models_dir: Path) -> Path:
    """Random weights: long, printable but meaningless output (for generation length, cancel and deadlines)."""
    return write_tiny_gguf(models_dir / "tiny-random.gguf", TinyModelSpec(name="tiny-random", context_length=8192))


@pytest.fixture(scope="session")
def tiny_fim_model(models_dir: Path) -> Path:
    """A tiny model carrying Qwen2.5-Coder's FIM, repo-name and file-separator tokens."""
    spec = TinyModelSpec(
        name="tiny-qwen-fim", special_tokens=FAMILY_SPECIAL_TOKENS["qwen2.5-coder"], fim_token_ids=True
    )
    return write_tiny_gguf(models_dir / "tiny-qwen.gguf", spec)


@pytest.fixture(scope="session")
def family_model(models_dir: Path) -> Callable[[str], Path]:
    def make(family: str, **kw: Any) -> Path:
        path = models_dir / f"family-{family}.gguf"
        if not path.exists():
            spec = TinyModelSpec(name=f"tiny-{family}", special_tokens=FAMILY_SPECIAL_TOKENS[family], **kw)
            write_tiny_gguf(path, spec)
        return path

    return make


@pytest.fixture(autouse=True)
def _test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TEST_ENV)
    env.update(extra)
    return env


class Recorder:
    """Collects fimble's custom notifications on the test client."""

    def __init__(self) -> None:
        self.status: list[dict[str, Any]] = []
        self.initialize_result: types.InitializeResult | None = None


async def start_client(
    *, model: Path | None, init_options: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
    root: Path | None = None, env: dict[str, str] | None = None,
) -> tuple[LanguageClient, Recorder]:  # fmt: skip
    client = make_test_lsp_client()
    recorder = Recorder()

    @client.feature("fimble/status")
    def on_status(ls: LanguageClient, params: Any) -> None:
        recorder.status.append(params._asdict() if hasattr(params, "_asdict") else dict(params))

    options = dict(init_options or {})
    if model is not None:
        options.setdefault("model", str(model))
    client.set_configuration(config or {}, section="fimble")
    await client.start_io(sys.executable, "-m", "fimble", "serve", env=server_env(**(env or {})))
    root_uri = root.as_uri() if root else None
    recorder.initialize_result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"),
            initialization_options=options,
            root_uri=root_uri,
            workspace_folders=[types.WorkspaceFolder(uri=root_uri, name=root.name)] if root else None,
        )
    )
    return client, recorder


@pytest_asyncio.fixture
async def lsp(tiny_model: Path) -> AsyncIterator[tuple[LanguageClient, Recorder]]:
    client, recorder = await start_client(model=tiny_model)
    yield client, recorder
    await client.shutdown_session()
    await client.stop()


def open_doc(client: LanguageClient, uri: str, text: str, language_id: str = "python", version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=version, text=text)
        )
    )


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    """An automatic (typing) inline completion request."""
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )


async def wait_until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll until `predicate()` holds (a notification arrived, a state was reached); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
