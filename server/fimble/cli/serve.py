from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

from fimble.cli.main import EXIT_USAGE, setup_logging


def run_serve(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from fimble.lsp.server import create_server

    setup_logging(args.log_level, args.log_file)
    server = create_server(overrides)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            print(f"fimble: --tcp expects HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return EXIT_USAGE
        server.start_tcp(host or "127.0.0.1", int(port))
        return 0
    # The protocol owns fd 1. Anything else that writes to stdout (llama.cpp's C logging, a stray print) would
    # corrupt the JSON-RPC stream, so the protocol gets a private copy and fd 1 is pointed at stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    with _checkers_end_with_server():
        server.start_io(stdin=sys.stdin.buffer, stdout=protocol_out)
    return 0


@contextlib.contextmanager
def _checkers_end_with_server() -> Iterator[None]:
    """Fix checkers and their temporary worktrees go when the server does: on SIGTERM, and when the client closes
    stdin (start_io returns). SIGTERM then still ends the process as the signal does."""
    from fimble.agent.checkers import close_all_sandboxes

    def on_term(signum: int, frame: object) -> None:
        close_all_sandboxes()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        close_all_sandboxes()
