"""Tiny random-weight GGUF models for tests and benchmarks.

Real code models are gigabytes; the test-suite needs something llama.cpp will
load and generate from in milliseconds, whose vocabulary carries the same
special-token strings as the real model families.  The weights are random but
shaped so that greedy decoding yields printable, code-ish text instead of
control tokens or broken UTF-8.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

__all__ = [
    "BOS_TOKEN",
    "FAMILY_SPECIAL_TOKENS",
    "SCRIPTED",
    "TinyModelSpec",
    "write_not_gguf",
    "write_tiny_gguf",
    "write_truncated_copy",
]

# The literal special-token strings each family's tokenizer uses, so tests can
# exercise family detection and prompt construction against real spellings.
FAMILY_SPECIAL_TOKENS: dict[str, tuple[str, ...]] = {
    "qwen2.5-coder": (
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_start|>",
        "<|im_end|>",
    ),
    "starcoder2": (
        "<fim_prefix>",
        "<fim_middle>",
        "<fim_suffix>",
        "<fim_pad>",
        "<repo_name>",
        "<file_sep>",
    ),
    "starcoder": (
        "<fim_prefix>",
        "<fim_middle>",
        "<fim_suffix>",
        "<fim_pad>",
        "<filename>",
        "<reponame>",
        "<gh_stars>",
    ),
    "deepseek-coder": (
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        "<|EOT|>",
    ),
    "codellama": ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"),
    "codegemma": (
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_separator|>",
        "<start_of_turn>",
        "<end_of_turn>",
    ),
    "codestral": ("[PREFIX]", "[SUFFIX]", "[MIDDLE]"),
    "granite": (
        "<fim_prefix>",
        "<fim_middle>",
        "<fim_suffix>",
        "<fim_pad>",
        "<filename>",
        "<reponame>",
        "<gh_stars>",
    ),
    "none": (),
}

BOS_TOKEN = "<|bos|>"


@dataclass(frozen=True)
class TinyModelSpec:
    name: str = "tiny-test-model"
    # Written verbatim as general.architecture; the tensors and hyperparameter
    # keys are always llama-shaped, so any other name makes llama.cpp refuse
    # the file -- which is exactly what unsupported-architecture tests want.
    architecture: str = "llama"
    special_tokens: tuple[str, ...] = ()
    fim_token_ids: bool = False
    chat_template: str | None = None
    context_length: int = 2048
    seed: int = 0
    eos_token: str = "<|endoftext|>"
    # Scripted mode: instead of random text the model writes one of these strings (greedy: the first), each a
    # chain of distinct characters ending in EOS, whatever the prompt. Random output is mostly what fimble's
    # filters are built to drop (loops, syntax errors), so end-to-end tests of the machinery use a script that
    # is valid after `x = ` or at the start of a statement. Characters may not repeat across the strings.
    script: tuple[str, ...] | None = None
    # Sliding-window attention over this many positions (0: none). The model is then Gemma 3-shaped (architecture
    # "gemma3": six layers, the last one global as in the real family, with its extra norms), so the KV cache code
    # meets what it meets with the embedded model: sliding-window layers that keep only their recent cells.
    sliding_window: int = 0


SCRIPTED = ("val=fn(x)", "ok")


# Spellings by FIM role, covering every family above.  Codestral's [PREFIX]
# etc. are included although llama.cpp's own text-based auto-detection skips
# them, so the metadata path can be tested for that family too.
_FIM_ROLE_SPELLINGS: dict[str, tuple[str, ...]] = {
    gguf.Keys.Tokenizer.FIM_PRE_ID: (
        "<|fim_prefix|>",
        "<fim_prefix>",
        "<fim-prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "[PREFIX]",
    ),
    gguf.Keys.Tokenizer.FIM_SUF_ID: (
        "<|fim_suffix|>",
        "<fim_suffix>",
        "<fim-suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "[SUFFIX]",
    ),
    gguf.Keys.Tokenizer.FIM_MID_ID: (
        "<|fim_middle|>",
        "<fim_middle>",
        "<fim-middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "[MIDDLE]",
    ),
    gguf.Keys.Tokenizer.FIM_PAD_ID: ("<|fim_pad|>", "<fim_pad>", "<fim-pad>"),
    gguf.Keys.Tokenizer.FIM_REP_ID: (
        "<|repo_name|>",
        "<|fim_repo|>",
        "<repo_name>",
        "<reponame>",
    ),
    gguf.Keys.Tokenizer.FIM_SEP_ID: (
        "<|file_sep|>",
        "<file_sep>",
        "<|file_separator|>",
    ),
}
_FIM_REQUIRED_ROLES = (
    gguf.Keys.Tokenizer.FIM_PRE_ID,
    gguf.Keys.Tokenizer.FIM_SUF_ID,
    gguf.Keys.Tokenizer.FIM_MID_ID,
)

# BPE merges in plain-text form, lowest rank first.  Each one adds its product
# to the vocabulary; every intermediate must itself be a token, otherwise
# llama.cpp falls back to bytes for that piece and tokenization gets lumpy.
_MERGES: tuple[tuple[str, str], ...] = (
    (" ", " "),
    # The GPT-2 pre-tokenizer hands an indent's last space to the next word
    # ("    return" -> "   " + " return"), so odd-width runs need tokens too.
    ("  ", " "),
    ("  ", "  "),
    ("i", "n"),
    (" ", "in"),
    ("d", "e"),
    ("de", "f"),
    ("r", "e"),
    ("re", "t"),
    ("ret", "u"),
    ("retu", "r"),
    ("retur", "n"),
    (" ", "return"),
    ("s", "e"),
    ("se", "l"),
    ("sel", "f"),
    (" ", "self"),
    ("(", ")"),
    (")", ":"),
)

# Only these bytes (plus merged tokens) get live output-projection rows, so
# greedy output is always printable ASCII that looks vaguely like code.
_GENERATABLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _():.")

# Llama hyperparameters: the smallest shapes that still exercise GQA
# (n_head_kv < n_head) and every tensor llama.cpp's llama loader requires.
_N_EMBD = 64
_N_LAYER = 2
_N_HEAD = 4
_N_HEAD_KV = 2
_N_FF = 128
_HEAD_DIM = _N_EMBD // _N_HEAD
# Gemma 3 makes every sixth layer global and the others sliding-window.
_N_LAYER_SWA_MODEL = 6

# Embedding dimension 0 is a constant "bias channel": every token embeds a
# large value there and no block writes to it, so after the final RMS norm it
# is reliably positive.  Output rows then use it as a per-token logit bias.
_BIAS_CHANNEL_EMBED = 8.0
_ALLOWED_LOGIT_BIAS = 4.0
# Small random output rows keep the logit spread narrow, so sampling with a
# temperature is varied and EOS stays within reach.  (Greedy picks among the
# allowed tokens are unaffected: they all share one bias.)
_OUTPUT_SCALE = 0.2
# EOS competes like a generatable token with a slight handicap.  Measured over
# seeds 0-3 and 100 random code-ish prompts each: greedy max_tokens=16 runs
# reach 16 tokens for every prompt, while temperature-1 sampling stops
# on EOS within 64 tokens in 0-21% of prompts, depending on the seed.
_EOS_LOGIT_BIAS = 3.9


def _gpt2_byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-unicode map, which llama.cpp's
    "gpt2" tokenizer model expects its byte-level tokens to be spelled in."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _encode_piece(text: str, byte_map: dict[int, str]) -> str:
    return "".join(byte_map[b] for b in text.encode("utf-8"))


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    generatable: list[int]
    eos_id: int
    bos_id: int
    special_ids: dict[str, int]


def _build_vocab(spec: TinyModelSpec) -> _Vocab:
    byte_map = _gpt2_byte_to_unicode()
    # Byte tokens sit at id == byte value, which keeps ids easy to reason
    # about in tests and guarantees any UTF-8 text can be tokenized.
    tokens = [byte_map[b] for b in range(256)]
    types = [int(gguf.TokenType.NORMAL)] * 256
    generatable = [b for b in range(256) if chr(b) in _GENERATABLE_CHARS]

    merges: list[str] = []
    for left, right in _MERGES:
        enc_left = _encode_piece(left, byte_map)
        enc_right = _encode_piece(right, byte_map)
        merges.append(f"{enc_left} {enc_right}")
        product = enc_left + enc_right
        if product not in tokens:
            generatable.append(len(tokens))
            tokens.append(product)
            types.append(int(gguf.TokenType.NORMAL))

    special_ids: dict[str, int] = {}
    for text in (spec.eos_token, BOS_TOKEN, *spec.special_tokens):
        if text in special_ids:
            continue
        if not text:
            raise ValueError("special tokens must be non-empty strings")
        special_ids[text] = len(tokens)
        # Control tokens are stored as raw text, not byte-mapped: llama.cpp
        # matches them verbatim when tokenizing with special=True.
        tokens.append(text)
        types.append(int(gguf.TokenType.CONTROL))

    return _Vocab(
        tokens=tokens,
        types=types,
        merges=merges,
        generatable=generatable,
        eos_id=special_ids[spec.eos_token],
        bos_id=special_ids[BOS_TOKEN],
        special_ids=special_ids,
    )


def _fim_metadata(special_ids: dict[str, int]) -> dict[str, int]:
    found: dict[str, int] = {}
    for key, spellings in _FIM_ROLE_SPELLINGS.items():
        for spelling in spellings:
            if spelling in special_ids:
                found[key] = special_ids[spelling]
                break
    # Half a FIM token set is not FIM support; writing partial ids would make
    # llama.cpp (and our own detection) believe infill works when it cannot.
    if not all(role in found for role in _FIM_REQUIRED_ROLES):
        return {}
    return found


Tensor = npt.NDArray[np.float32]


def _build_tensors(vocab: _Vocab, seed: int, n_layer: int = _N_LAYER) -> dict[str, Tensor]:
    rng = np.random.default_rng(seed)
    n_vocab = len(vocab.tokens)

    def normal(shape: tuple[int, ...], scale: float) -> Tensor:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # numpy shapes are (rows=out_features, cols=in_features); gguf reverses
    # them into ggml's ne order, which is what llama.cpp's loader checks.
    embd = normal((n_vocab, _N_EMBD), 1.0)
    embd[:, 0] = _BIAS_CHANNEL_EMBED

    tensors: dict[str, Tensor] = {"token_embd.weight": embd}
    proj_scale = 1.0 / np.sqrt(_N_EMBD)
    for i in range(n_layer):
        attn_out = normal((_N_EMBD, _N_EMBD), proj_scale)
        ffn_down = normal((_N_EMBD, _N_FF), 1.0 / np.sqrt(_N_FF))
        # Blocks must not write into the bias channel or its sign could flip.
        attn_out[0, :] = 0.0
        ffn_down[0, :] = 0.0
        blk = f"blk.{i}"
        tensors.update(
            {
                f"{blk}.attn_norm.weight": np.ones(_N_EMBD, dtype=np.float32),
                f"{blk}.attn_q.weight": normal((_N_EMBD, _N_EMBD), proj_scale),
                f"{blk}.attn_k.weight": normal((_N_HEAD_KV * _HEAD_DIM, _N_EMBD), proj_scale),
                f"{blk}.attn_v.weight": normal((_N_HEAD_KV * _HEAD_DIM, _N_EMBD), proj_scale),
                f"{blk}.attn_output.weight": attn_out,
                f"{blk}.ffn_norm.weight": np.ones(_N_EMBD, dtype=np.float32),
                f"{blk}.ffn_gate.weight": normal((_N_FF, _N_EMBD), proj_scale),
                f"{blk}.ffn_up.weight": normal((_N_FF, _N_EMBD), proj_scale),
                f"{blk}.ffn_down.weight": ffn_down,
            }
        )

    # Everything not generatable keeps an all-zero row (logit exactly 0), so
    # control tokens and non-ASCII bytes never win against the positively
    # biased generatable tokens.
    output = np.zeros((n_vocab, _N_EMBD), dtype=np.float32)
    allowed = np.asarray(vocab.generatable)
    output[allowed, 1:] = normal((len(allowed), _N_EMBD - 1), _OUTPUT_SCALE)
    output[allowed, 0] = _ALLOWED_LOGIT_BIAS
    output[vocab.eos_id, 1:] = normal((_N_EMBD - 1,), _OUTPUT_SCALE)
    output[vocab.eos_id, 0] = _EOS_LOGIT_BIAS

    tensors["output_norm.weight"] = np.ones(_N_EMBD, dtype=np.float32)
    tensors["output.weight"] = output
    return tensors


def _build_scripted_tensors(vocab: _Vocab, seed: int, script: tuple[str, ...]) -> dict[str, Tensor]:
    """A bigram machine: blocks write nothing, so the last token alone picks the next one.

    Script characters get orthogonal embedding axes (1..k), every other token lives on the remaining axes, so
    logits are exact: the successor of a script character scores ~45, the scripts' first characters score ~11 for
    any other token (the first string a little higher than the rest), everything else 0.
    """
    tensors = _build_tensors(vocab, seed)
    chars = [c for text in script for c in text]
    if len(set(chars)) != len(chars):
        raise ValueError("script characters must all differ (a bigram machine cannot repeat one)")
    if any(c.encode() not in (bytes([b]) for b in range(128)) for c in chars):
        raise ValueError("script characters must be ASCII")
    n_axes = len(chars)
    if n_axes + 2 > _N_EMBD:
        raise ValueError("script too long for the tiny model's embedding")
    embd = tensors["token_embd.weight"]
    rng = np.random.default_rng(seed + 1)
    embd[:, 1 : 1 + n_axes] = 0.0
    embd[:, 1 + n_axes :] = rng.standard_normal((embd.shape[0], _N_EMBD - 1 - n_axes)).astype(np.float32)
    axis = {ord(c): 1 + i for i, c in enumerate(chars)}
    for token_id, k in axis.items():
        embd[token_id, :] = 0.0
        embd[token_id, 0] = _BIAS_CHANNEL_EMBED
        embd[token_id, k] = _BIAS_CHANNEL_EMBED
    for i in range(_N_LAYER):
        tensors[f"blk.{i}.attn_output.weight"][:] = 0.0
        tensors[f"blk.{i}.ffn_down.weight"][:] = 0.0
    output = np.zeros_like(tensors["output.weight"])
    for text in script:
        for current, following in itertools.pairwise(text):
            output[ord(following), axis[ord(current)]] = 8.0
        output[vocab.eos_id, axis[ord(text[-1])]] = 8.0
    for rank, text in enumerate(script):
        output[ord(text[0]), 0] = 2.0 - 0.03 * rank  # close, so sampling picks among the scripts
    tensors["output.weight"] = output
    return tensors


def _gemma3_tensors(tensors: dict[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    """Gemma 3's per-layer norms besides llama's: on the query and key heads, and after attention and the
    feed-forward block (before each joins the residual). Unit weights: GGUF stores Gemma's norms with the +1
    already folded in. They leave the bias channel alone: attention and feed-forward outputs are zero there."""
    out = dict(tensors)
    for i in range(n_layer):
        blk = f"blk.{i}"
        out[f"{blk}.attn_q_norm.weight"] = np.ones(_HEAD_DIM, dtype=np.float32)
        out[f"{blk}.attn_k_norm.weight"] = np.ones(_HEAD_DIM, dtype=np.float32)
        out[f"{blk}.post_attention_norm.weight"] = np.ones(_N_EMBD, dtype=np.float32)
        out[f"{blk}.post_ffw_norm.weight"] = np.ones(_N_EMBD, dtype=np.float32)
    return out


def write_tiny_gguf(path: Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write a deterministic tiny GGUF model to ``path``: llama-shaped, or Gemma 3-shaped with ``sliding_window``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vocab = _build_vocab(spec)
    n_layer = _N_LAYER
    if spec.sliding_window:
        if spec.script or spec.architecture not in ("llama", "gemma3"):
            raise ValueError(
                "a sliding-window model is a random-weight gemma3 model (no script, no other architecture)"
            )
        spec = dataclasses.replace(spec, architecture="gemma3")
        n_layer = _N_LAYER_SWA_MODEL
    if spec.script:
        tensors = _build_scripted_tensors(vocab, spec.seed, spec.script)
    elif spec.sliding_window:
        tensors = _gemma3_tensors(_build_tensors(vocab, spec.seed, n_layer), n_layer)
    else:
        tensors = _build_tensors(vocab, spec.seed)

    # Write beside the target and rename, so a concurrently starting test or
    # an interrupted run never sees a half-written model at ``path``.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp_path, spec.architecture)
    try:
        writer.add_name(spec.name)
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
        writer.add_context_length(spec.context_length)
        writer.add_embedding_length(_N_EMBD)
        writer.add_block_count(n_layer)
        writer.add_feed_forward_length(_N_FF)
        writer.add_head_count(_N_HEAD)
        writer.add_head_count_kv(_N_HEAD_KV)
        writer.add_rope_dimension_count(_HEAD_DIM)
        writer.add_rope_freq_base(10000.0)
        writer.add_layer_norm_rms_eps(1e-5)
        if spec.sliding_window:
            writer.add_sliding_window(spec.sliding_window)
        writer.add_vocab_size(len(vocab.tokens))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_merges(vocab.merges)
        writer.add_bos_token_id(vocab.bos_id)
        writer.add_eos_token_id(vocab.eos_id)
        # Completion prompts are sent verbatim; an implicit BOS would shift
        # token counts and make FIM prompt tests family-dependent.
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        if spec.fim_token_ids:
            for key, token_id in _fim_metadata(vocab.special_ids).items():
                writer.add_uint32(key, token_id)
        if spec.chat_template is not None:
            writer.add_chat_template(spec.chat_template)

        for name, data in tensors.items():
            writer.add_tensor(name, data)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_path, path)
    except BaseException:
        writer.close()
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_truncated_copy(src: Path, dst: Path, keep_fraction: float = 0.5) -> Path:
    """Copy the first ``keep_fraction`` of ``src`` to ``dst`` (a torn download)."""
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1), got {keep_fraction}")
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * keep_fraction)])
    return dst


def write_not_gguf(dst: Path) -> Path:
    """Write a plain-text file with a model-like name (wrong magic bytes)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(b"This is not a GGUF model, just some text.\n" * 8)
    return dst
