"""One client connection: frames are read and decoded on a reader thread, dispatched on the event loop, and the
server's exit code comes out at the end.

The reader is a daemon thread rather than pygls' executor: an executor thread blocked in `read()` would be joined
at exit, so a client that sends `exit` but keeps stdin open would keep the server alive. Decoding (JSON parse,
validation, structuring) happens there too, so a large or malformed message never holds the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from pygls.io_ import StdoutWriter

from fimble.lsp.protocol import INVALID_REQUEST, Decoded, FimbleProtocol, error_reply
from fimble.lsp.transport import read_frame

if TYPE_CHECKING:
    from fimble.lsp.server import FimbleServer

log = logging.getLogger(__name__)

# Decoded messages waiting for the event loop; beyond this the reader stops reading, so a client that floods the
# server is slowed by its own pipe instead of growing the server's memory.
QUEUE_DEPTH = 64
# Set by benchmarks (scripts/fuzz_lsp.py, scripts/soak.py): sample how late the event loop runs its callbacks.
MONITOR_ENV = "FIMBLE_MONITOR_LOOP"
_MONITOR_PERIOD_S = 0.01


class LoopMonitor:
    """The longest the event loop was late waking a sleeping task: an upper bound on any one callback's stall.
    A stall over `report_ms` is logged with the last message dispatched before it, to say where to look."""

    def __init__(self, report_ms: float = 50.0) -> None:
        self.max_stall_ms = 0.0
        self.samples = 0
        self.report_ms = report_ms
        self.last_method = ""

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(_MONITOR_PERIOD_S)
            late = (time.monotonic() - start - _MONITOR_PERIOD_S) * 1000
            self.samples += 1
            if late > self.report_ms:
                log.warning("event loop stalled %.0f ms (last message: %s)", late, self.last_method or "none")
            if late > self.max_stall_ms:
                self.max_stall_ms = late


def run_connection(server: FimbleServer, inp: BinaryIO, out: BinaryIO, on_end: Callable[[], None]) -> int:
    """Serve one client until `exit` or the end of its input; `on_end` runs on the loop before it closes.
    Returns the process exit code the specification asks for (0 after shutdown, else 1)."""
    protocol = server.protocol
    assert isinstance(protocol, FimbleProtocol)
    protocol.set_writer(StdoutWriter(out))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(server, protocol, inp, on_end))
    finally:
        # Tasks still running (a completion awaiting the model, a checker in a thread) are abandoned on purpose:
        # the process exits next, and on_end has already stopped what must not outlive it.
        asyncio.set_event_loop(None)


async def _serve(server: FimbleServer, protocol: FimbleProtocol, inp: BinaryIO, on_end: Callable[[], None]) -> int:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Decoded | None] = asyncio.Queue()
    room = threading.Semaphore(QUEUE_DEPTH)

    def read() -> None:
        try:
            while not protocol.stopped.is_set():
                room.acquire()
                frame = read_frame(inp)
                if frame is None:
                    break
                if frame.body is None:
                    decoded = error_reply(None, INVALID_REQUEST, f"Skipped {frame.problem}.")
                else:
                    decoded = protocol.decode(frame.body)
                loop.call_soon_threadsafe(queue.put_nowait, decoded)
        except Exception:  # a bug in framing: say so, and end the connection as at end of input
            log.exception("reading from the client failed")
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="fimble-reader", daemon=True).start()
    monitor = None
    if os.environ.get(MONITOR_ENV):
        server.loop_monitor = monitor = LoopMonitor()
        monitor_task = loop.create_task(monitor.run())
    while True:
        decoded = await queue.get()
        if decoded is None:
            log.info("the client closed the connection")
            break
        room.release()
        if monitor is not None:
            monitor.last_method = getattr(decoded.message, "method", "") or "(answer or refusal)"
        try:
            protocol.deliver(decoded)
        except Exception:  # one message must never end the connection
            log.exception("dispatching a message failed")
        if protocol.stopped.is_set():
            break
        # A get() from a non-empty queue does not yield: without this, a burst of queued messages would be
        # dispatched back to back while handlers, answers and timers wait.
        await asyncio.sleep(0)
    if monitor is not None:
        monitor_task.cancel()
    on_end()
    if protocol.exit_code is not None:
        return protocol.exit_code
    return 0 if protocol._shutdown else 1
