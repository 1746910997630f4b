#!/usr/bin/env python3
"""Installs the fimble server into a virtual environment of its own, for the editor clients.

The VS Code extension and the Neovim plugin run it with a Python >= 3.11 they found, as
`python -I fimble_install.py install --root ROOT --source WHEEL_OR_CHECKOUT` (its working directory: ROOT), and
read its progress from stdout: one JSON object a line (`step`, `progress`, `log`, `warning`, then `done`, `error` or
`cancelled`). It uses the standard library only: it runs before anything is installed.

ROOT holds:
  current.json     the install in use: its venv folder, version, where it came from (written last, atomically)
  venv-*/          virtual environments; only the one current.json names is ever used
  install.log      the full log of the latest attempt (every pip line)
  last-error.json  why the latest attempt failed (removed by a successful one)
  install.lock     held while an install runs (a second one says "busy")

An attempt builds a new venv beside the current one, pip installs the source with the default model, checks that
`llama_cpp` and `fimble` import and the model assembles, and only then points current.json at it: a failure,
a cancel or a full disk leaves the old install in use and removes the new venv; a venv an interrupted attempt
left behind is removed by the next one. The previous venv is named in current.json (`previous`) for the client
to remove once a server from the new one is up.

pip runs with ROOT as its working directory and the user's own pip configuration (index, proxy, find-links,
PIP_* variables), so a local wheel folder makes it work offline.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, NoReturn

MIN_PYTHON = (3, 11)
# What an install takes in ROOT (measured: the venv is 430 MB; the model's 245 MB copy goes to fimble's cache
# folder, and a llama.cpp build needs ~300 MB of temporary space). Checked before anything is written.
DEFAULT_MIN_FREE_MB = 1024
LLAMA = "llama-cpp-python"
CURRENT = "current.json"
LOG = "install.log"
LAST_ERROR = "last-error.json"
LOCK = "install.lock"
STAMP = "fimble-install.json"
# What a checkout's copy leaves out: pip builds the copy, so the checkout gets no build/ or egg-info folders.
CHECKOUT_IGNORE = (
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "*.vsix",
    "*.gguf",
)

# The steps a client shows, with their share of the progress bar. `build` happens only when pip compiles llama.cpp.
STEPS = {
    "venv": ("Creating the virtual environment", 0.08),
    "packages": ("Getting the packages", 0.12),
    "build": ("Compiling llama.cpp (5-10 minutes)", 0.55),
    "install": ("Installing the packages", 0.12),
    "verify": ("Checking the server", 0.05),
    "model": ("Preparing the default model", 0.08),
}
STEP_ORDER = list(STEPS)

# Variables that would make the venv's Python or pip install somewhere else, or run something at start.
DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT")

VERIFY = (
    "import json, sys\n"
    "import llama_cpp\n"
    "import fimble, fimble.cli.main\n"
    "print(json.dumps({'version': fimble.__version__, 'llama_cpp': getattr(llama_cpp, '__version__', '?'),"
    " 'python': sys.version.split()[0]}))\n"
)


class InstallError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Cancelled(Exception):
    pass


# --------------------------------------------------------------------------------------------------------------
# Pure helpers (unit tested)
# --------------------------------------------------------------------------------------------------------------
def running_python() -> tuple[int, int, int]:
    return sys.version_info.major, sys.version_info.minor, sys.version_info.micro


def python_problem(version: tuple[int, ...]) -> str | None:
    if tuple(version[:2]) >= MIN_PYTHON:
        return None
    have = ".".join(str(v) for v in version[:3])
    return (
        f"fimble needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is Python {have}. Install a newer Python "
        "(python.org, or your system's package manager) and try again."
    )


def overall(step: str, fraction: float = 0.0) -> float:
    """The share of the whole install done at `fraction` of `step` (0..1)."""
    done = 0.0
    for name in STEP_ORDER:
        weight = STEPS[name][1]
        if name == step:
            return round(done + weight * max(0.0, min(1.0, fraction)), 4)
        done += weight
    return round(done, 4)


_BUILD_COUNT = re.compile(r"^\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")  # ninja: [12/134] Building C object ...
_BUILD_PERCENT = re.compile(r"^\s*\[\s*(\d{1,3})%\]")  # make: [ 45%] Building C object ...
_BUILDING_WHEEL = re.compile(r"^\s*Building wheel for (\S+)")
_COLLECTING = re.compile(r"^\s*(?:Collecting|Processing|Downloading|Obtaining|Using cached)\s+(\S+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class PipLines:
    """Turns pip's output (`pip install -v`) into the install's steps and the build's progress."""

    def __init__(self) -> None:
        self.step = "packages"
        self.building: str | None = None

    def feed(self, line: str) -> dict[str, Any] | None:
        """A `step` or `progress` event for this line, if it moves anything."""
        m = _BUILDING_WHEEL.match(line)
        if m and "finished with status" in line:
            return None
        if m:
            self.building = _norm(m.group(1))
            if self.building == LLAMA and self.step != "build":
                self.step = "build"
                return {"event": "step", "step": "build"}
            return {"event": "progress", "step": self.step, "message": f"Building {m.group(1)}"}
        if self.step == "build" and self.building == LLAMA:
            m = _BUILD_COUNT.match(line)
            fraction = None
            if m and int(m.group(2)) > 0:
                fraction = int(m.group(1)) / int(m.group(2))
            else:
                m = _BUILD_PERCENT.match(line)
                if m:
                    fraction = int(m.group(1)) / 100
            if fraction is not None:
                return {
                    "event": "progress",
                    "step": "build",
                    "fraction": round(fraction, 4),
                    "message": _build_step(line),
                }
        if line.lstrip().startswith("Installing collected packages"):
            self.step = "install"
            self.building = None
            return {"event": "step", "step": "install"}
        if self.step == "packages":
            m = _COLLECTING.match(line)
            if m:
                name = os.path.basename(m.group(1).rstrip("/"))
                return {"event": "progress", "step": "packages", "message": name}
        return None


