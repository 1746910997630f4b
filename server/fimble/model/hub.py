"""`fimble models pull`: fetch a GGUF for users who are online, or register a local file.

The file lands in fimble's models folder whole or not at all: it is written (or downloaded) beside its target,
checked as a complete GGUF, and only then renamed over it. A server that loaded the previous file keeps running on
its own copy in memory and loads the new one at its next request.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fimble.errors import ModelError
from fimble.model.gguf_meta import check_complete, read_header
from fimble.model.resolve import cache_dir
from fimble.trust.files import atomic_copy, atomic_move

STAGING = ".partial"  # huggingface_hub's download folder, beside the models


def models_dir() -> Path:
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_gguf(path: Path) -> None:
    check_complete(read_header(path))


def pull(repo: str, filename: str, *, offline: bool = False) -> Path:
    """Download `filename` from the Hugging Face repo `repo` (or copy it, when `repo` is a local folder).

    The result is checked as a GGUF before it replaces anything, so a broken download or a truncated source is
    caught here, not at load time, and the file it would have replaced is kept.
    """
    local = Path(repo).expanduser()
    if local.is_dir():
        source = local / filename
        if not source.is_file():
            raise ModelError(f"{source} does not exist.")
        target = models_dir() / source.name
        if source.resolve() != target.resolve():
            try:
                atomic_copy(source, target, check=check_gguf)
            except OSError as exc:
                raise ModelError(f"Could not copy {source} to {target}: {exc}") from None
        else:
            check_gguf(target)
        return target
    return _download(repo, filename, offline=offline)


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
    folder = models_dir()
    name = PurePosixPath(filename)
    if name.is_absolute() or ".." in name.parts or not name.name or "\0" in filename:
        raise ModelError(f"{filename!r} is not a file of a hub repository.")
    target = folder / name
    if offline and target.is_file():
        check_gguf(target)  # pulled before: nothing to download
        return target
    staging = folder / STAGING
    try:
        # Into a folder of its own first (huggingface_hub downloads to a temporary file there and renames it): the
        # file next to the other models is replaced only once the new one is whole and checked.
        staged = Path(hf_hub_download(repo_id=repo, filename=filename, local_dir=staging, local_files_only=offline))
        try:
            check_gguf(staged)
        except ModelError:
            staged.unlink(missing_ok=True)
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_move(staged, target)
    except LocalEntryNotFoundError as exc:
        raise ModelError(
            f"Cannot download {repo}/{filename}: no network connection (or offline mode) and no cached copy. "
            f"Download the .gguf elsewhere and pass its folder as REPO. ({exc.__class__.__name__})"
        ) from None
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise ModelError(f"{repo}/{filename} was not found on the hub: {exc}") from None
    except OSError as exc:
        raise ModelError(f"Cannot download {repo}/{filename}: {exc}") from None
    return target
