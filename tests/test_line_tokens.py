"""Line-by-line tokenization with a memo: always the same ids as tokenizing the whole text."""

from __future__ import annotations

from pathlib import Path

from fimble.model.line_tokens import LineTokenMemo
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.settings import Settings

CODE = "".join(
    f"def f{i}(x):\n    if x > {i}:\n        return x * {i}  # ünïcode\n    \n\n\treturn None\n" for i in range(60)
)


def test_memo_matches_whole_text_tokenization_on_a_real_tokenizer(tiny_fim_model: Path) -> None:
    backend = LlamaCppBackend(tiny_fim_model, Settings(n_ctx=512, n_threads=1))
    try:
        assert backend._lines.exact
        for text in (CODE, CODE[7:], CODE[:-3], "x" * 600 + "\n  y\n", CODE.replace("\n", "\r\n")):
            assert backend.tokenize(text) == backend._tokenize_text(text)
            assert backend.tokenize(text) == backend._tokenize_text(text)  # again, from the memo
    finally:
        backend.close()


def test_a_tokenizer_that_is_not_line_separable_is_called_on_the_whole_text() -> None:
    calls: list[str] = []

    def with_dummy_prefix(text: str) -> list[int]:  # like an SPM vocabulary adding a space to every call
        calls.append(text)
        return [0] + [ord(c) for c in text]

    memo = LineTokenMemo(with_dummy_prefix)
    assert not memo.exact
    calls.clear()
    assert memo.tokenize(CODE) == with_dummy_prefix(CODE)
    assert calls == [CODE, CODE]


def test_the_memo_is_bounded_in_characters() -> None:
    memo = LineTokenMemo(lambda text: [ord(c) for c in text], max_chars=300)
    assert memo.exact
    assert memo.tokenize(CODE) == [ord(c) for c in CODE]
    assert 0 < memo.chars <= 300 and sum(len(line) for line in memo._memo) == memo.chars
    # typing on one line makes a new line per keystroke: the memo starts over instead of growing
    for n in range(200):
        text = CODE + "    value = compute(" + "x" * n + ")\n"
        assert memo.tokenize(text) == [ord(c) for c in text]
        assert memo.chars <= 300
    # a line longer than any worth keeping is tokenized, not memoised
    long_line = "data = [" + "1, " * 1000 + "]\n"
    assert memo.tokenize(CODE + long_line) == [ord(c) for c in CODE + long_line]
    assert long_line not in memo._memo
