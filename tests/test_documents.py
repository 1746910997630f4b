from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fimble.documents import Document, DocumentStore
from fimble.documents.document import ByteMap, TextEdit, byte_offset, split_lines, utf8_len, utf16_to_index
from fimble.errors import DocumentError


def test_utf16_columns_count_astral_characters_twice() -> None:
    doc = Document(uri="file:///a.py", text="x = '😀' + y\n")
    # '😀' (index 5) is one Python character but two UTF-16 code units.
    assert doc.offset_at(0, 5) == 5
    assert doc.offset_at(0, 7) == 6
    assert doc.position_at(6) == (0, 7)
    with pytest.raises(DocumentError, match="surrogate"):
        doc.offset_at(0, 6)
    with pytest.raises(ValueError):
        utf16_to_index("😀", 1)


def test_positions_past_the_end_are_errors() -> None:
    doc = Document(uri="file:///a.py", text="ab\ncd")
    assert doc.offset_at(1, 2) == 5
    for line, character in ((0, 3), (2, 0), (-1, 0), (0, -1)):
        with pytest.raises(DocumentError):
            doc.offset_at(line, character)


def test_mixed_line_endings() -> None:
    doc = Document(uri="file:///a.py", text="a\r\nbb\rccc\nd")
    assert doc.line_count == 4
    assert [doc.line(i) for i in range(4)] == ["a", "bb", "ccc", "d"]
    assert split_lines(doc.text) == ["a", "bb", "ccc", "d"]
    assert doc.offset_at(2, 1) == doc.text.index("ccc") + 1


def test_incremental_edit_reports_tree_sitter_coordinates() -> None:
    doc = Document(uri="file:///a.py", text="é = 1\nx = 2\n")
    edit = doc.apply_change("yy", (1, 0), (1, 1))
    assert doc.text == "é = 1\nyy = 2\n"
    # 'é' is two UTF-8 bytes: the second line starts at byte 7.
    assert edit.start_byte == 7 and edit.old_end_byte == 8 and edit.new_end_byte == 9
    assert edit.start_point == (1, 0) and edit.old_end_point == (1, 1) and edit.new_end_point == (1, 2)


def test_store_applies_changes_in_order_and_rejects_unknown_documents() -> None:
    store = DocumentStore()
    seen: list[int] = []
    store.on_edit(lambda doc, edits: seen.append(len(edits)))
    store.open("file:///a.py", "abc", 1, "python")
    store.change("file:///a.py", 2, [("X", (0, 1), (0, 2)), ("Y", (0, 0), (0, 0))])
    assert store.get("file:///a.py").text == "YaXc"
    assert store.get("file:///a.py").version == 2
    assert seen == [1, 2]
    with pytest.raises(DocumentError, match="not open"):
        store.get("file:///missing.py")
    with pytest.raises(DocumentError):
        store.change("file:///a.py", 3, [("z", (5, 0), (5, 1))])


def test_utf8_and_utf32_position_encodings() -> None:
    text = "é😀x\n"
    assert Document(uri="u", text=text, encoding="utf-8").offset_at(0, 6) == 2  # é = 2 bytes, 😀 = 4
    assert Document(uri="u", text=text, encoding="utf-8").position_at(3) == (0, 7)
    assert Document(uri="u", text=text, encoding="utf-32").offset_at(0, 2) == 2
    with pytest.raises(DocumentError):
        Document(uri="u", text=text, encoding="utf-8").offset_at(0, 1)  # inside 'é'


_PIECES = st.sampled_from(["a", "bc", "\n", "\r", "\r\n", "é", "😀", " "])
_TEXT = st.lists(_PIECES, max_size=12).map("".join)


@given(text=_TEXT, edits=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), _TEXT), max_size=4))
@settings(max_examples=400, deadline=None)
def test_line_index_follows_edits_as_a_full_scan_would(text: str, edits: list[tuple[float, float, str]]) -> None:
    """Only the lines around an edit are scanned again: a '\\r' and a '\\n' meeting across its ends must still make
    one line break, and every later line must move by the edit's length."""
    doc = Document(uri="u", text=text)
    for a, b, new in edits:
        start, end = sorted((round(a * len(doc.text)), round(b * len(doc.text))))
        if doc.text[start - 1 : start + 1] == "\r\n" or doc.text[end - 1 : end + 1] == "\r\n":
            continue  # no LSP position lies inside a line break
        expected = doc.text[:start] + new + doc.text[end:]
        doc.apply_change(new, doc.position_at(start), doc.position_at(end))
        assert doc.text == expected
        fresh = Document(uri="u", text=expected)
        assert [doc.line(r) for r in range(doc.line_count)] == [fresh.line(r) for r in range(fresh.line_count)]
        assert list(doc._line_starts) == list(fresh._line_starts)
        assert doc.size_bytes == len(expected.encode("utf-8"))


def test_a_document_over_the_size_limit_is_kept_in_step_but_not_announced() -> None:
    store = DocumentStore(max_bytes=10)
    announced: list[tuple[str, list[TextEdit]]] = []
    store.on_edit(lambda doc, edits: announced.append((doc.text, edits)))
    doc = store.open("file:///big.py", "x = 1\ny = 22\n", 1, "python")  # 13 bytes
    assert store.oversized(doc) and announced == []
    store.change("file:///big.py", 2, [("3", (1, 4), (1, 6))])  # still 12 bytes: applied, not announced
    assert doc.text == "x = 1\ny = 3\n" and announced == []
    store.change("file:///big.py", 3, [("", (0, 0), (1, 0))])  # 6 bytes: back, as one edit of the whole text
    ((text, edits),) = announced
    assert text == "y = 3\n" and edits == [doc.whole_edit()]
    assert edits[0].start_byte == 0 and edits[0].old_end_byte == 0 and edits[0].new_end_byte == 6
    # a lower limit puts it over again (the caller drops what it kept); a higher one announces it once more
    assert store.set_limit(4) == [doc] and len(announced) == 1
    assert store.set_limit(0) == [] and len(announced) == 2 and not store.oversized(doc)
    # the limit counts UTF-8 bytes, not characters
    assert Document(uri="u", text="é😀").size_bytes == 6


@pytest.mark.parametrize("text", ["plain ascii", "é = 'naïve'\n", "x = '😀'  # 中文\n", "\ud800 lone surrogate"])
def test_byte_offsets_and_back(text: str) -> None:
    """One UTF-8 offset helper for documents, syntax trees, the context window and diagnostics."""
    data = text.encode("utf-8", "surrogatepass")
    bmap = ByteMap(text)
    assert utf8_len(text) == len(data)
    for i in range(len(text) + 1):
        b = byte_offset(text, i)
        assert b == len(text[:i].encode("utf-8", "surrogatepass"))
        assert bmap.to_byte(i) == b
        assert bmap.to_index(b) == i
