"""The tiny GGUF factory is the foundation of every model-backed test, so these
tests pin down the properties the rest of the suite silently relies on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_cpp import Llama

from fimble_dev.tiny_gguf import (
    BOS_TOKEN,
    FAMILY_SPECIAL_TOKENS,
    TinyModelSpec,
    write_not_gguf,
    write_tiny_gguf,
    write_truncated_copy,
)

FIM_KEYS = {
    "pre": gguf.Keys.Tokenizer.FIM_PRE_ID,
    "suf": gguf.Keys.Tokenizer.FIM_SUF_ID,
    "mid": gguf.Keys.Tokenizer.FIM_MID_ID,
    "pad": gguf.Keys.Tokenizer.FIM_PAD_ID,
    "rep": gguf.Keys.Tokenizer.FIM_REP_ID,
    "sep": gguf.Keys.Tokenizer.FIM_SEP_ID,
}


def load(path: Path) -> Llama:
    # One thread: on small CI boxes thread hand-off costs more than the model.
    return Llama(model_path=str(path), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)


def read_fields(path: Path) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


@pytest.fixture(scope="module")
def family_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-families")
    return {
        family: write_tiny_gguf(root / f"{family}.gguf", TinyModelSpec(special_tokens=tokens))
        for family, tokens in FAMILY_SPECIAL_TOKENS.items()
    }


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Llama]:
    path = write_tiny_gguf(tmp_path_factory.mktemp("tiny-plain") / "plain.gguf")
    yield load(path)


@pytest.mark.parametrize("family", sorted(FAMILY_SPECIAL_TOKENS))
def test_family_specials_are_single_control_tokens(family: str, family_models: dict[str, Path]) -> None:
    llm = load(family_models[family])
    for text in (*FAMILY_SPECIAL_TOKENS[family], "<|endoftext|>", BOS_TOKEN):
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        assert len(ids) == 1, (text, ids)
        assert llm.detokenize(ids, special=True).decode() == text
        # Without special parsing the same string is ordinary text, which is
        # what keeps user code containing "<fim_prefix>" from injecting tokens.
        assert len(llm.tokenize(text.encode(), add_bos=False, special=False)) > 1
    assert llm.token_eos() == llm.tokenize(b"<|endoftext|>", add_bos=False, special=True)[0]
    assert llm.token_bos() == llm.tokenize(BOS_TOKEN.encode(), add_bos=False, special=True)[0]


@pytest.mark.parametrize(
    "text",
    [
        "def foo(self, x):\n    return x + 1\n",
        "\t\tif (a  &&  b) { return; }\r\n",
        "héllo wörld ✓ 日本語 🐍",
        "",
        " ",
        "<fim_prefix> is only text here",
    ],
)
def test_plain_text_round_trips(plain_model: Llama, text: str) -> None:
    ids = plain_model.tokenize(text.encode(), add_bos=False, special=False)
    assert plain_model.detokenize(ids).decode() == text


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_any_text_round_trips(plain_model: Llama, text: str) -> None:
    data = text.encode()
    ids = plain_model.tokenize(data, add_bos=False, special=False)
    assert plain_model.detokenize(ids) == data


def test_merged_tokens_are_used(plain_model: Llama) -> None:
    # "    return self" should use the indent, keyword and identifier merges.
    ids = plain_model.tokenize(b"    return self", add_bos=False, special=False)
    assert len(ids) == 3


def test_generation_is_printable_and_deterministic(tmp_path: Path) -> None:
    first = write_tiny_gguf(tmp_path / "a" / "m.gguf")
    second = write_tiny_gguf(tmp_path / "b" / "m.gguf")
    assert first.read_bytes() == second.read_bytes()

    texts = []
    for path in (first, second):
        out = load(path).create_completion("def foo(", max_tokens=16, temperature=0)
        choice = out["choices"][0]  # type: ignore[index]
        assert choice["finish_reason"] == "length"
        texts.append(choice["text"])
    assert texts[0] == texts[1]
    assert texts[0]
    assert texts[0].isascii() and texts[0].isprintable()


def test_seed_changes_weights(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", TinyModelSpec(seed=0))
    b = write_tiny_gguf(tmp_path / "b.gguf", TinyModelSpec(seed=1))
    assert a.read_bytes() != b.read_bytes()


def test_unknown_architecture_fails_to_load(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "odd.gguf", TinyModelSpec(architecture="fimble-unknown-arch"))
    assert read_fields(path)["general.architecture"] == "fimble-unknown-arch"
    with pytest.raises(ValueError):
        load(path)


def test_bad_files_fail_to_load(tmp_path: Path) -> None:
    good = write_tiny_gguf(tmp_path / "good.gguf")
    truncated = write_truncated_copy(good, tmp_path / "truncated.gguf", keep_fraction=0.5)
    assert truncated.stat().st_size == good.stat().st_size // 2
    not_gguf = write_not_gguf(tmp_path / "text.gguf")
    assert not not_gguf.read_bytes().startswith(b"GGUF")
    for path in (truncated, not_gguf):
        with pytest.raises(ValueError):
            load(path)


def test_truncated_copy_rejects_full_fraction(tmp_path: Path) -> None:
    good = write_tiny_gguf(tmp_path / "good.gguf")
    with pytest.raises(ValueError):
        write_truncated_copy(good, tmp_path / "same.gguf", keep_fraction=1.0)


def test_metadata_is_written(tmp_path: Path) -> None:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    spec = TinyModelSpec(name="meta-check", chat_template=template, context_length=4096)
    fields = read_fields(write_tiny_gguf(tmp_path / "m.gguf", spec))
    assert fields["general.name"] == "meta-check"
    assert fields["llama.context_length"] == 4096
    assert fields["tokenizer.chat_template"] == template
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert fields["tokenizer.ggml.model"] == "gpt2"


@pytest.mark.parametrize(
    ("family", "expected_roles"),
    [
        ("qwen2.5-coder", {"pre", "suf", "mid", "pad", "rep", "sep"}),
        ("starcoder2", {"pre", "suf", "mid", "pad", "rep", "sep"}),
        ("starcoder", {"pre", "suf", "mid", "pad", "rep"}),
        ("granite", {"pre", "suf", "mid", "pad", "rep"}),
        ("deepseek-coder", {"pre", "suf", "mid"}),
        ("codellama", {"pre", "suf", "mid"}),
        ("codegemma", {"pre", "suf", "mid", "sep"}),
        ("codestral", {"pre", "suf", "mid"}),
        ("none", set()),
    ],
)
def test_fim_token_ids_written_when_asked(tmp_path: Path, family: str, expected_roles: set[str]) -> None:
    specials = FAMILY_SPECIAL_TOKENS[family]
    path = write_tiny_gguf(tmp_path / "fim.gguf", TinyModelSpec(special_tokens=specials, fim_token_ids=True))
    fields = read_fields(path)
    tokens = fields["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list)
    written = {role for role, key in FIM_KEYS.items() if key in fields}
    assert written == expected_roles
    for role in written:
        token_id = fields[FIM_KEYS[role]]
        assert isinstance(token_id, int)
        assert tokens[token_id] in specials
    if expected_roles:
        assert tokens[fields[FIM_KEYS["pre"]]] == specials[0]

    without = read_fields(write_tiny_gguf(tmp_path / "plain.gguf", TinyModelSpec(special_tokens=specials)))
    assert not any(key in without for key in FIM_KEYS.values())


def test_partial_fim_set_writes_no_ids(tmp_path: Path) -> None:
    spec = TinyModelSpec(special_tokens=("<|fim_prefix|>", "<|fim_pad|>"), fim_token_ids=True)
    fields = read_fields(write_tiny_gguf(tmp_path / "partial.gguf", spec))
    assert not any(key in fields for key in FIM_KEYS.values())
