"""The pieces without a server: virtual tokens and their calibration, format choice, URLs, slots, the bench helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from fimble.errors import SettingsError
from fimble.model.remote.format_choice import choose, format_from_name, synthetic_header
from fimble.model.remote.http import parse_url
from fimble.model.remote.llama_server import stable_slot
from fimble.model.remote.tokenizers import CachedTokenizer, EstimateTokenizer
from fimble.settings import Settings
from fimble_dev.remote_latency import measure_latency
from tests.remote.conftest import Served, remote_settings

CODE = (
    "def read_config(path):\n    result = {}\n    with open(path) as fh:\n        for line in fh:\n"
    "            key, _, value = line.partition('=')  # ünïcödé ✓ 😀\n            result[key] = 42_000\n"
)


def test_virtual_tokens_decode_to_the_exact_text() -> None:
    est = EstimateTokenizer()
    ids = est.tokenize(CODE)
    assert est.detokenize(ids) == CODE
    assert all(i > 0 for i in ids)
    special = est.special_id("<|fim_prefix|>")
    assert special < 0 and est.special_id("<|fim_prefix|>") == special
    assert est.detokenize([special, *est.tokenize("x")]) == "<|fim_prefix|>x"
    # Roughly one virtual token per 3-4 characters of code, like real code tokenizers.
    assert len(CODE) / 6 < len(ids) < len(CODE) / 2


def test_calibration_follows_the_server_counts() -> None:
    est = EstimateTokenizer()
    n = est.count(CODE)
    for _ in range(8):  # the server counts twice as many tokens as we estimate
        est.observe(est.count(CODE), 2 * n)
    calibrated = est.count(CODE)
    assert 2 * n <= calibrated <= 2 * n * 1.3  # caught up, with the safety margin on top
    assert est.detokenize(est.tokenize(CODE)) == CODE
    before = est.ratio
    est.observe(3, 100)  # tiny prompts say nothing about text
    assert est.ratio == before


def test_cached_tokenizer_asks_the_server_once_per_text() -> None:
    calls: list[str] = []

    def server(text: str) -> list[int]:
        calls.append(text)
        return [len(text)]

    tok = CachedTokenizer(server, capacity=2)
    assert tok("abc") == [3] and tok("abc") == [3] and tok("") == []
    tok("d")
    tok("e")
    tok("abc")
    assert calls == ["abc", "d", "e", "abc"]


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("Qwen/Qwen2.5-Coder-7B", "qwen2.5-coder"),
        ("qwen2.5-coder:1.5b-base", "qwen2.5-coder"),
        ("bigcode/starcoder2-15b", "starcoder2"),
        ("deepseek-coder-6.7b-base", "deepseek-coder"),
        ("codellama/CodeLlama-13b-hf", "codellama"),
        ("mistralai/Codestral-22B-v0.1", "codestral"),
        ("google/codegemma-2b", "codegemma"),
        ("ibm-granite/granite-8b-code-base", "granite"),
    ],
)
def test_family_from_model_name(model_id: str, family: str) -> None:
    fmt = format_from_name(model_id)
    assert fmt is not None and fmt.name == family


def test_format_choice_order() -> None:
    qwen_vocab = synthetic_header(
        "m", "qwen2", ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>"]
    )
    empty_vocab = synthetic_header("qwen2.5-coder-7b", "qwen2", [])
    assert choose(remote_settings(prompt_format="starcoder2"), model_id="x", header=qwen_vocab)[0].name == "starcoder2"
    assert choose(remote_settings(), model_id="x", header=qwen_vocab) == (
        choose(remote_settings(), model_id="x", header=qwen_vocab)[0],
        "model vocabulary",
    )
    assert choose(remote_settings(), model_id="x", header=qwen_vocab)[0].name == "qwen2.5-coder"
    # A vocabulary without FIM tokens beats a name that suggests them.
    assert choose(remote_settings(), model_id="qwen2.5-coder-7b", header=empty_vocab)[0].name == "prefix-only"
    assert choose(remote_settings(), model_id="qwen2.5-coder-7b", header=None)[1] == "model name"
    assert choose(Settings(), model_id="llama-3", header=None)[0].name == "prefix-only"
    with pytest.raises(SettingsError, match="promptFormat"):
        choose(remote_settings(prompt_format="gpt-17"), model_id="x", header=None)


def test_urls() -> None:
    ep = parse_url("https://gpu-box.lan/llm/v1/", "openai", ("/v1",))
    assert (ep.scheme, ep.host, ep.port, ep.prefix) == ("https", "gpu-box.lan", 443, "/llm")
    assert parse_url("http://[::1]:8080", "llama-server").display == "http://[::1]:8080"


def test_slots_are_stable_and_spread() -> None:
    assert stable_slot(1) is None
    assert stable_slot(4, "alice@box:/src/a") == stable_slot(4, "alice@box:/src/a")
    assert len({stable_slot(8, f"user{i}@box:/src") for i in range(40)}) > 4


def test_bench_helper_measures_a_remote_and_the_local_engine(llama_cpp_python_server: Served, tiny_model: Path) -> None:
    remote = measure_latency(
        remote_settings(backend="openai", url=llama_cpp_python_server.url, remote_model="tiny-plain"),
        runs=2,
        max_tokens=4,
    )
    local = measure_latency(Settings(model=str(tiny_model), n_threads=1, n_ctx=1024), runs=2, max_tokens=4)
    for report in (remote, local):
        assert report["model"] == "tiny-plain" and len(report["runs"]) == 2
        assert report["median_total_ms"] > 0 and report["runs"][0]["generated_tokens"] >= 1
    assert remote["backend"] == "openai" and remote["url"] == llama_cpp_python_server.url
