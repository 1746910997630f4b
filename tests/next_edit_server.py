"""`fimble serve` whose model is scripted for next edits, for the editors' end-to-end tests (a tiny random-weight
GGUF never writes a sensible edit). Everything else is the real server over stdio: the edit history, the region, the
generic prompt format, the checks, the protocol.

    python tests/next_edit_server.py OLD NEW [ignored server arguments ...]
    FIMBLE_SCRIPTED_DELAY_S=0.05 python tests/next_edit_server.py OLD NEW   # slow writing

A next-edit request is answered with the editable region as the prompt shows it, the word OLD replaced by NEW
everywhere in it; a completion request gets nothing.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

# Run as a script: the repository root, where `tests` lives, is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fimble.lsp.server import create_server
from fimble.model.runtime import ModelRuntime
from fimble.next_edit.edit_formats import next_edit_format_by_name
from tests.scripted import ScriptedBackend, scripted_factory

# The generic format (the scripted model has no special tokens) shows the region after this heading.
_NOW = re.compile(r", lines \d+-\d+, now\n```[^\n]*\n")


def renaming(old: str, new: str) -> Callable[[str], str]:
    word = re.compile(rf"\b{re.escape(old)}\b")
    fmt = next_edit_format_by_name("generic")

    def answer(prompt: str) -> str:
        found = list(_NOW.finditer(prompt))
        if not found:
            return ""  # a completion: nothing
        start = found[-1].end()
        region = prompt[start : prompt.index(fmt.end, start)]
        return fmt.answer_for(word.sub(new, region))

    return answer


if __name__ == "__main__":
    # FIMBLE_SCRIPTED_DELAY_S: seconds per 4 characters written, to make cancellation observable.
    delay = float(os.environ.get("FIMBLE_SCRIPTED_DELAY_S", "0"))
    backend = ScriptedBackend(answers=[renaming(sys.argv[1], sys.argv[2])], delay_s=delay)
    create_server(runtime=ModelRuntime(factory=scripted_factory(backend))).start_io()
