from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, BinaryIO, cast

from fimble.cli.common import EXIT_USAGE, setup_logging

log = logging.getLogger(__name__)

# However an exit is reached, cleanup gets this long before the process ends regardless (a load or a checker
# stuck in C code must not keep a server its client has left).
CLEANUP_GRACE_S = 5.0


def run_serve(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from fimble.lsp.server import create_server

    setup_logging(args.log_level, args.log_file)
    server = create_server(overrides)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            print(f"fimble: --tcp expects HOST:PORT, got {args.tcp!r}", file=sys.stderr)
            return EXIT_USAGE
        with socket.create_server((host or "127.0.0.1", int(port))) as listener:
            log.info("listening on %s:%s for one client", host or "127.0.0.1", port)
            conn, _ = listener.accept()
        inp = cast(BinaryIO, conn.makefile("rb"))
        out = cast(BinaryIO, conn.makefile("wb", buffering=0))
    else:
        # The protocol owns fd 1. Anything else that writes to stdout (llama.cpp's C logging, a stray print) would
        # corrupt the JSON-RPC stream, so the protocol gets a private copy and fd 1 is pointed at stderr.
        out = cast(BinaryIO, os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0))
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = sys.stderr
        inp = sys.stdin.buffer

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: closing", signum)
        _exit_after(server.close, 128 + signum, signum)

    signal.signal(signal.SIGTERM, on_signal)
    code = server.serve(inp, out)
    _exit_after(lambda: None, code)
    return code  # not reached


def _exit_after(cleanup: Any, code: int, signum: int | None = None) -> None:
    """Run `cleanup`, then end the process with `code` (or, for a signal, by that signal, as its sender expects)
    without waiting for worker threads: a generation or a checker still running in one would otherwise hold the
    exit (interpreter shutdown joins them)."""
    timer = threading.Timer(CLEANUP_GRACE_S, os._exit, args=(code,))
    timer.daemon = True
    timer.start()
    try:
        cleanup()
    except Exception:
        log.exception("cleanup before exit failed")
    logging.shutdown()
    sys.stderr.flush()
    if signum is not None:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(code)
