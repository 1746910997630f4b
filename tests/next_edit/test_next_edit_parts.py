"""The next-edit engine's parts on their own: the edit history fed by a real document store, the editable region, the
prompt formats and their budget, the checks, and one prediction with the scripted model."""

from __future__ import annotations

import pytest

from fimble.agent.edits import apply_replacements, word_replacements
from fimble.documents import DocumentStore
from fimble.model.backend import CancelToken
from fimble.next_edit.checks import check_rewrite, refusal
from fimble.next_edit.edit_formats import (
    all_next_edit_formats,
    next_edit_format_by_name,
    select_next_edit_format,
)
from fimble.next_edit.predictor import NextEditRequest, predict
from fimble.next_edit.prompt import build_prompt, original_region
from fimble.next_edit.recent_edits import MAX_HUNK_LINES, EditHistory, Hunk
from fimble.next_edit.region import editable_region, surrounding
from fimble.settings import Settings
from tests.scripted import ScriptedBackend

DEMO = 'import math\n\n\ndef area(radius):\n    """Area of a circle."""\n    return math.pi * radius * radius\n'
URI = "file:///w/demo.py"


def typed(store: DocumentStore, uri: str, line: int, col: int, text: str, end: tuple[int, int] | None = None) -> None:
    doc = store.get(uri)
    version = (doc.version or 0) + 1
    store.change(uri, version, [(text, (line, col), end or (line, col))])


@pytest.fixture
def store() -> tuple[DocumentStore, EditHistory]:
    s = DocumentStore()
    history = EditHistory(lambda uri: uri.rsplit("/", 1)[-1])
    s.on_edit(history.on_edit)
    s.open(URI, DEMO, 1, "python")
    return s, history


# -- history ---------------------------------------------------------------------------------------------------
def test_keystrokes_at_one_place_are_one_hunk(store: tuple[DocumentStore, EditHistory]) -> None:
    s, history = store
    assert history.hunks() == ()  # opening is not an edit
    typed(s, URI, 3, 9, "", (3, 15))  # delete "radius"
    typed(s, URI, 3, 9, "r")
    assert history.hunks() == (Hunk("demo.py", 3, "def area(radius):\n", "def area(r):\n", URI),)


def test_an_edit_elsewhere_or_in_another_file_starts_a_new_hunk_in_order(
    store: tuple[DocumentStore, EditHistory],
) -> None:
    s, history = store
    other = "file:///w/other.py"
    s.open(other, "x = 1\n", 1, "python")
    typed(s, URI, 0, 11, ", cmath")  # import math, cmath
    typed(s, other, 0, 4, "2", (0, 5))
    typed(s, URI, 5, 4, "# done\n    ")
    hunks = history.hunks()
    assert [(h.path, h.start_line) for h in hunks] == [("demo.py", 0), ("other.py", 0), ("demo.py", 5)]
    assert hunks[0].after == "import math, cmath\n" and hunks[1].before == "x = 1\n" and hunks[1].after == "x = 2\n"
    assert (hunks[2].before, hunks[2].after) == ("", "    # done\n")  # an inserted line, nothing replaced


def test_typed_then_undone_leaves_nothing_and_close_drops_the_files_hunks(
    store: tuple[DocumentStore, EditHistory],
) -> None:
    s, history = store
    typed(s, URI, 3, 4, "x")
    typed(s, URI, 3, 4, "", (3, 5))
    assert history.hunks() == ()
    typed(s, URI, 0, 0, "# top\n")
    other = "file:///w/other.py"
    s.open(other, "a\n", 1, "python")
    typed(s, other, 0, 1, "b")
    assert len(history.hunks()) == 2
    history.forget(URI)
    assert [h.path for h in history.hunks()] == ["other.py"]


def test_history_is_bounded_in_count_and_size(store: tuple[DocumentStore, EditHistory]) -> None:
    s, history = store
    for i in range(40):  # the top and the end of the file, in turn: one hunk each
        typed(s, URI, 0 if i % 2 else s.get(URI).text.count("\n"), 0, f"# {i}\n")
    assert len(history.hunks()) == 16
    assert history.hunks()[-1].after.startswith("# 39")
    big = "".join(f"line {i}\n" for i in range(MAX_HUNK_LINES + 5))
    typed(s, URI, 20, 0, big)  # a paste: too big to tell the model anything
    typed(s, URI, 0, 0, "# after\n\n\n")
    assert not any(big in h.after for h in history.hunks())


