"""The installer both editor clients run (editor-clients/install/fimble_install.py), with real venvs and a real pip
installing fake, tiny packages offline (tests/editors/fake_packages.py): its steps and progress, the install it
points the clients at, and every bad input of issue #18: an old Python, no compiler, pip failing half way, a
cancel, a full disk, a venv left broken by an earlier failure, a second install at the same time."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .fake_packages import fake_wheelhouse, write_fake_fimble

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "editor-clients" / "install" / "fimble_install.py"

pytestmark = [pytest.mark.editor, pytest.mark.timeout(300)]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fimble_install", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fimble_install"] = module
    spec.loader.exec_module(module)
    return module


fi = load_script()


def offline_env(tmp_path: Path, wheelhouse: Path, **extra: str) -> dict[str, str]:
    """pip pointed at a wheel folder only, with no configuration file of this machine's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
        PIP_NO_CACHE_DIR="1",
        FIMBLE_CACHE_DIR=str(tmp_path / "fimble-cache"),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def started(root: Path, source: Path, env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-I", str(SCRIPT), "install", "--root", str(root), "--source", str(source), *args],
        cwd=root.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def install(root: Path, source: Path, env: dict[str, str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    root.parent.mkdir(parents=True, exist_ok=True)
    with started(root, source, env, *args) as proc:
        out, err = proc.communicate(timeout=240)
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    return proc.returncode, events, err


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == kind]


def venvs(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("venv-*"))


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    return fake_wheelhouse(tmp_path / "wheels")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_fake_fimble(tmp_path / "dist")


# --------------------------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------------------------
def test_python_version_check() -> None:
    assert fi.python_problem((3, 11, 0)) is None
    assert fi.python_problem((3, 13, 1)) is None
    message = fi.python_problem((3, 10, 12))
    assert message and "3.11 or newer" in message and "3.10.12" in message


def test_pip_lines_become_steps_and_build_progress() -> None:
    p = fi.PipLines()
    assert p.feed("Collecting pygls>=2.0") == {"event": "progress", "step": "packages", "message": "pygls>=2.0"}
    assert p.feed("Processing /wheels/numpy-2.4.6-cp311-cp311-manylinux.whl")["message"].startswith("numpy-2.4.6")
    assert p.feed("  Building wheel for llama-cpp-python (pyproject.toml): started") == {
        "event": "step",
        "step": "build",
    }
    assert p.feed("  *** Configuring CMake...") is None
    ninja = p.feed("  [45/180] Building CXX object vendor/llama.cpp/src/llama.cpp.o")
    assert ninja and ninja["fraction"] == 0.25
    assert ninja["message"] == "[45/180] llama.cpp.o"
    verbose = p.feed(
        "  [3/180] /usr/bin/g++ -DGGML_BUILD -O3 -MD -MT x.o -MF x.o.d -o vendor/llama.cpp/ggml/src/ggml-opt.cpp.o "
        "-c /tmp/pip-install/vendor/llama.cpp/ggml/src/ggml-opt.cpp"
    )
    assert verbose and verbose["message"] == "[3/180] ggml-opt.cpp.o"
    make = p.feed("  [ 50%] Building C object ggml.c.o")
    assert make and make["fraction"] == 0.5 and make["message"] == "[ 50%] ggml.c.o"
    assert p.feed("Installing collected packages: numpy, llama-cpp-python, fimble") == {
        "event": "step",
        "step": "install",
    }
    assert p.feed("  [9/10] not a build line any more") is None
    # Another package's build is a message of the packages step, not llama.cpp's.
    q = fi.PipLines()
    assert q.feed("Building wheel for fimble (pyproject.toml): started") == {
        "event": "progress",
        "step": "packages",
        "message": "Building fimble",
    }
    assert q.feed("[3/4] Building CXX object x.o") is None


def test_progress_is_monotonic_over_the_steps() -> None:
    marks = [fi.overall(step, f) for step in fi.STEP_ORDER for f in (0.0, 0.5, 1.0)]
    assert marks == sorted(marks)
    assert marks[0] == 0 and marks[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("lines", "only_binary", "code", "words"),
    [
        (["OSError: [Errno 28] No space left on device"], False, "disk-full", ["Free some space"]),
        (
            ["ERROR: Could not find a version", "ERROR: No matching distribution found for llama-cpp-python"],
            True,
            "no-compiler",
            ["no C/C++ compiler", "apt install build-essential cmake", "PIP_FIND_LINKS"],
        ),
        (
            [
                "WARNING: Retrying ... NewConnectionError: Failed to establish a new connection: [Errno 111] Connection refused",
                "ERROR: No matching distribution found for pygls>=2.0",
            ],
            False,
            "network",
            ["could not reach the package index", "proxy", "PIP_FIND_LINKS"],
        ),
        (["ERROR: No matching distribution found for tree-sitter"], False, "package-missing", ["tree-sitter"]),
        (
            ["CMake Error at CMakeLists.txt:3: no compiler", "ERROR: Failed building wheel for llama-cpp-python"],
            False,
            "build-failed",
            ["Compiling llama.cpp failed", "CMake 3.21", "apt install build-essential cmake"],
        ),
        (["Traceback", "ValueError: boom"], False, "pip-failed", ["ValueError: boom", "install.log"]),
    ],
)
def test_pip_failures_get_one_readable_message_naming_the_fix(
    lines: list[str], only_binary: bool, code: str, words: list[str]
) -> None:
    hint = fi.compiler_hint("linux", 'ID=ubuntu\nID_LIKE="debian"\n')
    error = fi.classify_failure(lines, only_binary, 1, "/x/install.log", hint)
    assert error.code == code
    for word in words:
        assert word in error.message, error.message
    assert "\n" not in error.message


def test_compiler_hints_per_system() -> None:
    assert "xcode-select --install" in fi.compiler_hint("darwin")
    assert "Visual Studio Build Tools" in fi.compiler_hint("win32")
    assert "dnf install" in fi.compiler_hint("linux", "ID=fedora\n")
    assert "package manager" in fi.compiler_hint("linux", "ID=gentoo\n")


# --------------------------------------------------------------------------------------------------------------
# Real installs of the fake packages
# --------------------------------------------------------------------------------------------------------------
def test_install_update_and_cleanup(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    root = tmp_path / "root"
    env = offline_env(tmp_path, wheelhouse)
    code, events, err = install(root, source, env)
    assert code == 0, (events, err)
    steps = [e["step"] for e in of(events, "step")]
    assert steps == ["venv", "packages", "install", "verify", "model"], steps
    assert all(e["title"] for e in of(events, "step"))
    percents = [e["percent"] for e in events if "percent" in e]
    assert percents == sorted(percents)
    done = of(events, "done")[0]
    current = json.loads((root / "current.json").read_text())
    assert current["venv"] == done["venv"] and venvs(root) == [current["venv"]]
    assert current["version"] == "0.1.0" and current["previous"] is None
    assert current["source_id"].startswith("sha256:")
    assert Path(current["model"]).read_bytes() == b"GGUF"  # the model step ran with the user's FIMBLE_CACHE_DIR
    python = root / current["venv"] / "bin" / "python"
    ran = subprocess.run([python, "-I", "-m", "fimble", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert ran.stdout.strip() == "fimble 0.1.0"
    log = (root / "install.log").read_text()
    assert "Successfully installed" in log and "fake-default-model" in log
    assert len(of(events, "log")) > 5  # every pip line reaches the client too

    # An update: a new venv, the old one kept (the client removes it once a server from the new one is up).
    code, events, err = install(root, source, env)
    assert code == 0, (events, err)
    second = json.loads((root / "current.json").read_text())
    assert second["venv"] != current["venv"] and second["previous"] == current["venv"]
    assert venvs(root) == sorted([current["venv"], second["venv"]])

    # The next attempt starts clean: it removes every venv but the current one, even when it fails.
    (root / "venv-19700101-000000-1").mkdir()  # left by a crashed attempt
    broken = write_fake_fimble(tmp_path / "broken", broken=True)
    code, events, _ = install(root, broken, env)
    assert code == 1 and of(events, "error")[0]["code"] == "broken"
    assert "this fimble is broken" in of(events, "error")[0]["message"]
    assert venvs(root) == [second["venv"]]
    assert json.loads((root / "current.json").read_text())["venv"] == second["venv"]
    assert json.loads((root / "last-error.json").read_text())["code"] == "broken"


def test_pip_failing_half_way_keeps_nothing_and_the_old_install(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    root = tmp_path / "root"
    code, _, err = install(root, source, offline_env(tmp_path, wheelhouse))
    assert code == 0, err
    before = (root / "current.json").read_text()
    # The default model's package is missing: pip fails after collecting the rest.
    partial = fake_wheelhouse(tmp_path / "partial", model=False)
    code, events, _ = install(root, source, offline_env(tmp_path, partial))
    assert code == 1
    (error,) = of(events, "error")
    assert error["code"] == "package-missing" and "fake-default-model" in error["message"]
    assert "PIP_FIND_LINKS" in error["message"]
    assert (root / "current.json").read_text() == before
    assert venvs(root) == [json.loads(before)["venv"]]
    assert "No matching distribution" in (root / "install.log").read_text()


def test_a_users_pip_configuration_file_is_honoured(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nno-index = true\nfind-links = {wheelhouse}\n")
    env = offline_env(tmp_path, tmp_path / "nowhere", PIP_CONFIG_FILE=str(conf))
    del env["PIP_FIND_LINKS"], env["PIP_NO_INDEX"]
    code, events, err = install(tmp_path / "root", source, env)
    assert code == 0, (events, err)


def test_no_compiler_uses_a_prebuilt_wheel_or_says_what_to_install(
    tmp_path: Path, wheelhouse: Path, source: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    bare = {"PATH": str(empty), "CC": "", "CXX": ""}
    # A prebuilt llama-cpp-python wheel: no compiler needed (a warning says what a build would need).
    code, events, err = install(tmp_path / "root", source, offline_env(tmp_path, wheelhouse, **bare))
    assert code == 0, (events, err)
    (warning,) = of(events, "warning")
    assert "No C/C++ compiler" in warning["message"]
    # Only the source distribution: pip is not asked to build it, and the message says what to install.
    sdist_only = fake_wheelhouse(tmp_path / "sdist", llama="sdist")
    code, events, _ = install(tmp_path / "root2", source, offline_env(tmp_path, sdist_only, **bare))
    assert code == 1
    (error,) = of(events, "error")
    assert error["code"] == "no-compiler", error
    assert fi.compiler_hint(sys.platform, fi._read(Path("/etc/os-release"))) in error["message"]
    assert venvs(tmp_path / "root2") == []
    assert not (tmp_path / "root2" / "current.json").exists()


def test_llama_cpp_build_progress_and_failure(tmp_path: Path, source: Path) -> None:
    if fi.toolchain()["cxx"] is None:
        pytest.skip("no C++ compiler: the installer would not build llama-cpp-python")
    sdist_only = fake_wheelhouse(tmp_path / "sdist", llama="sdist")
    env = offline_env(tmp_path, sdist_only, FAKE_BUILD_STEPS="4", FAKE_BUILD_DELAY="0.05")
    code, events, err = install(tmp_path / "root", source, env)
    assert code == 0, (events, err)
    assert [e["step"] for e in of(events, "step")] == ["venv", "packages", "build", "install", "verify", "model"]
    build = [e for e in of(events, "progress") if e["step"] == "build"]
    assert [e["fraction"] for e in build] == [0.25, 0.5, 0.75, 1.0]
    assert build[1]["message"] == "[2/4] part2.cpp.o"
    # The compiler fails: one message that names what to install.
    code, events, _ = install(tmp_path / "root2", source, {**env, "FAKE_BUILD_FAILS": "1"})
    assert code == 1
    (error,) = of(events, "error")
    assert error["code"] == "build-failed" and "CMake" in error["message"], error
    assert venvs(tmp_path / "root2") == []


def test_cancel_stops_the_build_and_removes_the_new_venv(tmp_path: Path, source: Path) -> None:
    if fi.toolchain()["cxx"] is None:
        pytest.skip("no C++ compiler: the installer would not build llama-cpp-python")
    root = tmp_path / "root"
    root.mkdir()
    pidfile = tmp_path / "build.pid"
    env = offline_env(
        tmp_path,
        fake_wheelhouse(tmp_path / "sdist", llama="sdist"),
        FAKE_BUILD_STEPS="200",
        FAKE_BUILD_DELAY="0.5",
        FAKE_BUILD_PIDFILE=str(pidfile),
    )
    with started(root, source, env) as proc:
        assert proc.stdout is not None
        events = []
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1].get("event") == "progress" and events[-1].get("step") == "build":
                break
        assert venvs(root), "the new venv exists while pip builds"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == 4
    assert of(events, "cancelled") and not of(events, "error")
    assert venvs(root) == [] and not (root / "current.json").exists()
    build_pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(build_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the build process outlived the cancel")


def test_the_editor_going_away_cancels_too(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with started(root, source, offline_env(tmp_path, wheelhouse)) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert json.loads(first)["event"] in ("start", "log")
        proc.stdout.close()  # the editor's end of the pipe is gone
        proc.wait(timeout=120)
    assert proc.returncode == 4
    assert venvs(root) == [] and not (root / "current.json").exists()


def test_a_second_install_at_the_same_time_is_refused(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with (root / "install.lock").open("a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, events, _ = install(root, source, offline_env(tmp_path, wheelhouse))
    assert code == 1
    (error,) = of(events, "error")
    assert error["code"] == "busy" and "Another fimble install" in error["message"]
    assert venvs(root) == []


def test_a_full_disk_is_found_before_anything_is_written(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    root = tmp_path / "root"
    code, events, _ = install(root, source, offline_env(tmp_path, wheelhouse), "--min-free-mb", str(1 << 40))
    assert code == 1
    (error,) = of(events, "error")
    assert error["code"] == "disk-full" and "MB free" in error["message"]
    assert not of(events, "step") and venvs(root) == []


def test_a_broken_current_install_is_not_used_and_is_replaced(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    root = tmp_path / "root"
    (root / "venv-20200101-000000-7" / "bin").mkdir(parents=True)  # its python is gone
    (root / "current.json").write_text(json.dumps({"venv": "venv-20200101-000000-7"}))
    assert fi.read_current(root) is None
    (root / "current.json").write_text("{ half written")
    assert fi.read_current(root) is None
    (root / "current.json").write_text(json.dumps({"venv": "../elsewhere"}))
    assert fi.read_current(root) is None
    code, events, err = install(root, source, offline_env(tmp_path, wheelhouse))
    assert code == 0, (events, err)
    current = fi.read_current(root)
    assert current and venvs(root) == [current["venv"]]


def test_bad_sources_and_a_failing_model_step(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    not_fimble = tmp_path / "other"
    not_fimble.mkdir()
    (not_fimble / "pyproject.toml").write_text('[project]\nname = "other"\nversion = "1"\n')
    code, events, _ = install(tmp_path / "root", not_fimble, offline_env(tmp_path, wheelhouse))
    assert code == 1 and of(events, "error")[0]["code"] == "bad-source"
    code, events, _ = install(tmp_path / "root", source, offline_env(tmp_path, wheelhouse, FAKE_FIMBLE_MODEL_FAILS="1"))
    assert code == 1
    (error,) = of(events, "error")
    assert error["code"] == "model-failed" and "could not be assembled" in error["message"]
    assert venvs(tmp_path / "root") == [] and not (tmp_path / "root" / "current.json").exists()


def test_check_reports_what_an_install_would_find(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), "check", "--root", str(tmp_path / "not-yet")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    report = json.loads(out)
    assert report["python_version"] == sys.version.split()[0]
    assert set(report["toolchain"]) == {"c", "cxx", "cmake"}
    assert report["free_mb"] > 0 and report["current"] is None and report["problems"] == []


CHECKOUT_BACKEND = """
import os, shutil
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(directory, config_settings=None, metadata_directory=None):
    wheel = os.environ["FAKE_FIMBLE_WHEEL"]
    shutil.copy(wheel, directory)
    return os.path.basename(wheel)
"""


def test_a_checkout_is_built_from_a_copy_and_left_as_it_was(tmp_path: Path, wheelhouse: Path, source: Path) -> None:
    checkout = tmp_path / "fimble-checkout"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text(
        '[project]\nname = "fimble"\nversion = "0.1.0"\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (checkout / "backend.py").write_text(CHECKOUT_BACKEND)
    (checkout / ".git").mkdir()
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
    root = tmp_path / "root"
    code, events, err = install(root, checkout, offline_env(tmp_path, wheelhouse, FAKE_FIMBLE_WHEEL=str(source)))
    assert code == 0, (events, err)
    current = json.loads((root / "current.json").read_text())
    assert current["source"] == str(checkout) and current["source_id"] == "checkout:0.1.0"
    assert sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*")) == before
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [current["venv"]], "the copy is gone"
