"""`fimble serve` with the fix loop's scripted model in place of llama.cpp, for end-to-end tests that need the model
to answer a fix correctly (a tiny random-weight GGUF cannot). Everything else is the real server over stdio.

    python tests/trust/scripted_server.py ANSWER [ANSWER ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: the repository root, where `tests` lives, is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fimble.lsp.server import create_server
from fimble.model.runtime import ModelRuntime
from tests.scripted import ScriptedBackend, scripted_factory

if __name__ == "__main__":
    backend = ScriptedBackend(answers=list(sys.argv[1:]))
    create_server(runtime=ModelRuntime(factory=scripted_factory(backend))).start_io()
