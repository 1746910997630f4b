"""`fimble explain FILE:START-END`: the same explanation as the LSP command, streamed to stdout."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

from fimble.agent.context import CodeContext, EngineContext, NoContext
from fimble.agent.explain import ExplainRequest, explain
from fimble.agent.history import repo_root
from fimble.cli.common import print_json
from fimble.cli.complete import read_document
from fimble.errors import DocumentError
from fimble.model.backend import CancelToken
from fimble.model.runtime import ModelRuntime
from fimble.settings import Settings

_RANGE = re.compile(r"^(?P<file>.+):(?P<start>\d+)(?:-(?P<end>\d+))?$")
# The first run on a large repository indexes on the fly; this bounds it (nearest directories first).
CLI_INDEX_SECONDS = 8.0
CLI_INDEX_MAX_FILES = 5000


def parse_range(text: str) -> tuple[Path, int, int]:
    """FILE:START-END (1-based, inclusive) or FILE:LINE."""
    m = _RANGE.match(text)
    if not m:
        raise DocumentError(f"Expected FILE:START-END (1-based lines), got {text!r}.")
    start = int(m["start"])
    end = int(m["end"] or start)
    if start < 1 or end < start:
        raise DocumentError(f"Lines are 1-based and START <= END; got {start}-{end}.")
    return Path(m["file"]), start, end


def run_explain(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    path, first, last = parse_range(args.location)
    doc = read_document(path)
    if last > doc.line_count:
        raise DocumentError(f"Line {last} is past the end of {path} ({doc.line_count} lines).")
    start = doc.offset_at(first - 1, 0)
    end = doc.offset_at(last - 1, len(doc.line(last - 1)))
    settings = Settings.from_env().merged(overrides)
    root = repo_root(path, trusted=settings.workspace_trusted) or path.resolve().parent
    rel = path.resolve().relative_to(root).as_posix() if path.resolve().is_relative_to(root) else path.name
    engine = None
    context: CodeContext = NoContext()
    if settings.context_sources:
        from fimble.context.engine import ContextEngine

        engine = ContextEngine(root, max_files=CLI_INDEX_MAX_FILES, trusted=settings.workspace_trusted)
        engine.index_now(time_limit=CLI_INDEX_SECONDS, near=rel)
        context = EngineContext(engine)
    request = ExplainRequest(
        uri=doc.uri,
        text=doc.text,
        language_id=doc.language_id,
        path=rel,
        start=start,
        end=end,
        settings=settings,
        file_path=path.resolve(),
        context=context,
    )

    def write(delta: str) -> None:  # from the model worker: stdout is only written by it while generating
        sys.stdout.write(delta)
        sys.stdout.flush()

    runtime = ModelRuntime()
    started = time.monotonic()
    try:
        runtime.load(settings)
        backend = runtime.backend_sync()
        result = asyncio.run(explain(runtime, request, CancelToken(), None if args.json else write))
    finally:
        runtime.shutdown()
        if engine is not None:
            engine.close()
    info = backend.info
    if args.json:
        print_json({"model": info.name, **result.to_dict()})
    else:
        if not result.markdown.endswith("\n"):
            sys.stdout.write("\n")
        g = result.generation
        tokens = g.generated_tokens if g else 0
        print(
            f"[{info.name}, {result.style} prompt] {tokens} tokens, {(time.monotonic() - started):.1f} s",
            file=sys.stderr,
        )
    return 0