def test_a_whole_text_change_is_reduced_to_the_lines_that_differ() -> None:
    s = DocumentStore()
    history = EditHistory(lambda uri: "f.py")
    s.on_edit(history.on_edit)
    s.open(URI, DEMO, 1, "python")
    s.change(URI, 2, [(DEMO.replace("radius *", "r *"), None, None)])  # a client that sends whole documents
    assert history.hunks() == (
        Hunk("f.py", 5, "    return math.pi * radius * radius\n", "    return math.pi * r * radius\n", URI),
    )


# -- region ----------------------------------------------------------------------------------------------------
def test_the_region_is_whole_lines_around_the_cursor_kept_inside_the_file() -> None:
    text = "".join(f"l{i}\n" for i in range(100))
    mid = editable_region(text, text.index("l50"), 21)
    assert (mid.first_line, mid.last_line) == (40, 60) and mid.text.startswith("l40\n") and mid.text.endswith("l60\n")
    top = editable_region(text, 3, 21)
    assert (top.first_line, top.last_line) == (0, 20)
    bottom = editable_region(text, len(text), 21)
    assert (bottom.first_line, bottom.last_line) == (79, 99) and bottom.end == len(text)
    small = editable_region("a\nb", 0, 21)
    assert small.text == "a\nb" and (small.first_line, small.last_line) == (0, 1)
    above, below = surrounding(text, mid, 2)
    assert above == "l38\nl39\n" and below == "l61\nl62\n"


# -- formats ---------------------------------------------------------------------------------------------------
def test_formats_are_chosen_from_the_models_tokens_and_name() -> None:
    assert {f.name for f in all_next_edit_formats()} == {"generic", "sweep", "zeta"}
    plain = ScriptedBackend()
    assert select_next_edit_format(plain).name == "generic"
    qwen = ScriptedBackend(specials=("<|file_sep|>", "<|fim_prefix|>", "<|endoftext|>"))
    assert select_next_edit_format(qwen).name == "generic"  # a Qwen coder is not a Sweep model by its tokens alone
    sweep = ScriptedBackend(specials=("<|file_sep|>", "<|fim_prefix|>", "<|endoftext|>"), name="sweep-next-edit-1.5B")
    assert select_next_edit_format(sweep).name == "sweep"
    assert select_next_edit_format(ScriptedBackend(name="zeta-Q4_K_M")).name == "zeta"


@pytest.mark.parametrize("name", ["generic", "sweep", "zeta"])
def test_each_format_round_trips_a_perfect_answer(name: str) -> None:
    fmt = next_edit_format_by_name(name)
    region = "def area(r):\n    return r\n"
    assert fmt.parse(fmt.answer_for(region), "stop", region) == region
    assert fmt.parse(fmt.answer_for("x = 1"), "stop", "x = 0") == "x = 1"  # the last line of a file, no newline
    assert fmt.parse("def area(r):\n    ret", "length", region) is None  # cut off


def test_sweep_prompt_layout_and_what_the_user_cannot_inject() -> None:
    backend = ScriptedBackend(specials=("<|file_sep|>", "<|fim_prefix|>", "<|endoftext|>"))
    fmt = next_edit_format_by_name("sweep")
    text = DEMO.replace("area(radius)", "area(r)") + "# <|file_sep|> in a comment\n"
    region = editable_region(text, text.index("(r)"), 21)
    hunk = Hunk("demo.py", 3, "def area(radius):\n", "def area(r):\n")
    prompt = build_prompt(
        backend, fmt, text=text, region=region, cursor=region.start, path="demo.py", language_id="python",
        hunks=(hunk,), passages=(), budget_tokens=10_000,
    )  # fmt: skip
    assert prompt is not None
    shown = prompt.text()
    assert "<|file_sep|>demo.py.diff\noriginal:\ndef area(radius):\nupdated:\ndef area(r):\n" in shown
    assert "<|file_sep|>original/demo.py\nimport math\n\n\ndef area(radius):\n" in shown
    assert shown.endswith("<|file_sep|>updated/demo.py\n")
    sep = backend.token_id("<|file_sep|>")
    # Five separators come from the template; the one in the user's comment stays text.
    assert prompt.ids.count(sep) == 5
    assert original_region(region, "demo.py", (hunk,)) == DEMO + "# <|file_sep|> in a comment\n"


