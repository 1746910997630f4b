"""The context engine inside the real completion pipeline (tiny GGUF models through llama.cpp), the CLI and the
LSP server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lsprotocol import types

from fimble.completion.pipeline import CompletionRequest, build_prompt
from fimble.context.engine import ContextEngine
from fimble.model.backend import ModelBackend
from fimble.model.resolve import resolve_model
from fimble.model.runtime import load_llama_cpp
from fimble.prompt.budget import CONTEXT_SHARE
from fimble.settings import Settings
from tests.conftest import open_doc, server_env, start_client
from tests.context.conftest import ALL, SECRET

MAIN = "app/main.py"


def _backend(path: Path, n_ctx: int = 2048) -> Iterator[ModelBackend]:
    settings = Settings(model=str(path), n_ctx=n_ctx, n_threads=1)
    backend = load_llama_cpp(resolve_model(settings.model), settings)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def fim_backend(tiny_fim_model: Path) -> Iterator[ModelBackend]:
    yield from _backend(tiny_fim_model)


@pytest.fixture(scope="module")
def plain_backend(tiny_model: Path) -> Iterator[ModelBackend]:
    yield from _backend(tiny_model, n_ctx=1024)


def request(root: Path, engine: ContextEngine | None, marker: str, sources: tuple[str, ...] = ALL) -> CompletionRequest:
    text = (root / MAIN).read_text()
    return CompletionRequest(
        text=text,
        offset=text.index(marker) + len(marker),
        language_id="python",
        path=MAIN,
        settings=Settings(context_sources=sources, max_tokens=16),
        uri=(root / MAIN).as_uri(),
        context=engine,
        repo="repo",
    )


def test_multi_file_prompt_carries_labelled_context(
    fim_backend: ModelBackend, engine_ro: ContextEngine, repo_ro: Path
) -> None:
    prompt = build_prompt(fim_backend, request(repo_ro, engine_ro, "m = midpoint(a, b)\n"))
    text = prompt.text()
    assert "<|file_sep|>pkg/geometry.py\n" in text
    assert "def midpoint(a: Point, b: Point) -> Point:" in text
    assert SECRET not in text
    sources = [p.source for p in prompt.parts]
    assert sources[0] == "repo" and sources[-1] == "cursor window"
    assert {"definitions", "git", "scope", "ring", "syntax"} <= set(sources)
    assert all(p.ms >= 0 for p in prompt.parts)
    assert len(prompt.ids) <= fim_backend.info.n_ctx - 16
    # the cursor part comes last, the context before it
    assert text.index("def midpoint(a: Point") < text.index("<|fim_prefix|>")


def test_context_none_keeps_only_the_cursor_window(
    fim_backend: ModelBackend, engine_ro: ContextEngine, repo_ro: Path
) -> None:
    prompt = build_prompt(fim_backend, request(repo_ro, engine_ro, "m = midpoint(a, b)\n", sources=()))
    assert [p.source for p in prompt.parts] == ["repo", "cursor window"]
    assert "pkg/geometry.py" not in prompt.text()


def test_prefix_only_prompt_shows_context_as_code_under_file_comments(
    plain_backend: ModelBackend, engine_ro: ContextEngine, repo_ro: Path
) -> None:
    assert not plain_backend.info.format.uses_suffix
    prompt = build_prompt(plain_backend, request(repo_ro, engine_ro, "m = midpoint(a, b)\n"))
    text = prompt.text()
    # code a base model can copy from, each piece under a comment naming its file, then the current file's name
    assert "# pkg/geometry.py\n" in text and "\ndef midpoint(a: Point, b: Point) -> Point:" in text
    window = prompt.parts[-1].text
    assert text.index("def midpoint(a: Point") < text.index(f"# {MAIN}\n") < text.index(window)
    assert len(prompt.ids) <= plain_backend.info.n_ctx - 16


def test_consecutive_keystrokes_share_the_context_prefix(
    fim_backend: ModelBackend, engine_ro: ContextEngine, repo_ro: Path
) -> None:
    first = build_prompt(fim_backend, request(repo_ro, engine_ro, "m = midpoint(a, b)\n"))
    second = build_prompt(fim_backend, request(repo_ro, engine_ro, "m = midpoint(a, b)\n    helper"))
    shared = 0
    for a, b in zip(first.ids, second.ids, strict=False):
        if a != b:
            break
        shared += 1
    context_tokens = sum(p.tokens for p in first.parts if p.source not in ("cursor window",))
    assert shared >= context_tokens


def _budget_workspace(root: Path, lines: int) -> tuple[ContextEngine, CompletionRequest, CompletionRequest]:
    """A package whose `app.py` has `lines` statements before the cursor, which then uses an imported name; the same
    request with all context sources and with none."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    doc = "".join(
        f"    Line {i} of a docstring long enough to be worth a few hundred tokens of context.\n" for i in range(6)
    )
    names = [f"measure_{i}" for i in range(5)]
    (root / "pkg" / "shapes.py").write_text(
        '"""Shapes."""\n\n\ndef area_of(width: float, height: float) -> float:\n'
        '    """The area of a width by height rectangle."""\n    return width * height\n'
        + "".join(
            f'\n\ndef {name}(x: float) -> float:\n    """{name}.\n\n{doc}    """\n    return x\n' for name in names
        )
    )
    # short lines, every one a statement: the window's start moves to its grid and to a statement by few tokens
    body = "".join(f"v = {i % 10}\n" for i in range(lines))
    text = f"from pkg.shapes import area_of, {', '.join(names)}\n\n{body}total = area_of(2, 3)\n"
    (root / "pkg" / "app.py").write_text(text)
    engine = ContextEngine(root, cache_file=False)
    engine.index_now()
    offset = text.index("total = ")

    def req(sources: tuple[str, ...]) -> CompletionRequest:
        return CompletionRequest(
            text=text, offset=offset, language_id="python", path="pkg/app.py",
            settings=Settings(context_sources=sources, max_tokens=16), uri=(root / "pkg/app.py").as_uri(),
            context=engine,
        )  # fmt: skip

    return engine, req(ALL), req(())


