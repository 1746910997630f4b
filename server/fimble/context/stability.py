"""Keep the context part of consecutive prompts the same, so the model's KV cache keeps serving the window after it.

Context snippets come before the cursor window in the prompt. A snippet that appears, disappears or moves between
two keystrokes makes the model evaluate everything after it again: on a laptop CPU that is the whole window, a
second or more, for a change the user did not ask for. So a request keeps the snippets its document's previous
request sent, in the same order, while their sources still propose them; snippets new to the prompt go after them
(the end of the context part, right before the window); and a source that ran out of time this keystroke lends
its previous answer, which was computed a few characters ago and is still good context.
"""

from __future__ import annotations

from collections.abc import Sequence

from fimble.context.source_types import Candidate
from fimble.prompt.assemble import Snippet

Identity = tuple[str, str, str]  # (source, path, text)


def identity(snippet: Snippet) -> Identity:
    return snippet.source, snippet.path, snippet.text


def choose_stable(
    previous: Sequence[Snippet], candidates: Sequence[Candidate], budget_tokens: int, source_order: Sequence[str]
) -> list[Candidate]:
    """Candidates within `budget_tokens`, in prompt order: those the previous prompt held first, in its order, then
    the best-scored new ones, in source order. Only when the budget cannot hold a previous snippet does it go."""
    by_identity: dict[Identity, Candidate] = {}
    for cand in candidates:
        by_identity.setdefault(identity(cand.snippet), cand)
    kept: list[Candidate] = []
    taken: set[Identity] = set()
    used = 0
    for snippet in previous:
        key = identity(snippet)
        old = by_identity.get(key)
        if old is not None and key not in taken and used + old.tokens <= budget_tokens:
            kept.append(old)
            taken.add(key)
            used += old.tokens
    new: list[Candidate] = []
    for cand in sorted(candidates, key=lambda c: -c.snippet.score):
        key = identity(cand.snippet)
        if key not in taken and used + cand.tokens <= budget_tokens:
            new.append(cand)
            taken.add(key)
            used += cand.tokens
    order = {name: i for i, name in enumerate(source_order)}
    new.sort(key=lambda c: (order.get(c.snippet.source, len(order)), c.key))
    return kept + new


def pick_previous(history: Sequence[Sequence[Snippet]], candidates: Sequence[Candidate]) -> Sequence[Snippet]:
    """Of the recent prompts' context parts (newest first), the one whose longest run of snippets from the start is
    still proposed now: the prompt that shares the most with it is the one the model may still hold (its KV cache,
    or a snapshot of it). An undo, or a line typed and deleted, brings back the sources' earlier answers; keeping
    only the newest arrangement would put a returning snippet last, where no earlier prompt had it."""
    tokens = {identity(c.snippet): c.tokens for c in candidates}
    best: Sequence[Snippet] = history[0] if history else []
    best_run = -1
    for arrangement in history:
        run = 0
        for snippet in arrangement:
            n = tokens.get(identity(snippet))
            if n is None:
                break
            run += n
        if run > best_run:
            best, best_run = arrangement, run
    return best


def remember(history: Sequence[Sequence[Snippet]], chosen: Sequence[Snippet], keep: int) -> list[list[Snippet]]:
    """`history` with `chosen` first (once), at most `keep` arrangements long."""
    chosen = list(chosen)
    return [chosen, *(list(a) for a in history if list(a) != chosen)][:keep]


def lend_previous(fresh: Sequence[Candidate], previous: Sequence[Candidate]) -> list[Candidate]:
    """A source's answer when it ran out of time: what it found now, plus what it found last time."""
    seen = {identity(c.snippet) for c in fresh}
    return list(fresh) + [c for c in previous if identity(c.snippet) not in seen]
