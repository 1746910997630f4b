"""Read a GGUF file's header: metadata and tensor layout, without loading weights.

Own reader rather than the `gguf` package: it is a small, dependency-free parser that turns a missing, foreign or
truncated file into a readable `ModelError` before llama.cpp sees it (llama.cpp only says "failed to load").
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fimble.errors import ModelError

GGUF_MAGIC = b"GGUF"

# value type id -> struct format (scalars)
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

# ggml tensor type id -> (elements per block, bytes per block); used only to check the file is complete.
_GGML_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip


@dataclass
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensor_count: int
    file_size: int
    required_size: int | None  # bytes the tensor data needs; None when a tensor type is unknown to us
    tokens: list[str] = field(default_factory=list)
    token_types: list[int] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))


class _Cursor:
    """Reads the header in order. From a file, not a mapping: a model file cut short while it is read (a download or
    a copy over it) then ends the read early instead of raising SIGBUS in the reading process."""

    def __init__(self, source: BinaryIO | bytes, size: int, path: Path) -> None:
        self.source = io.BytesIO(source) if isinstance(source, bytes) else source
        self.size = size
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        end = self.pos + n
        data = self.source.read(n) if end <= self.size else b""  # a corrupt length never allocates past the file
        if len(data) < n:
            raise ModelError(f"{self.path} is truncated: its GGUF header ends early. Download the model again.")
        self.pos = end
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > 1 << 28:
            raise ModelError(f"{self.path} is not a valid GGUF file (string of {n} bytes in its header).")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype = self.scalar("<I")
            count = self.scalar("<Q")
            if itype in _SCALARS:
                fmt = _SCALARS[itype]
                size = struct.calcsize(fmt)
                raw = self.take(size * count)
                return list(struct.unpack(f"<{count}{fmt[1]}", raw))
            return [self.value(itype) for _ in range(count)]
        raise ModelError(f"{self.path} is not a valid GGUF file (unknown value type {vtype}).")


def read_header(path: str | Path) -> GGUFHeader:
    """Parse the header of `path`; raises ModelError with a readable reason for any problem."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"Model file {p} does not exist. Set 'model' (or FIMBLE_MODEL) to a .gguf file.")
    if p.is_dir():
        raise ModelError(f"Model path {p} is a directory; point it at a .gguf file.")
    with p.open("rb", buffering=1 << 20) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise ModelError(f"{p} is not a GGUF model file (only {size} bytes).")
        cur = _Cursor(fh, size, p)
        if cur.take(4) != GGUF_MAGIC:
            raise ModelError(f"{p} is not a GGUF model file (wrong magic bytes). fimble loads llama.cpp GGUF models.")
        version = cur.scalar("<I")
        if version not in (2, 3):
            raise ModelError(f"{p} is GGUF version {version}; llama.cpp reads versions 2 and 3.")
        tensor_count = cur.scalar("<Q")
        kv_count = cur.scalar("<Q")
        metadata: dict[str, Any] = {}
        tokens: list[str] = []
        token_types: list[int] = []
        for _ in range(kv_count):
            key = cur.string()
            vtype = cur.scalar("<I")
            value = cur.value(vtype)
            if key == "tokenizer.ggml.tokens":
                tokens = value
            elif key == "tokenizer.ggml.token_type":
                token_types = value
            elif key in ("tokenizer.ggml.merges", "tokenizer.ggml.scores"):
                continue  # large and not needed by fimble
            else:
                metadata[key] = value
        required = _tensor_data_end(cur, tensor_count, int(metadata.get("general.alignment", 32)))
    return GGUFHeader(
        path=p,
        version=version,
        metadata=metadata,
        tensor_count=tensor_count,
        file_size=size,
        required_size=required,
        tokens=tokens,
        token_types=token_types,
    )


def _tensor_data_end(cur: _Cursor, tensor_count: int, alignment: int) -> int | None:
    end = 0
    known = True
    for _ in range(tensor_count):
        cur.string()
        n_dims = cur.scalar("<I")
        dims = [cur.scalar("<Q") for _ in range(n_dims)]
        ttype = cur.scalar("<I")
        offset = cur.scalar("<Q")
        if ttype not in _GGML_SIZES:
            known = False
            continue
        block, block_bytes = _GGML_SIZES[ttype]
        elements = 1
        for d in dims:
            elements *= d
        end = max(end, offset + (elements // block) * block_bytes)
    data_start = cur.pos + (-cur.pos % alignment)
    return data_start + end if known else None


def check_complete(header: GGUFHeader) -> None:
    if header.required_size is not None and header.file_size < header.required_size:
        raise ModelError(
            f"{header.path} is truncated: {header.file_size} bytes on disk, its tensors need "
            f"{header.required_size}. Download or assemble the model again."
        )
