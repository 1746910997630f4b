"""Run model-written Python in a child process with CPU, memory, file-size and wall-clock limits, without network.

Generated code is untrusted: it can loop forever, allocate without bound or try to touch the machine. The child sets
its own resource limits before running anything (doing it in `preexec_fn` is unsafe in a process that has threads,
and the evaluation process has the model worker thread), disables the destructive parts of `os`, `shutil` and
`subprocess` and the socket module, and runs in an empty temporary directory. Where unprivileged user namespaces
work, `unshare -rn` also gives it a network namespace with no interfaces, so the socket guard is not the only
barrier. This is the same best-effort guard as OpenAI's human-eval harness, not a security boundary against a
determined attacker; run untrusted benchmarks in a container.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fimble.trust.files import atomic_write_text

Status = Literal["passed", "failed", "timeout", "error"]

# Runs first in the child: limits, then guards, then the program. Kept as source text so the child needs nothing
# from fimble (it runs with `-I -S`: no site-packages, no environment variables, no current directory on sys.path).
_RUNNER = r"""
import builtins, faulthandler, os, resource, shutil, socket, subprocess, sys

cpu_s, memory_mb, fsize_mb = (int(v) for v in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
memory = memory_mb * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_mb * 1024 * 1024, fsize_mb * 1024 * 1024))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
source = open("program.py", encoding="utf-8").read()
faulthandler.disable()


def _blocked(*args, **kwargs):
    raise PermissionError("blocked by the fimble evaluation sandbox")


for _name in ("socket", "create_connection", "create_server", "socketpair", "getaddrinfo", "fromfd"):
    setattr(socket, _name, _blocked)
for _name in (
    "kill", "killpg", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
    "unlink", "fchmod", "fchown", "chmod", "chown", "chroot", "lchown", "truncate", "ftruncate", "rename",
    "renames", "replace", "link", "symlink", "execv", "execve", "execvp", "execvpe", "spawnv", "spawnve", "popen",
    "posix_spawn", "posix_spawnp", "chdir",
):
    if hasattr(os, _name):
        setattr(os, _name, _blocked)
shutil.rmtree = shutil.move = shutil.chown = _blocked
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = _blocked
builtins.exit = builtins.quit = _blocked
sys.modules["resource"] = None  # the program may not raise its own limits back
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
"""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock, generous: a loaded 2-core machine can stall a child for seconds
    cpu_s: int = 5  # CPU seconds; an infinite loop dies here even when the wall clock is generous
    memory_mb: int = 1024  # address space; Python itself needs ~100 MB of mappings
    file_size_mb: int = 16


@dataclass(frozen=True)
class ExecResult:
    status: Status
    detail: str  # last line of stderr (the exception), or why it timed out
    ms: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.cache
def network_namespace_prefix() -> tuple[str, ...]:
    """`unshare -rn` when unprivileged network namespaces work here; () otherwise (the socket guard remains)."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return ()
    try:
        ok = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return ()
    return (unshare, "-rn") if ok else ()


def run_program(source: str, limits: Limits = Limits()) -> ExecResult:
    """Execute `source` as a script; passed means exit status 0 within the limits."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fimble-sandbox-") as tmp:
        work = Path(tmp)
        atomic_write_text(work / "program.py", source)
        atomic_write_text(work / "runner.py", _RUNNER)
        cmd = [
            *network_namespace_prefix(),
            sys.executable, "-I", "-S", "-B", "runner.py",
            str(limits.cpu_s), str(limits.memory_mb), str(limits.file_size_mb),
        ]  # fmt: skip
        # A minimal environment: no proxies, no credentials, nothing that changes how Python starts.
        env = {"PATH": os.defpath, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout kills anything it started too
        )  # fmt: skip
        try:
            _, err = proc.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return ExecResult("timeout", f"no result within {limits.timeout_s:g} s", _ms(started))
    detail = _last_line(err.decode("utf-8", errors="replace"))
    if proc.returncode == 0:
        return ExecResult("passed", "", _ms(started))
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) or "SIGXCPU" in detail:
        return ExecResult("timeout", f"CPU limit of {limits.cpu_s} s reached", _ms(started))
    return ExecResult("failed", detail or f"exit status {proc.returncode}", _ms(started))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