def _build_step(line: str) -> str:
    """`[12/193] ggml-alloc.c.o` for a build line, whether it shows the command (ninja -v) or a summary."""
    text = line.strip()
    m = re.match(r"(\[[^\]]*\])\s*(.*)$", text)
    if not m:
        return text[:120]
    counter, rest = m.groups()
    target = re.search(r"\s-o\s+(\S+)", rest) or re.search(r"\bobject\s+(\S+)", rest)
    what = os.path.basename(target.group(1)) if target else rest
    return f"{counter} {what}"[:120]


def compiler_hint(platform: str = sys.platform, os_release: str = "") -> str:
    """How to get a C/C++ compiler and CMake on this system."""
    if platform == "darwin":
        return "run `xcode-select --install` (and `brew install cmake`)"
    if platform == "win32":
        return 'install Visual Studio Build Tools with "Desktop development with C++" (it includes CMake)'
    ids = set()
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids.update(value.strip().strip('"').split())
    if ids & {"debian", "ubuntu"}:
        return "run `sudo apt install build-essential cmake`"
    if ids & {"fedora", "rhel", "centos"}:
        return "run `sudo dnf install gcc gcc-c++ cmake`"
    if ids & {"arch"}:
        return "run `sudo pacman -S base-devel cmake`"
    if ids & {"alpine"}:
        return "run `sudo apk add build-base cmake`"
    if ids & {"opensuse", "suse"}:
        return "run `sudo zypper install gcc gcc-c++ cmake`"
    return "install gcc/g++ (or clang) and CMake with your package manager"


def venv_hint(version: tuple[int, ...], os_release: str = "") -> str:
    if "debian" in os_release or "ubuntu" in os_release:
        return f"run `sudo apt install python{version[0]}.{version[1]}-venv`"
    return "install your Python's venv and ensurepip modules (they come with the python.org installers)"