def test_the_prompt_drops_context_then_old_edits_then_surroundings_to_fit() -> None:
    backend = ScriptedBackend()
    fmt = next_edit_format_by_name("generic")
    text = "".join(f"value_{i} = {i}\n" for i in range(200))
    region = editable_region(text, text.index("value_100"), 5)
    hunks = tuple(Hunk("f.py", i, f"a{i}\n", f"b{i}\n") for i in range(5))
    full = build_prompt(backend, fmt, text=text, region=region, cursor=region.start, path="f.py",
                        language_id="python", hunks=hunks, passages=(), budget_tokens=100_000)  # fmt: skip
    assert full is not None and full.hunks == 5
    tight = build_prompt(backend, fmt, text=text, region=region, cursor=region.start, path="f.py",
                         language_id="python", hunks=hunks, passages=(), budget_tokens=len(full.ids) - 40)  # fmt: skip
    assert tight is not None and len(tight.ids) <= len(full.ids) - 40 and 1 <= tight.hunks < 5
    assert region.text in tight.text()
    assert build_prompt(backend, fmt, text=text, region=region, cursor=region.start, path="f.py",
                        language_id="python", hunks=hunks, passages=(), budget_tokens=50) is None  # fmt: skip


# -- checks ----------------------------------------------------------------------------------------------------
def _check(rewritten: str | None, text: str = DEMO, original: str | None = None) -> tuple[str, str]:
    region = editable_region(text, 0, 21)
    checked = check_rewrite(text, "python", "demo.py", region, rewritten, original)
    return checked.reason, apply_replacements(text, checked.replacements) if checked.replacements else ""


def test_checks_drop_what_should_not_be_shown() -> None:
    assert "cut off" in _check(None)[0]
    assert "unchanged" in _check(DEMO)[0]
    assert "more than the region" in _check(DEMO * 4)[0]
    assert "not an edit" in _check("SELECT * FROM users;\n")[0]
    every_line = "".join(line + "  # x\n" for line in DEMO.splitlines())
    assert "every line" in _check(every_line)[0]
    assert "syntax error" in _check(DEMO.replace("def area(radius):", "def area(radius:"))[0]
    assert (
        "Python's compiler" in _check(DEMO.replace("return math", "return return math"))[0]
        or "syntax" in _check(DEMO.replace("return math", "return return math"))[0]
    )
    before = DEMO.replace("area(radius)", "area(r)")
    assert "undo" in _check(DEMO, text=before, original=DEMO)[0]
    reason, after = _check(DEMO.replace("radius", "r"))
    assert reason == "" and after == DEMO.replace("radius", "r")


def test_no_model_call_for_binary_text_grammarless_languages_or_huge_lines() -> None:
    region = editable_region(DEMO, 0, 21)
    assert "binary" in refusal("a\0b", "python", "x.py", region)
    assert "no grammar" in refusal(DEMO, "plaintext", "notes.txt", region)
    long_line = "x = '" + "a" * 5000 + "'\n"
    assert "characters" in refusal(long_line, "python", "x.py", editable_region(long_line, 0, 21))
    assert refusal(DEMO, "python", "demo.py", region) == ""


def test_word_level_edits_for_display() -> None:
    old, new = "    return math.pi * radius * radius\n", "    return math.pi * r * r\n"
    reps = word_replacements(old, new)
    assert [(old[r.start : r.end], r.text) for r in reps] == [("radius", "r"), ("radius", "r")]
    for a, b in [("a\nb = 1\nc\n", "a\nb = 2\nx\nc\n"), ("a\nb\n", "a\n"), ("f(x)\n", "f(x, y)\n"), ("", "x")]:
        assert apply_replacements(a, word_replacements(a, b)) == b


