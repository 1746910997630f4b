"""`fimble complete FILE:LINE:COL`: the same pipeline as the LSP handler, from the command line."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fimble.cli.common import print_json
from fimble.completion.pipeline import CompletionRequest, complete
from fimble.context.engine import ContextEngine
from fimble.documents.document import Document
from fimble.errors import DocumentError
from fimble.index.gitinfo import GitInfo
from fimble.languages import language_from_path
from fimble.model.backend import CancelToken
from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings

_LOCATION = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+)$")


def parse_location(text: str) -> tuple[Path, int, int]:
    m = _LOCATION.match(text)
    if not m:
        raise DocumentError(f"Expected FILE:LINE:COL (1-based), got {text!r}.")
    return Path(m["file"]), int(m["line"]), int(m["col"])


def read_document(path: Path) -> Document:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{path} is not UTF-8 text (byte {exc.start} is invalid).") from None
    return Document(uri=path.resolve().as_uri(), text=text, language_id=language_from_path(path))


def cursor_offset(doc: Document, line: int, col: int) -> int:
    """String index of a 1-based LINE:COL, COL counted in characters."""
    if line < 1 or col < 1:
        raise DocumentError(f"LINE and COL are 1-based; got {line}:{col}.")
    if line > doc.line_count:
        raise DocumentError(f"Line {line} is past the end of the file ({doc.line_count} lines).")
    text = doc.line(line - 1)
    if col > len(text) + 1:
        raise DocumentError(f"Column {col} is past the end of line {line} ({len(text)} characters).")
    return doc.offset_at(line - 1, 0) + col - 1


# `fimble complete` indexes the file's repository on the fly (the persisted index makes later runs cheap); this
# bounds the first run on a large repository, nearest directories first.
CLI_INDEX_SECONDS = 8.0
CLI_INDEX_MAX_FILES = 5000


def workspace_root(path: Path, *, trusted: bool) -> Path:
    """The git work tree holding `path`, else its folder."""
    folder = path.resolve().parent
    git = GitInfo.discover(folder, trusted=trusted)
    return git.repo_root if git is not None else folder


def time_budget_s(settings: Settings, overrides: dict[str, Any], environ: Mapping[str, str]) -> float | None:
    """The CLI's time budget: none unless asked for by flag or environment. A one-shot command has no second request
    to finish what a budget cut (the server has one): it waits for the whole answer."""
    asked = "time_budget_ms" in overrides or "FIMBLE_TIME_BUDGET_MS" in environ
    return settings.time_budget_ms / 1000 if asked else None


def run_complete(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    path, line, col = parse_location(args.location)
    doc = read_document(path)
    offset = cursor_offset(doc, line, col)
    settings = Settings.from_env().merged(overrides)
    engine: ContextEngine | None = None
    rel = path.name
    index_ms = 0.0
    runtime = ModelRuntime()
    try:
        runtime.load(settings)  # loads on the runtime's thread while the repository is indexed here
        if settings.context_sources:
            trusted = settings.workspace_trusted
            engine = ContextEngine(
                workspace_root(path, trusted=trusted), max_files=CLI_INDEX_MAX_FILES, trusted=trusted
            )
            rel = engine.rel_path(doc.uri) or path.name
            t0 = time.monotonic()
            engine.index_now(time_limit=CLI_INDEX_SECONDS, near=rel)
            index_ms = (time.monotonic() - t0) * 1000
        backend = runtime.backend_sync()
        request = CompletionRequest(
            text=doc.text,
            offset=offset,
            language_id=doc.language_id,
            path=rel,
            settings=settings,
            uri=doc.uri,
            context=engine,
            repo=engine.root.name if engine is not None and engine.root is not None else "",
        )
        budget = CancelToken(budget_s=time_budget_s(settings, overrides, os.environ))  # starts once loaded
        result = runtime.run_sync(lambda b: complete(b, request, budget), budget)
    finally:
        runtime.shutdown()
        if engine is not None:
            engine.close()
    info = backend.info
    if args.show_prompt:
        print("----- prompt -----", file=sys.stderr)
        print(result.prompt.labelled(), file=sys.stderr)
        print("----- end of prompt -----", file=sys.stderr)
    stats = result.stats()
    if args.json:
        print_json(
            {
                "suggestion": result.text,
                "raw": result.generation.text,
                "model": info.name,
                "format": info.format.name,
                "load_ms": round(info.load_ms, 1),
                **stats,
                "prompt_parts": [
                    {"source": p.source, "tokens": p.tokens, "ms": round(p.ms, 2)} for p in result.prompt.parts
                ],
                "index_ms": round(index_ms, 1),
                **({"prompt": result.prompt.text()} if args.show_prompt else {}),
            }
        )
    else:
        sys.stdout.write(result.text + ("\n" if result.text and not result.text.endswith("\n") else ""))
        if result.empty_reason:
            print(f"fimble: no suggestion: {result.empty_reason}", file=sys.stderr)
        print(
            f"[{info.name}, {info.format.name}] load {info.load_ms:.0f} ms | prompt {stats['prompt_tokens']} tok "
            f"(reused {stats['reused_tokens']}) {stats['prompt_eval_ms']} ms | generated {stats['generated_tokens']} "
            f"tok {stats['generate_ms']} ms ({stats['tokens_per_second']} tok/s, {stats['stop_reason']}) | "
            f"build {stats['prompt_build_ms']} ms, filters {stats['filters_ms']} ms, total {stats['total_ms']} ms",
            file=sys.stderr,
        )
    return 0