def classify_failure(lines: list[str], only_binary: bool, returncode: int, log: str, hint: str) -> InstallError:
    """One readable message, naming the fix, for a failed `pip install`."""
    text = "\n".join(lines)
    last = _last_error_line(lines)
    if re.search(r"No space left on device|\[Errno 28\]|ENOSPC|not enough space on the disk", text, re.I):
        return InstallError(
            "disk-full", f"The disk is full ({last}). Free some space (an install needs about 1 GB) and try again."
        )
    missing = re.search(r"No matching distribution found for ([A-Za-z0-9_.\-]+)", text)
    if missing and only_binary and _norm(missing.group(1)) == LLAMA:
        return InstallError(
            "no-compiler",
            "llama.cpp has to be compiled on this machine and no C/C++ compiler was found: "
            f"{hint}, then try again. (Or point pip at a folder holding a llama-cpp-python wheel: PIP_FIND_LINKS.)",
        )
    network = re.search(
        r"(Failed to establish a new connection|NewConnectionError|Temporary failure in name resolution|"
        r"Name or service not known|ConnectTimeout|ReadTimeout|timed out|ProxyError|SSLError|"
        r"CERTIFICATE_VERIFY_FAILED|Connection refused|Network is unreachable)",
        text,
    )
    looked = re.search(r"^\s*Looking in (?:indexes|links): (.+)$", text, re.M)
    where = f" (pip looked in {looked.group(1).strip()})" if looked else ""
    if missing and network:
        return InstallError(
            "network",
            f"pip could not reach the package index ({network.group(1)}) to get {missing.group(1)}{where}. Check "
            "the network or proxy settings (pip.conf, PIP_INDEX_URL, HTTPS_PROXY), or work offline with a folder "
            "of wheels (PIP_FIND_LINKS and PIP_NO_INDEX=1). Then try again.",
        )
    if missing:
        return InstallError(
            "package-missing",
            f"pip found no {missing.group(1)} it can install{where}. With no network, point pip at a folder "
            "holding every wheel fimble needs (PIP_FIND_LINKS and PIP_NO_INDEX=1); otherwise check the index in "
            "your pip configuration (pip config list). Then try again.",
        )
    build = re.search(r"Failed (?:building wheel for|to build) ([A-Za-z0-9_.\-]+)", text)
    if build and _norm(build.group(1)) == LLAMA:
        cmake = "CMake" if re.search(r"cmake", text, re.I) else "the compiler"
        return InstallError(
            "build-failed",
            f"Compiling llama.cpp failed ({last}; {cmake} said more in the log: {log}). It needs a C/C++ compiler "
            f"and CMake 3.21 or newer: {hint}, then try again.",
        )
    if build:
        return InstallError("build-failed", f"Building {build.group(1)} failed ({last}). See the log: {log}.")
    return InstallError("pip-failed", f"pip failed (exit code {returncode}): {last}. See the log: {log}.")


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        s = line.strip()
        if s.startswith(("ERROR:", "error:", "OSError", "CMake Error")) or "Error" in s.split(":", 1)[0]:
            return s[:300]
    for line in reversed(lines):
        if line.strip():
            return line.strip()[:300]
    return "no output"


