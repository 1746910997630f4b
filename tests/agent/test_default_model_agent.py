"""The embedded Gemma 3 270M (loaded when no model is configured) through a real fix and a real explanation."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import client_capabilities, make_test_lsp_client

from fimble.agent.edits import Replacement, apply_replacements
from fimble.documents.document import Document
from tests.agent.test_lsp_agent import Client, action_params, fimble_diagnostics, get, open_doc, wait_until

URI = "file:///work/project/totals.py"
BROKEN = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    retrun s\n"


def _apply(text: str, edit: types.TextDocumentEdit) -> str:
    doc = Document(uri=URI, text=text)
    reps = []
    for e in edit.edits:
        start = doc.offset_at(e.range.start.line, e.range.start.character)
        end = doc.offset_at(e.range.end.line, e.range.end.character)
        reps.append(Replacement(start, end, getattr(e, "new_text", "")))
    return apply_replacements(text, reps)


@pytest.mark.default_model
async def test_embedded_model_fixes_a_syntax_error_and_explains() -> None:
    lsp = make_test_lsp_client()
    client = Client(lsp)

    @lsp.feature("fimble/status")
    def on_status(ls: Any, params: Any) -> None:
        client.status.append(params._asdict() if hasattr(params, "_asdict") else dict(params))

    @lsp.feature("fimble/explanation")
    def on_explanation(ls: Any, params: Any) -> None:
        client.explanations.append(params._asdict() if hasattr(params, "_asdict") else dict(params))

    env = {k: v for k, v in os.environ.items() if k != "FIMBLE_MODEL"}
    # One thread: on a busy 2-core machine llama.cpp's spinning workers otherwise crawl. The budgets are generous
    # because this test is about the machinery with a real model, not about its speed.
    env.update({"FIMBLE_N_THREADS": "1", "FIMBLE_N_CTX": "2048", "FIMBLE_FIX_TIME_BUDGET_MS": "300000"})
    await lsp.start_io(sys.executable, "-m", "fimble", "serve", env=env)
    try:
        await lsp.initialize_session(types.InitializeParams(capabilities=client_capabilities("visual-studio-code")))
        await wait_until(lambda: any(s["state"] in ("ready", "error") for s in client.status), 120)
        ready = [s for s in client.status if s["state"] == "ready"]
        assert ready and ready[-1]["model"].lower().startswith("gemma 3"), client.status

        open_doc(client, BROKEN, version=2, uri=URI)
        [diag, *_] = await fimble_diagnostics(client, URI)
        assert "retrun" in diag.message
        actions = await lsp.text_document_code_action_async(action_params(diag.range, [diag], URI))
        assert actions
        fix = next(a for a in actions if isinstance(a, types.CodeAction) and a.kind == types.CodeActionKind.QuickFix)
        resolved = await lsp.code_action_resolve_async(fix)
        outcome = get(resolved.data, "outcome")
        assert outcome["status"] == "verified", outcome
        assert resolved.edit is not None and resolved.edit.document_changes
        change = resolved.edit.document_changes[0]
        assert isinstance(change, types.TextDocumentEdit) and change.text_document.version == 2
        fixed = _apply(BROKEN, change)
        compile(fixed, "totals.py", "exec")
        assert "return s" in fixed

        open_doc(client, fixed, version=1, uri=URI.replace("totals", "fixed"))
        result = await lsp.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="fimble.explain",
                arguments=[
                    {
                        "uri": URI.replace("totals", "fixed"),
                        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 4, "character": 12}},
                    }
                ],
            )
        )
        markdown = get(result, "markdown")
        assert markdown.startswith("This code") and len(markdown.split()) > 8
        assert "".join(e["delta"] for e in client.explanations) == markdown
    finally:
        await lsp.shutdown_session()
        await lsp.stop()
