"""Context that stays put between keystrokes, so the KV cache after it stays valid."""

from __future__ import annotations

from pathlib import Path

from fimble.context.engine import SOURCE_ORDER, ContextEngine
from fimble.context.source_types import Candidate, ContextQuery
from fimble.context.stability import choose_stable, lend_previous, pick_previous, remember
from fimble.documents import DocumentStore
from fimble.prompt.assemble import Snippet
from tests.context.conftest import gather


def cand(source: str, path: str, score: float, tokens: int = 10) -> Candidate:
    return Candidate(Snippet(source, path, f"text of {path}", score), tokens, key=(path,))


def paths(cands: list[Candidate]) -> list[str]:
    return [c.snippet.path for c in cands]


def test_first_request_takes_the_best_in_source_order() -> None:
    found = [
        cand("scope", "s", 0.9),
        cand("definitions", "d1", 0.5),
        cand("definitions", "d2", 0.1),
        cand("git", "g", 0.7),
    ]
    assert paths(choose_stable([], found, 30, SOURCE_ORDER)) == ["g", "d1", "s"]


def test_previous_snippets_keep_their_place_and_new_ones_go_after_them() -> None:
    previous = [c.snippet for c in (cand("git", "g", 0.7), cand("definitions", "d1", 0.5))]
    # the user typed a name: a better definition turns up, and d1 now scores lower than it
    found = [cand("definitions", "d0", 0.95), cand("definitions", "d1", 0.2), cand("git", "g", 0.7)]
    assert paths(choose_stable(previous, found, 30, SOURCE_ORDER)) == ["g", "d1", "d0"]


def test_a_snippet_no_source_proposes_any_more_leaves() -> None:
    previous = [c.snippet for c in (cand("git", "g", 0.7), cand("definitions", "d1", 0.5))]
    assert paths(choose_stable(previous, [cand("git", "g", 0.7)], 30, SOURCE_ORDER)) == ["g"]


def test_changed_text_is_a_new_snippet() -> None:
    previous = [Snippet("scope", "s", "old outline", 0.9)]
    now = Candidate(Snippet("scope", "s", "new outline", 0.9), 10)
    assert choose_stable(previous, [now], 30, SOURCE_ORDER) == [now]


def test_the_budget_still_holds() -> None:
    previous = [c.snippet for c in (cand("git", "g", 0.7, 20), cand("definitions", "d1", 0.5, 20))]
    found = [cand("git", "g", 0.7, 20), cand("definitions", "d1", 0.5, 20), cand("scope", "s", 0.9, 5)]
    chosen = choose_stable(previous, found, 30, SOURCE_ORDER)
    assert paths(chosen) == ["g", "s"]
    assert sum(c.tokens for c in chosen) <= 30


def test_a_source_out_of_time_lends_its_previous_answer() -> None:
    fresh = [cand("definitions", "d1", 0.5)]
    previous = [cand("definitions", "d1", 0.5), cand("definitions", "d2", 0.4)]
    assert paths(lend_previous(fresh, previous)) == ["d1", "d2"]
    assert paths(lend_previous([], previous)) == ["d1", "d2"]


def test_an_open_document_keeps_its_snippets_in_place_while_the_user_types(repo: Path) -> None:
    engine = ContextEngine(repo, cache_file=False)
    store = DocumentStore()
    engine.attach(store)
    engine.index_now()
    uri = (repo / "app/other.py").as_uri()
    filler = "".join(f"# note {i}\n" for i in range(50))  # the import is out of the names' reach
    # midpoint is not imported (an imported name would be offered before its first use): typing it brings it in
    head = "from pkg.units import to_metres\n" + filler + "\n\ndef stroll(a, b):\n"
    doc = store.open(uri, head + "    t = to_metres(a, 2.0)\n", 1, "python")

    def snippets_at_end() -> list[Snippet]:
        query = ContextQuery(text=doc.text, offset=len(doc.text), language_id="python", path="app/other.py", uri=uri)
        return gather(engine, query, sources=("definitions",)).snippets

    first = snippets_at_end()
    assert [s.path for s in first] == ["pkg/units.py"]
    # the user types a call to a function from a file that sorts earlier: it joins after what the prompt held
    row = doc.text.count("\n")
    store.change(uri, 2, [("    m = midpoint(a, b)\n", (row, 0), (row, 0))])
    second = snippets_at_end()
    assert [s.path for s in second] == ["pkg/units.py", "pkg/geometry.py"]
    engine.close()


def test_after_an_undo_the_context_comes_back_in_its_earlier_order() -> None:
    before = [cand("git", "g", 0.7), cand("similar", "s1", 0.5), cand("definitions", "d1", 0.5)]
    history: list[list[Snippet]] = remember([], [c.snippet for c in before], 4)
    # A wrong suggestion is accepted: the similar-code source finds another passage.
    after = [cand("git", "g", 0.7), cand("similar", "s2", 0.5), cand("definitions", "d1", 0.5)]
    chosen = choose_stable(pick_previous(history, after), after, 100, SOURCE_ORDER)
    assert paths(chosen) == ["g", "d1", "s2"]
    history = remember(history, [c.snippet for c in chosen], 4)
    # Undone: the sources answer as before, and the prompt is the earlier one again, not g, d1, s1.
    again = choose_stable(pick_previous(history, before), before, 100, SOURCE_ORDER)
    assert paths(again) == ["g", "s1", "d1"]
    assert len(remember(remember(history, [c.snippet for c in again], 4), [], 2)) == 2


def test_the_newest_arrangement_wins_a_tie() -> None:
    one = [cand("git", "g", 0.7).snippet, cand("similar", "s1", 0.5).snippet]
    two = [cand("git", "g", 0.7).snippet, cand("similar", "s2", 0.5).snippet]
    assert pick_previous([two, one], [cand("git", "g", 0.7)]) == two
    assert pick_previous([], [cand("git", "g", 0.7)]) == []
