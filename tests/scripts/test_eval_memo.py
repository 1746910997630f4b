"""The evaluation memo: answers kept by a key of everything they depend on, a file that survives a cut line."""

from __future__ import annotations

from pathlib import Path

from fimble.evaluation.memo import ModelMemo


def test_memo_keeps_answers_across_instances(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"weights")
    path = tmp_path / "memo.jsonl"
    memo = ModelMemo(path, str(model))
    key = memo.key("log_likelihood", [1, 2, 3], [4])
    assert memo.key("log_likelihood", [1, 2, 3], [4]) == key != memo.key("log_likelihood", [1, 2], [3, 4])
    assert memo.get(key) is None and memo.misses == 1
    memo.put(key, -1.5)
    path.write_text(path.read_text() + '{"key": "abc", "val')  # a run killed mid-line
    again = ModelMemo(path, str(model))
    assert again.get(key) == -1.5 and again.hits == 1
    again.put(again.key("x"), 2.0)  # starts on a line of its own after the cut one
    assert ModelMemo(path, str(model)).get(again.key("x")) == 2.0
    model.write_bytes(b"other weights")  # the model file changed: its answers are another model's
    fresh = ModelMemo(path, str(model))
    assert fresh.get(fresh.key("log_likelihood", [1, 2, 3], [4])) is None