def test_context_never_takes_the_window_of_a_long_file(plain_backend: ModelBackend, tmp_path: Path) -> None:
    """The cursor window of a file longer than the prompt is what it is without context: lines of the file before
    the cursor measured better than cross-file context in their place. Context gets only the room the window
    leaves (the lines its start gives up to sit on the 16-line grid)."""
    engine, with_context, without = _budget_workspace(tmp_path, 600)
    try:
        on = build_prompt(plain_backend, with_context)
        off = build_prompt(plain_backend, without)
    finally:
        engine.close()
    assert off.parts[-1].text != with_context.prefix  # the file is longer than the prompt: its window is cut
    assert on.parts[-1].text == off.parts[-1].text
    context = sum(p.tokens for p in on.parts if p.source != "cursor window")
    assert context <= plain_backend.info.n_ctx - 16 - 16 - len(off.ids) + 16  # within the room the window left
    assert len(on.ids) <= plain_backend.info.n_ctx - 16


def test_context_fills_the_room_a_short_file_leaves(plain_backend: ModelBackend, tmp_path: Path) -> None:
    engine, with_context, without = _budget_workspace(tmp_path, 20)
    try:
        on = build_prompt(plain_backend, with_context)
        off = build_prompt(plain_backend, without)
    finally:
        engine.close()
    assert on.parts[-1].text == off.parts[-1].text == with_context.prefix  # the whole file before the cursor
    assert "def area_of(width: float, height: float) -> float:" in on.text()
    budget = plain_backend.info.n_ctx - 16 - 16
    context = sum(p.tokens for p in on.parts if p.source != "cursor window")
    assert 0 < context <= int(budget * CONTEXT_SHARE) + 16


def fimble(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fimble", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_cli_complete_indexes_and_shows_the_prompt(tiny_fim_model: Path, repo_ro: Path, tmp_path: Path) -> None:
    env = server_env(FIMBLE_CACHE_DIR=str(tmp_path / "cache"))
    location = f"{repo_ro / MAIN}:9:5"
    out = fimble("complete", location, "--model", str(tiny_fim_model), "--json", "--show-prompt", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "def midpoint(a: Point, b: Point) -> Point:" in data["prompt"]
    assert SECRET not in data["prompt"]
    parts = {p["source"]: p for p in data["prompt_parts"]}
    assert parts["definitions"]["tokens"] > 0 and "ms" in parts["definitions"]
    assert "--- definitions:" in out.stderr and " ms" in out.stderr  # the labelled prompt
    assert list((tmp_path / "cache" / "index").glob("*.json"))  # persisted for the next run
    off = fimble("complete", location, "--model", str(tiny_fim_model), "--json", "--context", "none", env=env)
    assert off.returncode == 0, off.stderr
    assert [p["source"] for p in json.loads(off.stdout)["prompt_parts"]] == ["cursor window"]


async def test_lsp_indexes_with_progress_and_follows_saves(tiny_fim_model: Path, repo: Path, tmp_path: Path) -> None:
    client, _ = await start_client(model=tiny_fim_model, root=repo, env={"FIMBLE_CACHE_DIR": str(tmp_path / "cache")})
    try:
        uri = (repo / MAIN).as_uri()
        text = (repo / MAIN).read_text()
        open_doc(client, uri, text)

        def ended() -> bool:
            return any(
                str(token).startswith("fimble-index-") and isinstance(reports[-1], types.WorkDoneProgressEnd)
                for token, reports in client.progress_reports.items()
                if reports
            )

        for _ in range(300):
            if ended():
                break
            await asyncio.sleep(0.05)
        assert ended(), client.progress_reports

        async def debug_prompt(line: int, character: int) -> object:
            return await client.protocol.send_request_async(
                "fimble/debugPrompt",
                {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
            )

        prompt = await debug_prompt(7, 22)
        assert "def midpoint(a: Point, b: Point) -> Point:" in prompt.prompt  # type: ignore[attr-defined]
        assert SECRET not in prompt.prompt  # type: ignore[attr-defined]
        sources = {p.source for p in prompt.parts}  # type: ignore[attr-defined]
        assert "definitions" in sources and "git" in sources

        # a new function saved in another file is found after didSave
        geometry = repo / "pkg/geometry.py"
        geometry.write_text(geometry.read_text() + "\n\ndef brand_new_helper(z: int) -> int:\n    return z\n")
        client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=geometry.as_uri()))
        )
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=types.Position(9, 12), end=types.Position(9, 12)),
                        text="\n    brand_new_helper(1)",
                    )
                ],
            )
        )
        found = False
        for _ in range(100):
            prompt = await debug_prompt(10, 23)
            if "def brand_new_helper(z: int) -> int: ..." in prompt.prompt:  # type: ignore[attr-defined]
                found = True
                break
            await asyncio.sleep(0.05)
        assert found
    finally:
        await client.shutdown_session()
        await client.stop()
