"""One typing replay into `fimble serve`: a keystroke, the editor's debounce pause, an inline completion request
whose answer the typist waits for, the exact prompt (`fimble/debugPrompt`, untimed), and the baselines run on the
same request right away."""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from fimble.settings import Settings
from fimble_dev.baselines import BareLlama, Peer
from fimble_dev.lsp_client import (
    debug_prompt,
    first_item,
    initialize,
    make_client,
    plain,
    position,
    server_env,
    start_server,
    stop_server,
    wait_ready,
)
from fimble_dev.record import NextEditAsk, Request, Session, take_status
from fimble_dev.typist import Typist, region_end, start_offset


async def run_session(
    args: argparse.Namespace,
    overrides: dict[str, Any],
    work: Path,
    bare: BareLlama | None = None,
    peer: Peer | None = None,
) -> Session:
    file = Path(args.file).resolve()
    text = file.read_text(encoding="utf-8")
    start = start_offset(text, args.line, str(file))
    end = region_end(text, start, max(200, args.limit * 3), str(file))
    typist = Typist(
        before=text[:start],
        region=text[start:end],
        after=text[end:],
        rng=random.Random(args.seed),
        accept_rate=args.accept_rate,
        typo_rate=args.typo_rate,
    )
    init_options = {k: v for k, v in overrides.items() if v is not None}
    root = Path(args.root).resolve() if args.root else file.parent
    uri = file.as_uri()
    log_path = work / "server.log"
    client = make_client(init_options)
    await start_server(client, log_path, server_env())
    session = Session()
    try:
        await initialize(client, root, init_options)
        ready = await wait_ready(client, args.load_timeout)
        session.model = str(ready.get("model", ""))
        m = re.search(r"loaded in (\d+) ms", str(ready.get("message", "")))
        session.load_ms = float(m.group(1)) if m else None
        version = 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=typist.text)
            )
        )
        # A person looks at a file before typing; the server uses that time (KV warm-up, indexing).
        await asyncio.sleep(args.settle_ms / 1000)
        suggestion = ""
        pending: list[asyncio.Task[None]] = []
        max_tokens = Settings.from_env().merged(overrides).max_tokens
        while session.keystrokes < args.limit and not typist.done:
            before_text = typist.text
            kind, a, b, new = typist.next_action(suggestion)
            version += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                    content_changes=[
                        types.TextDocumentContentChangePartial(
                            range=types.Range(start=position(before_text, a), end=position(before_text, b)), text=new
                        )
                    ],
                )
            )
            t_key = time.monotonic()
            session.keystrokes += 1
            session.actions[kind] = session.actions.get(kind, 0) + 1
            await asyncio.sleep(args.debounce_ms / 1000)
            req = Request(index=len(session.requests), action=kind, offset=typist.offset)
            doc = typist.text
            req.prefix, req.suffix = doc[: req.offset], doc[req.offset :]
            pos = position(doc, req.offset)
            n_status = len(client.statuses)
            t_req = time.monotonic()
            try:
                result = await asyncio.wait_for(
                    client.text_document_inline_completion_async(
                        types.InlineCompletionParams(
                            text_document=types.TextDocumentIdentifier(uri=uri),
                            position=pos,
                            context=types.InlineCompletionContext(
                                trigger_kind=types.InlineCompletionTriggerKind.Automatic
                            ),
                        )
                    ),
                    timeout=args.request_timeout,
                )
            except Exception as exc:  # a failed request is a data point, not the end of the run
                req.error = f"{type(exc).__name__}: {exc}"
                session.requests.append(req)
                suggestion = ""
                continue
            t_resp = time.monotonic()
            req.latency_ms = (t_resp - t_req) * 1000
            req.key_to_suggestion_ms = (t_resp - t_key) * 1000
            suggestion = first_item(result)
            req.suggestion = suggestion
            take_status(req, [s for _, s in client.statuses[n_status:]], session)
            try:
                debug = await debug_prompt(client, uri, pos, args.request_timeout)
                req.prompt = str(debug.get("prompt", ""))
                req.prompt_format = str(debug.get("format", ""))
                req.prompt_tokens_debug = int(debug["tokens"]) if "tokens" in debug else None
            except Exception as exc:
                req.error = req.error or f"debugPrompt: {type(exc).__name__}: {exc}"
            # The comparisons run right away, while the server idles: measured back to back, the three figures
            # for a request see the same machine load (on a shared machine it drifts over minutes).
            req.tokens_to_generate = tokens_to_generate(req, bare, max_tokens)
            for other in (bare, peer):
                if other is not None:
                    await asyncio.to_thread(other.run, req)
            session.requests.append(req)
            if getattr(args, "next_edit", False) and not suggestion:
                # No ghost text: a client asks for a next edit now, without waiting for it; the next keystroke's
                # completion goes first (the server cancels the next edit).
                pending.append(asyncio.create_task(ask_next_edit(client, uri, version, pos, session)))
        await asyncio.gather(*pending)
    finally:
        # The server may already be gone; what matters is that it is stopped either way.
        await stop_server(client)
    return session


async def ask_next_edit(client: Any, uri: str, version: int, pos: types.Position, session: Session) -> None:
    ask = NextEditAsk()
    session.next_edits.append(ask)
    params = {
        "textDocument": {"uri": uri, "version": version},
        "position": {"line": pos.line, "character": pos.character},
    }
    started = time.monotonic()
    try:
        result = plain(await client.protocol.send_request_async("fimble/nextEdit", params))
    except JsonRpcException as exc:
        ask.outcome = "cancelled" if exc.code in (-32800, -32801) else "error"
        ask.reason = str(exc)
        return
    except Exception as exc:
        ask.outcome, ask.reason = "error", f"{type(exc).__name__}: {exc}"
        return
    ask.latency_ms = (time.monotonic() - started) * 1000
    ask.outcome = "edits" if result.get("edits") else "empty"
    ask.reason = str(result.get("reason", ""))
    ask.timings_ms = {k: float(v) for k, v in (result.get("timingsMs") or {}).items()}


def tokens_to_generate(req: Request, bare: BareLlama | None, max_tokens: int) -> int:
    if req.generated_tokens:
        n = req.generated_tokens
    elif bare is not None:
        n = len(bare.llm.tokenize(req.suggestion.encode("utf-8"), add_bos=False)) + 1  # + the stop token
    else:
        n = len(req.suggestion) // 3 + 1
    return max(1, min(n, max_tokens))