def source_version(source: Path) -> str | None:
    """The version of a fimble wheel (from its name) or source checkout (from pyproject.toml)."""
    if source.suffix == ".whl":
        parts = source.name.split("-")
        return parts[1] if len(parts) >= 5 else None
    pyproject = source / "pyproject.toml"
    try:
        import tomllib

        with pyproject.open("rb") as fh:
            project = tomllib.load(fh).get("project", {})
    except (OSError, ValueError, ImportError):
        return None
    if project.get("name") != "fimble":
        return None
    version = project.get("version")
    return version if isinstance(version, str) else None


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def read_current(root: Path) -> dict[str, Any] | None:
    """current.json, when it names a venv whose Python is there."""
    try:
        current = json.loads((root / CURRENT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(current, dict) or not isinstance(current.get("venv"), str):
        return None
    venv = root / current["venv"]
    if Path(current["venv"]).name != current["venv"] or not venv_python(venv).is_file():
        return None
    return current


# --------------------------------------------------------------------------------------------------------------
# The install
# --------------------------------------------------------------------------------------------------------------
class Installer:
    def __init__(self, root: Path, out: IO[str]) -> None:
        self.root = root
        self.out = out
        self.log_path = root / LOG
        self.log: IO[str] | None = None
        self.child: subprocess.Popen[str] | None = None
        self.cancelled = False
        self.started = time.monotonic()

    # Events and the log ------------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "step":
            title, _ = STEPS[event["step"]]
            event = {**event, "title": title, "percent": round(100 * overall(event["step"]), 1)}
        elif event.get("event") == "progress" and "fraction" in event:
            event = {**event, "percent": round(100 * overall(event["step"], event["fraction"]), 1)}
        if self.log and event.get("event") != "log":
            self.log.write(f"[fimble-install] {json.dumps(event)}\n")
            self.log.flush()
        try:
            self.out.write(json.dumps(event) + "\n")
            self.out.flush()
        except (BrokenPipeError, OSError, ValueError):
            # The editor went away: nobody wants this install any more. (Later writes, and the flush at exit, go
            # to the null device instead of failing again.)
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            self.cancel()

    def line(self, text: str) -> None:
        if self.log:
            self.log.write(text + "\n")
            self.log.flush()
        self.emit({"event": "log", "text": text})

    def cancel(self, *_: object) -> None:
        self.cancelled = True
        child = self.child
        if child is not None and child.poll() is None:
            kill_tree(child)

    # Child processes ------------------------------------------------------------------------------------------
    def run(
        self,
        argv: list[str],
        env: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> tuple[int, list[str]]:
        """Runs `argv` in ROOT, its output (both streams) logged line by line; returns the exit code and the lines."""
        if self.cancelled:
            raise Cancelled()
        self.line("$ " + " ".join(argv))
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        lines: list[str] = []
        try:
            self.child = subprocess.Popen(
                argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                **kwargs,
            )
        except OSError as exc:
            raise InstallError("spawn-failed", f"Could not run {argv[0]}: {exc}") from exc
        if self.cancelled:  # the signal came while it was being started
            kill_tree(self.child)
        assert self.child.stdout is not None
        for raw in self.child.stdout:
            text = raw.rstrip("\r\n")
            lines.append(text)
            self.line(text)
            if on_line:
                on_line(text)
        code = self.child.wait()
        self.child = None
        if self.cancelled:
            raise Cancelled()
        return code, lines

    # The steps ------------------------------------------------------------------------------------------------
    def install(self, source: Path, extras: list[str], min_free_mb: int) -> dict[str, Any]:
        root = self.root
        version = source_version(source)
        if version is None:
            raise InstallError(
                "bad-source",
                f"{source} is not a fimble wheel or source checkout (a folder with fimble's pyproject.toml).",
            )
        problem = python_problem(running_python())
        if problem:
            raise InstallError("python-too-old", problem)
        os_release = _read(Path("/etc/os-release"))
        for module in ("venv", "ensurepip"):
            try:
                __import__(module)
            except ImportError:
                raise InstallError(
                    "no-venv",
                    f"This Python ({sys.executable}) cannot create virtual environments (no {module} module): "
                    f"{venv_hint(running_python(), os_release)}, then try again.",
                ) from None
        free_mb = shutil.disk_usage(root).free // (1 << 20)
        if free_mb < min_free_mb:
            raise InstallError(
                "disk-full",
                f"Not enough free disk space in {root}: {free_mb} MB free, the install needs about {min_free_mb} MB. "
                "Free some space and try again.",
            )
        tools = toolchain()
        hint = compiler_hint(sys.platform, os_release)
        only_binary = not (tools["c"] and tools["cxx"])
        if only_binary:
            self.emit(
                {
                    "event": "warning",
                    "message": "No C/C++ compiler found: llama.cpp cannot be compiled here, so pip may only use a "
                    f"prebuilt llama-cpp-python wheel (to compile it, {hint}).",
                }
            )
        elif not tools["cmake"]:
            self.line("[fimble-install] no cmake on PATH: pip fetches CMake for the build (needs the package index)")

        previous = read_current(root)
        stamp = f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        venv = root / f"venv-{stamp}"
        staged = root / f"source-{stamp}"
        env = child_env()
        try:
            if source.is_dir():
                self.line(f"[fimble-install] copying the checkout {source} to build it")
                shutil.copytree(source, staged, ignore=shutil.ignore_patterns(*CHECKOUT_IGNORE))
                source_for_pip = staged
            else:
                source_for_pip = source
            self.emit({"event": "step", "step": "venv"})
            code, lines = self.run([sys.executable, "-I", "-m", "venv", str(venv)], env)
            if code != 0:
                raise classify_venv_failure(lines, code, self.log_path, os_release)
            python = venv_python(venv)

            self.emit({"event": "step", "step": "packages"})
            spec = f"{source_for_pip}[{','.join(extras)}]" if extras else str(source_for_pip)
            argv = [
                str(python),
                "-m",
                "pip",
                "install",
                "-v",
                "--disable-pip-version-check",
                "--no-input",
                "--no-color",
                "--progress-bar",
                "off",
                "--no-warn-script-location",
                spec,
            ]
            if only_binary:
                argv[-1:-1] = ["--only-binary", LLAMA]
            parser = PipLines()

            def on_pip_line(text: str) -> None:
                event = parser.feed(text)
                if event:
                    self.emit(event)

            code, lines = self.run(argv, env, on_pip_line)
            if code != 0:
                raise classify_failure(lines, only_binary, code, str(self.log_path), hint)

            self.emit({"event": "step", "step": "verify"})
            code, lines = self.run([str(python), "-I", "-c", VERIFY], env)
            info = _json_line(lines)
            if code != 0 or info is None:
                raise InstallError(
                    "broken",
                    f"The new server does not start: {_last_error_line(lines)}. See the log: {self.log_path}.",
                )
            if info.get("version") != version:
                raise InstallError(
                    "broken",
                    f"pip installed fimble {info.get('version')}, not {version} (see the log: {self.log_path}).",
                )

            model = None
            if "default-model" in extras:
                self.emit({"event": "step", "step": "model"})
                model_env = {k: v for k, v in env.items() if k != "FIMBLE_MODEL"}
                code, lines = self.run([str(python), "-I", "-m", "fimble", "models", "path"], model_env)
                if code != 0:
                    err = classify_failure(lines, False, code, str(self.log_path), hint)
                    if err.code != "disk-full":
                        err = InstallError(
                            "model-failed",
                            f"The default model could not be prepared: {_last_error_line(lines)}. See the log: "
                            f"{self.log_path}.",
                        )
                    raise err
                model = next((line.strip() for line in reversed(lines) if line.strip()), None)

            record = {
                "venv": venv.name,
                "python": str(python),
                "version": version,
                "source": str(source),
                "source_id": source_id(source, version),
                "extras": extras,
                "python_version": info.get("python"),
                "llama_cpp_version": info.get("llama_cpp"),
                "model": model,
                "installed_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "seconds": round(time.monotonic() - self.started, 1),
                "previous": previous["venv"] if previous and previous["venv"] != venv.name else None,
            }
            write_json(venv / STAMP, record)
            write_json(root / CURRENT, record)
            return record
        except BaseException:
            remove_tree(venv)
            raise
        finally:
            remove_tree(staged)


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    # A `user = true` in pip.conf would send the packages outside the venv.
    env["PIP_USER"] = "0"
    return env


def classify_venv_failure(lines: list[str], code: int, log: Path, os_release: str) -> InstallError:
    text = "\n".join(lines)
    if re.search(r"No space left on device|\[Errno 28\]", text):
        return InstallError(
            "disk-full", "The disk is full. Free some space (an install needs about 1 GB) and try again."
        )
    if "ensurepip" in text:
        return InstallError(
            "no-venv",
            f"This Python ({sys.executable}) cannot create virtual environments with pip: "
            f"{venv_hint(running_python(), os_release)}, then try again.",
        )
    return InstallError(
        "venv-failed", f"Creating the virtual environment failed ({_last_error_line(lines)}). See the log: {log}."
    )


def toolchain() -> dict[str, str | None]:
    """The C compiler, C++ compiler and CMake that a llama.cpp build would use (None: not found)."""

    def first(env: str, names: Iterable[str]) -> str | None:
        configured = os.environ.get(env, "").split()
        if configured:
            return shutil.which(configured[0])
        return next((found for found in map(shutil.which, names) if found), None)

    if sys.platform == "win32":
        # MSVC is found by CMake through vswhere, not on PATH.
        vswhere = Path(os.environ.get("PROGRAMFILES(X86)", r"C:\Program Files (x86)"))
        vswhere = vswhere / "Microsoft Visual Studio" / "Installer" / "vswhere.exe"
        msvc = str(vswhere) if vswhere.is_file() else None
        c = first("CC", ["cl", "gcc", "clang"]) or msvc
        cxx = first("CXX", ["cl", "g++", "clang++"]) or msvc
    else:
        c = first("CC", ["cc", "gcc", "clang"])
        cxx = first("CXX", ["c++", "g++", "clang++"])
        if sys.platform == "darwin" and (c or cxx):
            # /usr/bin/cc is a stub that offers to install the command line tools when they are missing.
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                tools = subprocess.run(["xcode-select", "-p"], capture_output=True, timeout=10)
                if tools.returncode != 0:
                    c = cxx = None
    return {"c": c, "cxx": cxx, "cmake": shutil.which("cmake")}


def source_id(source: Path, version: str) -> str:
    if source.is_file():
        digest = hashlib.sha256()
        with source.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return "sha256:" + digest.hexdigest()
    return "checkout:" + version


def kill_tree(child: subprocess.Popen[str]) -> None:
    """Stops a child and everything it started (pip's build runs cmake, ninja and compilers)."""
    with contextlib.suppress(OSError):
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(child.pid)], capture_output=True, timeout=30)
        else:
            os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            if os.name == "nt":
                child.kill()
            else:
                os.killpg(child.pid, signal.SIGKILL)


def remove_tree(path: Path) -> None:
    if not path.exists():
        return

    def retry_writable(func: Callable[..., Any], name: str, _exc: object) -> None:
        # Windows refuses to delete read-only files; make them writable and try once more.
        with contextlib.suppress(OSError):
            os.chmod(name, 0o700)
            func(name)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry_writable)
    else:
        shutil.rmtree(path, onerror=retry_writable)


