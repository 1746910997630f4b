"""`fimble models pull`: fetch a GGUF for users who are online, or register a local file."""

from __future__ import annotations

import shutil
from pathlib import Path

from fimble.errors import ModelError
from fimble.model.gguf_meta import check_complete, read_header
from fimble.model.resolve import cache_dir


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pull(repo: str, filename: str, *, offline: bool = False) -> Path:
    """Download `filename` from the Hugging Face repo `repo` (or copy it, when `repo` is a local folder).

    The result is checked as a GGUF before it is reported, so a broken download is caught here, not at load time.
    """
    local = Path(repo).expanduser()
    if local.is_dir():
        source = local / filename
        if not source.is_file():
            raise ModelError(f"{source} does not exist.")
        target = models_dir() / source.name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        path = target
    else:
        path = _download(repo, filename, offline=offline)
    check_complete(read_header(path))
    return path


def _download(repo: str, filename: str, *, offline: bool) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise ModelError("Downloading models needs huggingface_hub: pip install 'fimble[hub]'.") from None
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, local_dir=models_dir(), local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        raise ModelError(
            f"Cannot download {repo}/{filename}: no network connection (or offline mode) and no cached copy. "
            f"Download the .gguf elsewhere and pass its folder as REPO. ({exc.__class__.__name__})"
        ) from None
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise ModelError(f"{repo}/{filename} was not found on the hub: {exc}") from None
    except OSError as exc:
        raise ModelError(f"Cannot download {repo}/{filename}: {exc}") from None
