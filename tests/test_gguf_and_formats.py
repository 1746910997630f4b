"""GGUF header reading and the choice of prompt format per model family, down to the exact token ids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fimble.errors import ModelError
from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.gguf_meta import check_complete, read_header
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.prompt.assemble import Window, assemble
from fimble.prompt.formats import Special, select_format
from fimble.settings import Settings
from fimble_dev.tiny_gguf import TinyModelSpec, write_not_gguf, write_tiny_gguf, write_truncated_copy

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"
PATH = "pkg/calc.py"

S = Special
EXPECTED: dict[str, list[str | Special]] = {
    "qwen2.5-coder": [S("<|file_sep|>"), f"{PATH}\n", S("<|fim_prefix|>"), PREFIX, S("<|fim_suffix|>"), SUFFIX,
                      S("<|fim_middle|>")],
    "starcoder2": [S("<file_sep>"), S("<fim_prefix>"), f"{PATH}\n{PREFIX}", S("<fim_suffix>"), SUFFIX, S("<fim_middle>")],
    "starcoder": [S("<filename>"), f"{PATH}\n", S("<fim_prefix>"), S("<fim_suffix>"), SUFFIX, S("<fim_middle>"), PREFIX],
    "granite": [S("<fim_prefix>"), PREFIX, S("<fim_suffix>"), SUFFIX, S("<fim_middle>")],
    "deepseek-coder": [S("<｜fim▁begin｜>"), PREFIX, S("<｜fim▁hole｜>"), SUFFIX, S("<｜fim▁end｜>")],
    "codellama": [S("▁<PRE>"), S("▁<SUF>"), SUFFIX, S("▁<MID>"), PREFIX],
    "codegemma": [S("<|fim_prefix|>"), PREFIX, S("<|fim_suffix|>"), SUFFIX, S("<|fim_middle|>")],
    "codestral": [S("<|bos|>"), S("[SUFFIX]"), SUFFIX, S("[PREFIX]"), PREFIX],
    "none": [PREFIX],
}  # fmt: skip
FORMAT_NAME = {"none": "prefix-only"}


def load(path: Path) -> LlamaCppBackend:
    return LlamaCppBackend(path, Settings(n_threads=1, n_ctx=512))


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_family_prompt_is_the_exact_token_sequence_llama_cpp_evaluates(
    family: str, family_model: Callable[..., Path], models_dir: Path
) -> None:
    if family == "granite":
        # Granite shares StarCoder's FIM tokens; its name in the GGUF tells it apart.
        path = models_dir / "granite.gguf"
        from fimble_dev.tiny_gguf import FAMILY_SPECIAL_TOKENS

        write_tiny_gguf(
            path, TinyModelSpec(name="granite-3b-code-base", special_tokens=FAMILY_SPECIAL_TOKENS["granite"])
        )
    else:
        path = family_model(family)
    backend = load(path)
    try:
        fmt = backend.info.format
        assert fmt.name == FORMAT_NAME.get(family, family)
        prompt = assemble(backend, fmt, Window(prefix=PREFIX, suffix=SUFFIX, path=PATH, language_id="python"))
        expected_ids: list[int] = []
        for piece in EXPECTED[family]:
            if isinstance(piece, Special):
                tid = backend.token_id(piece.text)
                assert tid is not None, piece
                expected_ids.append(tid)
            else:
                expected_ids.extend(backend.tokenize(piece))
        assert prompt.ids == expected_ids
        backend.generate(prompt.ids, GenerationParams(max_tokens=2), CancelToken())
        assert backend.cached_tokens[: len(expected_ids)] == expected_ids
    finally:
        backend.close()


def test_special_token_text_inside_user_code_stays_plain_text(tiny_fim_model: Path) -> None:
    backend = load(tiny_fim_model)
    try:
        fim_prefix = backend.token_id("<|fim_prefix|>")
        ids = backend.tokenize("x = '<|fim_prefix|>'")
        assert fim_prefix is not None and fim_prefix not in ids
    finally:
        backend.close()


def test_generic_fim_format_from_metadata_ids(models_dir: Path) -> None:
    # FIM tokens spelled unlike any known family, announced only through tokenizer.ggml.fim_*_token_id.
    path = write_tiny_gguf(
        models_dir / "generic.gguf",
        TinyModelSpec(name="mystery-coder", special_tokens=("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
                      fim_token_ids=True),
    )  # fmt: skip
    header = read_header(path)
    assert header.get("tokenizer.ggml.fim_pre_token_id") is not None
    # codegemma/qwen need their extra tokens, so none of the family files match: metadata decides.
    assert select_format(header).name == "generic-fim"


def test_header_of_a_tiny_model(tiny_fim_model: Path) -> None:
    header = read_header(tiny_fim_model)
    assert header.architecture == "llama"
    assert header.get("general.name") == "tiny-qwen-fim"
    assert "<|fim_prefix|>" in header.tokens
    check_complete(header)


def test_bad_model_files_give_readable_errors(tmp_path: Path, tiny_model: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        read_header(tmp_path / "missing.gguf")
    with pytest.raises(ModelError, match="not a GGUF"):
        read_header(write_not_gguf(tmp_path / "notes.gguf"))
    with pytest.raises(ModelError, match="directory"):
        read_header(tmp_path)
    truncated = write_truncated_copy(tiny_model, tmp_path / "cut.gguf", keep_fraction=0.6)
    with pytest.raises(ModelError, match="truncated"):
        check_complete(read_header(truncated))
    head_only = write_truncated_copy(tiny_model, tmp_path / "head.gguf", keep_fraction=0.001)
    with pytest.raises(ModelError, match=r"truncated|not a GGUF"):
        check_complete(read_header(head_only))


def test_unsupported_architecture_is_a_model_error(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "alien.gguf", TinyModelSpec(architecture="fimble-unknown-arch"))
    with pytest.raises(ModelError, match="fimble-unknown-arch"):
        load(path)