def prune(root: Path) -> list[str]:
    """Removes every venv that current.json does not name (left by a failed, cancelled or older install)."""
    current = read_current(root)
    keep = current["venv"] if current else None
    removed = []
    for entry in sorted([*root.glob("venv-*"), *root.glob("source-*")]):
        if entry.is_dir() and entry.name != keep:
            remove_tree(entry)
            removed.append(entry.name)
    for stale in root.glob(f".{CURRENT}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    return removed


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _json_line(lines: list[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return None


class Lock:
    """An OS lock on ROOT/install.lock: released by the OS when the holder dies, so it is never stale."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("a+")

    def acquire(self) -> bool:
        try:
            if sys.platform == "win32":
                import msvcrt

                self.fh.seek(0)
                msvcrt.locking(self.fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.fh.close()


# --------------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------------
def cmd_install(args: argparse.Namespace, out: IO[str]) -> int:
    root = Path(args.root).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        out.write(json.dumps({"event": "error", "code": "no-root", "message": f"Cannot create {root}: {exc}"}) + "\n")
        return 1
    installer = Installer(root, out)
    lock = Lock(root / LOCK)
    if not lock.acquire():
        installer.emit(
            {
                "event": "error",
                "code": "busy",
                "message": "Another fimble install into this folder is running (another window?). Wait for it to finish.",
            }
        )
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGBREAK", None), getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, installer.cancel)
    try:
        with contextlib.suppress(OSError):
            (root / LOG).unlink()
        installer.log = (root / LOG).open("w", encoding="utf-8")
        installer.line(f"[fimble-install] Python {sys.version.split()[0]} at {sys.executable}, root {root}")
        removed = prune(root)
        if removed:
            installer.line(f"[fimble-install] removed what earlier attempts left: {', '.join(removed)}")
        source = Path(args.source).expanduser().resolve()
        extras = [e for e in (args.extra or []) if e]
        installer.emit({"event": "start", "root": str(root), "log": str(root / LOG), "source": str(source)})
        record = installer.install(source, extras, args.min_free_mb)
        with contextlib.suppress(OSError):
            (root / LAST_ERROR).unlink()
        installer.emit({"event": "done", **record})
        return 0
    except Cancelled:
        installer.emit({"event": "cancelled", "message": "The install was cancelled; nothing of it was kept."})
        return 4
    except InstallError as exc:
        _remember_error(root, exc.code, exc.message)
        installer.emit({"event": "error", "code": exc.code, "message": exc.message, "log": str(root / LOG)})
        return 1
    except OSError as exc:
        code = "disk-full" if getattr(exc, "errno", None) == 28 else "os-error"
        message = (
            "The disk is full. Free some space (an install needs about 1 GB) and try again."
            if code == "disk-full"
            else f"The install failed: {exc}. See the log: {root / LOG}."
        )
        _remember_error(root, code, message)
        installer.emit({"event": "error", "code": code, "message": message, "log": str(root / LOG)})
        return 1
    finally:
        if installer.log:
            installer.log.close()
        lock.close()


def _remember_error(root: Path, code: str, message: str) -> None:
    with contextlib.suppress(OSError):
        write_json(
            root / LAST_ERROR,
            {"code": code, "message": message, "at": datetime.datetime.now(datetime.UTC).isoformat()},
        )


def cmd_check(args: argparse.Namespace, out: IO[str]) -> int:
    """What an install would need and find, as one JSON object (for :checkhealth and the clients' first look)."""
    root = Path(args.root).expanduser()
    probe = root
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    os_release = _read(Path("/etc/os-release"))
    problems = []
    problem = python_problem(running_python())
    if problem:
        problems.append({"code": "python-too-old", "message": problem})
    for module in ("venv", "ensurepip"):
        try:
            __import__(module)
        except ImportError:
            problems.append(
                {"code": "no-venv", "message": f"no {module} module: {venv_hint(running_python(), os_release)}"}
            )
            break
    free_mb = shutil.disk_usage(probe).free // (1 << 20)
    if free_mb < args.min_free_mb:
        problems.append({"code": "disk-full", "message": f"{free_mb} MB free in {probe}, need {args.min_free_mb} MB"})
    report = {
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "toolchain": toolchain(),
        "compiler_hint": compiler_hint(sys.platform, os_release),
        "free_mb": free_mb,
        "min_free_mb": args.min_free_mb,
        "current": read_current(root),
        "problems": problems,
    }
    out.write(json.dumps(report) + "\n")
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(description="Install the fimble server into a venv of its own.")
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="create a venv under ROOT and pip install SOURCE into it")
    install.add_argument("--root", required=True, help="folder for the venvs, the log and current.json")
    install.add_argument("--source", required=True, help="a fimble wheel or a fimble source checkout")
    install.add_argument("--extra", action="append", help="extras to install (default: default-model)")
    install.add_argument("--min-free-mb", type=int, default=DEFAULT_MIN_FREE_MB)
    check = sub.add_parser("check", help="print what an install would find (Python, compiler, disk) as JSON")
    check.add_argument("--root", required=True)
    check.add_argument("--min-free-mb", type=int, default=DEFAULT_MIN_FREE_MB)
    args = parser.parse_args(argv)
    if args.command == "install" and args.extra is None:
        args.extra = ["default-model"]
    handler = {"install": cmd_install, "check": cmd_check}[args.command]
    sys.exit(handler(args, sys.stdout))


if __name__ == "__main__":
    main()
