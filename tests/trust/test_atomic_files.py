"""Files fimble writes are replaced whole or not at all. A full disk is simulated without root: the writer runs in
a child process with RLIMIT_FSIZE below the new file's size and SIGXFSZ ignored, so its write fails with EFBIG the
way a full disk fails with ENOSPC."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fimble.trust.files import atomic_copy, atomic_write_bytes, atomic_write_text
from fimble_dev.tiny_gguf import write_truncated_copy
from tests.conftest import server_env

LIMIT = 4096  # bytes a child may write to any one file


def limited() -> None:
    """preexec_fn: an ignored signal stays ignored across exec, so the child's writes fail instead of killing it."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def run_limited(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=server_env(**env), preexec_fn=limited)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("."))


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "out" / "data.json"
    atomic_write_text(target, "one")
    assert target.read_text() == "one" and target.stat().st_mode & 0o777 == 0o644
    os.chmod(target, 0o600)
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    assert leftovers(target.parent) == []


def test_a_failing_check_keeps_the_old_file(tmp_path: Path) -> None:
    src, target = tmp_path / "new.bin", tmp_path / "target.bin"
    src.write_bytes(b"new")
    target.write_bytes(b"old")

    def refuse(tmp: Path) -> None:
        assert tmp.read_bytes() == b"new" and tmp.parent == target.parent
        raise ValueError("not good enough")

    with pytest.raises(ValueError):
        atomic_copy(src, target, check=refuse)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "target.bin"
    target.write_bytes(b"old content")
    code = f"""
        import sys
        from fimble.trust.files import atomic_write_bytes
        try:
            atomic_write_bytes({str(target)!r}, b"x" * {LIMIT * 4})
        except OSError as exc:
            sys.exit(f"failed: {{exc}}")
    """
    result = run_limited([sys.executable, "-c", textwrap.dedent(code)])
    assert result.returncode == 1 and "File too large" in result.stderr, result.stderr
    assert target.read_bytes() == b"old content"
    assert leftovers(tmp_path) == []


def test_the_index_cache_survives_a_full_disk(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(40):
        (ws / f"mod{i}.py").write_text("".join(f"def function_{i}_{j}(x):\n    return x\n\n" for j in range(10)))
    cache = tmp_path / "cache" / "index.json"
    cache.parent.mkdir()
    cache.write_text('{"version": 0}')
    code = f"""
        import sys
        from pathlib import Path
        from fimble.index.workspace import WorkspaceIndex
        index = WorkspaceIndex(Path({str(ws)!r}), cache_file=Path({str(cache)!r}))
        index.build()
        sys.exit(0 if index.save() is False and index.dirty else "the save should have failed")
    """
    result = run_limited([sys.executable, "-c", textwrap.dedent(code)])
    assert result.returncode == 0, result.stderr
    assert "could not persist the index" in result.stderr
    assert cache.read_text() == '{"version": 0}'
    assert leftovers(cache.parent) == []


def test_models_pull_from_a_folder_is_atomic(tiny_model: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"FIMBLE_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    target = cache / "models" / tiny_model.name
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the model a running server loaded")
    pull = [sys.executable, "-m", "fimble", "models", "pull", str(tiny_model.parent), tiny_model.name]
    # a full disk: the copy fails, the old file stays
    full = run_limited(pull, **env)
    assert full.returncode == 2 and "Could not copy" in full.stderr and "Traceback" not in full.stderr
    assert target.read_bytes() == b"the model a running server loaded"
    assert leftovers(target.parent) == []
    # a torn source: checked before it replaces anything
    torn = tmp_path / "torn" / tiny_model.name
    write_truncated_copy(tiny_model, torn)
    bad = subprocess.run(
        [*pull[:-2], str(torn.parent), torn.name], capture_output=True, text=True, timeout=120, env=server_env(**env)
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert target.read_bytes() == b"the model a running server loaded"
    assert leftovers(target.parent) == []
    # and a good one replaces it (a new inode: a server holding the old file open is not disturbed)
    old_inode = target.stat().st_ino
    good = subprocess.run(pull, capture_output=True, text=True, timeout=120, env=server_env(**env))
    assert good.returncode == 0, good.stderr
    assert target.read_bytes() == tiny_model.read_bytes() and target.stat().st_ino != old_inode
    assert leftovers(target.parent) == []