# -- one prediction ------------------------------------------------------------------------------------------
def test_a_prediction_with_the_scripted_model() -> None:
    fmt = next_edit_format_by_name("generic")
    text = DEMO.replace("area(radius)", "area(r)")

    def answer(prompt: str) -> str:
        head = prompt.rindex(", now\n```python\n") + len(", now\n```python\n")
        return fmt.answer_for(prompt[head : prompt.index("```", head)].replace("radius", "r"))

    backend = ScriptedBackend(answers=[answer])
    hunks = (Hunk("demo.py", 3, "def area(radius):\n", "def area(r):\n"),)
    request = NextEditRequest(text, text.index("(r)") + 2, "python", "demo.py", hunks, Settings())
    got = predict(backend, request, CancelToken())
    assert got.reason == "" and got.format == "generic"
    assert apply_replacements(text, got.replacements) == DEMO.replace("radius", "r")
    assert got.generation is not None and got.generation.stop_reason == "stop"
    prompt = backend.prompts[-1]
    assert "-def area(radius):\n+def area(r):\n" in prompt  # the history is in the prompt
    # A model that is cancelled says so; nothing is shown.
    cancel = CancelToken()
    cancel.cancel()
    assert predict(backend, request, cancel).reason == "cancelled"


def test_the_incremental_syntax_check_matches_a_fresh_parse() -> None:
    """The check re-parses the document's tree with the edits made (several, after non-ASCII text) and compiles
    only the statements they touch: it must see what a whole parse and compile see."""
    text = '# é ≈ ünïcode\nclass Shape:\n    def area(self, radius):\n        """Aire ≈ π r²."""\n        return 3.14 * radius * radius\n\n\ndef perimeter(radius):\n    return 2 * 3.14 * radius\n'
    region = editable_region(text, 0, 21)

    def verdict(new: str) -> str:
        return check_rewrite(text, "python", "shape.py", region, new).reason

    assert verdict(text.replace("radius", "r")) == ""  # six edits, all fine
    assert "tree-sitter" in verdict(text.replace("return 2 * 3.14", "return 2 * (3.14"))
    # Python's compiler sees what tree-sitter accepts: a duplicate argument, a return outside a function.
    assert "Python's compiler" in verdict(text.replace("def perimeter(radius)", "def perimeter(radius, radius)"))
    assert "Python's compiler" in verdict(text.replace("# é ≈ ünïcode\n", "return 1\n"))
    # An error that was there before the edit is not the edit's.
    broken = text.replace("def perimeter(radius, radius)", "").replace(
        "def perimeter(radius)", "def perimeter(radius, radius)"
    )
    region = editable_region(broken, 0, 21)
    assert (
        check_rewrite(
            broken, "python", "shape.py", region, broken.replace("3.14 * radius * radius", "3.14 * radius ** 2")
        ).reason
        == ""
    )


def test_a_rewrite_of_a_shifted_window_is_dropped() -> None:
    """A model that lost its place writes the region moved down (its first lines gone, the lines after it copied)
    or up: not an edit of the region, whatever the diff says."""
    text = "".join(f"value_{i} = compute({i})\n" for i in range(60))
    region = editable_region(text, text.index("value_30"), 21)
    lines = text.splitlines(keepends=True)
    down = "".join(lines[region.first_line + 3 : region.last_line + 4])
    up = "".join(lines[region.first_line - 3 : region.last_line - 2])
    for shifted_window in (down, up):
        reason = check_rewrite(text, "python", "v.py", region, shifted_window).reason
        assert "more than the region" in reason
    edited = region.text.replace("compute(31)", "compute(31, fast=True)")
    assert check_rewrite(text, "python", "v.py", region, edited).reason == ""


def test_a_model_not_trained_for_next_edits_must_follow_the_users_edits() -> None:
    """The generic format's gate: a base model's edit is shown only when it takes away or brings in a name the
    user's last edits did; a trained model's (Sweep) is shown on the checks alone."""
    text = DEMO.replace("area(radius)", "area(r)")
    hunks = (Hunk("demo.py", 3, "def area(radius):\n", "def area(r):\n"),)
    request = NextEditRequest(text, text.index("(r)") + 2, "python", "demo.py", hunks, Settings())
    unrelated = text.replace("math.pi", "math.tau / 2")
    for backend, shown in ((ScriptedBackend(), False), (ScriptedBackend(specials=SWEEP, name="sweep-ne"), True)):
        fmt = select_next_edit_format(backend)
        backend.answers = [fmt.answer_for(unrelated)]
        got = predict(backend, request, CancelToken())
        assert bool(got.replacements) is shown, (fmt.name, got.reason)
        if not shown:
            assert got.reason == "the edit does not follow the user's recent edits"
        backend.answers = [fmt.answer_for(text.replace("radius", "r"))]
        assert predict(backend, request, CancelToken()).replacements  # the rename followed: shown by both


SWEEP = ("<|file_sep|>", "<|fim_prefix|>", "<|endoftext|>")
