"""One background thread for everything slow the context engine does: indexing, git, persistence.

Jobs run one at a time in submission order; `later` jobs are debounced by key (a burst of keystrokes re-indexes a
document once, a burst of saves refreshes git once).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], object]


class Worker:
    def __init__(self, name: str = "fimble-context") -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._timed: dict[str, tuple[float, Job]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending = 0  # submitted jobs not finished, plus the timed job running now
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        with self._lock:
            if self._started or self._stop.is_set():
                return
            self._started = True
        self._thread.start()

    def submit(self, job: Job) -> None:
        self.start()
        with self._lock:
            self._pending += 1
        self._queue.put(job)

    def later(self, key: str, delay_s: float, job: Job) -> None:
        """Run `job` once `delay_s` after the last call with this key."""
        self.start()
        due = time.monotonic() + delay_s
        with self._lock:
            earliest = min((t for t, _job in self._timed.values()), default=None)
            self._timed[key] = (due, job)
        if earliest is None or due < earliest:
            # the thread sleeps until the earliest due time; waking it on every keystroke would cost a GIL
            # hand-off per keystroke for nothing
            self._queue.put(None)

    def cancel(self, key: str) -> None:
        """Drop the job scheduled with `later` under this key, if it has not started (the thread, asleep until the
        earliest due time, wakes then and finds nothing to run)."""
        with self._lock:
            self._timed.pop(key, None)

    def scheduled(self) -> list[str]:
        """Keys of the jobs scheduled and not started (for tests)."""
        with self._lock:
            return list(self._timed)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._started:
            self._thread.join(timeout)

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    def wait_idle(self, timeout: float = 30.0, include_timed: bool = True) -> bool:
        """Block until no job is queued or running and, with include_timed, none is scheduled (scheduled jobs are
        made due at once): for tests and the CLI."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if include_timed:
                self.flush_timed()
            with self._lock:
                if self._pending == 0 and not (include_timed and self._timed):
                    return True
            time.sleep(0.01)
        return False

    def flush_timed(self) -> None:
        """Make every scheduled job due now."""
        with self._lock:
            self._timed = {k: (0.0, job) for k, (_due, job) in self._timed.items()}
        self._queue.put(None)

    def _due(self) -> tuple[list[Job], float | None]:
        now = time.monotonic()
        with self._lock:
            due = [k for k, (t, _job) in self._timed.items() if t <= now]
            jobs = [self._timed.pop(k)[1] for k in due]
            self._pending += len(jobs)
            wait = min((t for t, _job in self._timed.values()), default=None)
        return jobs, (max(0.0, wait - now) if wait is not None else None)

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs, wait = self._due()
            for job in jobs:
                self._call(job)
            if jobs:
                continue
            try:
                item = self._queue.get(timeout=wait if wait is not None else 1.0)
            except queue.Empty:
                continue
            if item is not None:
                self._call(item)

    def _call(self, job: Job) -> None:
        try:
            if not self._stop.is_set():
                job()
        except Exception:  # one failing job must not end indexing for the session
            log.exception("context job failed")
        finally:
            with self._lock:
                self._pending -= 1
