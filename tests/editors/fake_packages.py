"""Tiny stand-ins for fimble and its heavy dependencies, for testing the editor installers fast and offline.

`fake_wheelhouse()` writes a folder pip can install from with `PIP_NO_INDEX=1 PIP_FIND_LINKS=<folder>`: a fake
fimble wheel (a `fimble` package whose `python -m fimble models path` writes a model file into FIMBLE_CACHE_DIR),
a fake llama-cpp-python (as a wheel, or as a source distribution whose "build" prints ninja-style progress lines
slowly, like llama.cpp's), and the default-model extra's package. The installer treats them like the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import textwrap
import zipfile
from pathlib import Path

FAKE_VERSION = "0.1.0"

FIMBLE_MAIN = """
import os, sys, pathlib
args = sys.argv[1:]
if args == ["--version"]:
    print("fimble " + __import__("fimble").__version__)
elif args == ["models", "path"]:
    if os.environ.get("FAKE_FIMBLE_MODEL_FAILS"):
        print("fimble: the model could not be assembled", file=sys.stderr)
        raise SystemExit(2)
    target = pathlib.Path(os.environ["FIMBLE_CACHE_DIR"]) / "models" / "fake.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"GGUF")
    print(target)
else:
    raise SystemExit("fake fimble: " + " ".join(args))
"""

# A PEP 517 backend that "compiles" for a while, printing ninja's progress lines, and leaves its pid behind so a
# test can check that cancelling stopped it.
SLOW_BACKEND = """
import os, time, zipfile
STEPS = int(os.environ.get("FAKE_BUILD_STEPS", "8"))
DELAY = float(os.environ.get("FAKE_BUILD_DELAY", "0.3"))
META = "Metadata-Version: 2.1\\nName: llama_cpp_python\\nVersion: 0.0.1\\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(directory, config_settings=None):
    info = os.path.join(directory, "llama_cpp_python-0.0.1.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as fh:
        fh.write(META)
    return "llama_cpp_python-0.0.1.dist-info"
def build_wheel(directory, config_settings=None, metadata_directory=None):
    pidfile = os.environ.get("FAKE_BUILD_PIDFILE")
    if pidfile:
        with open(pidfile, "w") as fh:
            fh.write(str(os.getpid()))
    if os.environ.get("FAKE_BUILD_FAILS"):
        print("CMake Error at CMakeLists.txt:1 (project): No CMAKE_CXX_COMPILER could be found.", flush=True)
        raise SystemExit(1)
    for i in range(1, STEPS + 1):
        print(f"[{i}/{STEPS}] Building CXX object vendor/llama.cpp/src/part{i}.cpp.o", flush=True)
        time.sleep(DELAY)
    name = "llama_cpp_python-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        z.writestr("llama_cpp/__init__.py", "__version__ = '0.0.1'\\n")
        z.writestr("llama_cpp_python-0.0.1.dist-info/METADATA", META)
        z.writestr(
            "llama_cpp_python-0.0.1.dist-info/WHEEL",
            "Wheel-Version: 1.0\\nGenerator: fake\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        )
        z.writestr("llama_cpp_python-0.0.1.dist-info/RECORD", "")
    return name
"""


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(
    folder: Path,
    name: str,
    version: str,
    files: dict[str, str],
    requires: list[str] | None = None,
    extras: dict[str, list[str]] | None = None,
) -> Path:
    """A minimal, valid pure-Python wheel."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires or []]
    for extra, reqs in (extras or {}).items():
        meta.append(f"Provides-Extra: {extra}")
        meta += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    contents = {path: text.encode() for path, text in files.items()}
    contents[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    contents[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: fimble-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [_record_line(p, d) for p, d in contents.items()] + [f"{info}/RECORD,,"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in contents.items():
            z.writestr(p, d)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def write_fake_fimble(folder: Path, version: str = FAKE_VERSION, broken: bool = False) -> Path:
    init = "raise ImportError('this fimble is broken')\n" if broken else f"__version__ = {version!r}\n"
    return write_wheel(
        folder,
        "fimble",
        version,
        {
            "fimble/__init__.py": init,
            "fimble/__main__.py": textwrap.dedent(FIMBLE_MAIN),
            "fimble/cli/__init__.py": "",
            "fimble/cli/main.py": "",
        },
        requires=["llama-cpp-python"],
        extras={"default-model": ["fake-default-model"]},
    )


def write_fake_llama_wheel(folder: Path) -> Path:
    return write_wheel(folder, "llama-cpp-python", "0.0.1", {"llama_cpp/__init__.py": "__version__ = '0.0.1'\n"})


def write_fake_llama_sdist(folder: Path) -> Path:
    """llama-cpp-python as a source distribution that pip has to build (slowly, with progress lines)."""
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": textwrap.dedent(SLOW_BACKEND),
        "PKG-INFO": "Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.0.1\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "llama_cpp_python-0.0.1.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"llama_cpp_python-0.0.1/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def fake_wheelhouse(folder: Path, llama: str = "wheel", model: bool = True) -> Path:
    """Everything `pip install fimble[default-model]` needs, fake. `llama`: "wheel", "sdist" or "none"."""
    folder.mkdir(parents=True, exist_ok=True)
    if llama == "wheel":
        write_fake_llama_wheel(folder)
    elif llama == "sdist":
        write_fake_llama_sdist(folder)
    if model:
        write_wheel(folder, "fake-default-model", "1.0", {"fake_default_model/__init__.py": ""})
    return folder
