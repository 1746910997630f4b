"""Snapshots of the model's KV cache for prompts it moved away from, so it can move back without evaluating them
again.

One KV cache serves one prompt. When the next prompt shares only its first few hundred tokens with it (a context
snippet joined or left the prompt, or the user switched files), everything after the shared part is thrown away
and evaluated again: on a laptop CPU, seconds. Typing often flips back: the snippet leaves again a keystroke later,
the user switches back. llama.cpp's `llama-server` keeps such prompts in host memory (its prompt cache) and
restores the one that shares the most with a new request; this is the same for the in-process model. A snapshot
holds only the sequence's used cells (about 8 KB per token for Gemma 3 270M), taking it costs about 10 ms and
restoring it about 2 ms, against a second or more to evaluate the tokens again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A snapshot is taken, or restored, only when it saves at least this many tokens of prompt evaluation (about a
# tenth of a second on a laptop CPU); below that, copying the state costs about as much as evaluating them.
MIN_SAVED_TOKENS = 128


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class Checkpoint:
    """The sliding-window layers' state when the cache ended at `position`. llama.cpp saves only the cells a next
    token can still see, so it takes the cache back to exactly `position` (the other layers hold every position),
    and the prompt is evaluated again from there."""

    position: int
    data: bytes
    # Placed where a prompt is likely to part (a part boundary, where a feed stopped, just before the end), not
    # just on the window's grid: thinned last.
    placed: bool = True


def reach(checkpoints: Sequence[Checkpoint], keep: int) -> Checkpoint | None:
    """The checkpoint closest below (or at) `keep`."""
    best: Checkpoint | None = None
    for checkpoint in checkpoints:
        if checkpoint.position <= keep and (best is None or checkpoint.position > best.position):
            best = checkpoint
    return best


def thin(checkpoints: Sequence[Checkpoint], most: int) -> list[Checkpoint]:
    """At most `most` of `checkpoints` (in position order). While there are more, one on the window's grid goes
    before any placed one, and among those the one worth least: a checkpoint saves the tokens back to its
    predecessor for a prompt that parts between it and its successor, so its worth is the product of the two gaps.
    The last one always stays: it is the newest, where the next prompt most likely parts."""
    kept = sorted(checkpoints, key=lambda c: c.position)
    while len(kept) > max(1, most):
        worth = [
            (c.placed, (c.position - (kept[i - 1].position if i else 0)) * (kept[i + 1].position - c.position), i)
            for i, c in enumerate(kept[:-1])
        ]
        del kept[min(worth)[2]]
    return kept


@dataclass(frozen=True)
class Snapshot:
    tokens: tuple[int, ...]
    data: bytes
    # The shortest prefix the restored cache can be trimmed to on its own: 0, or with sliding-window layers (whose
    # saved cells are only the last window) the whole snapshot; shorter prefixes go through its checkpoints.
    min_keep: int = 0
    checkpoints: tuple[Checkpoint, ...] = ()

    @property
    def size_bytes(self) -> int:
        return len(self.data) + sum(len(c.data) for c in self.checkpoints)

    def usable(self, shared: int) -> int:
        """How much of a prompt sharing `shared` tokens with it the restored cache can keep."""
        if shared >= self.min_keep:
            return shared
        checkpoint = reach(self.checkpoints, shared)
        return checkpoint.position if checkpoint is not None else 0


class PromptStates:
    """The most recently used snapshots, within `budget_bytes`."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: list[Snapshot] = []  # least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self._entries)

    def best(self, prompt: Sequence[int], limit: int) -> tuple[Snapshot | None, int]:
        """The snapshot from which the most of `prompt` (at most `limit` tokens) can be kept, and how much (it is
        marked as recently used)."""
        best: Snapshot | None = None
        kept = 0
        for snapshot in self._entries:
            n = snapshot.usable(min(common_prefix(snapshot.tokens, prompt), limit))
            if n > kept:
                best, kept = snapshot, n
        if best is not None:
            self._entries.remove(best)
            self._entries.append(best)
        return best, kept

    def add(self, snapshot: Snapshot) -> None:
        """Keep `snapshot`, dropping those it makes redundant (it serves every prompt they would, to within
        MIN_SAVED_TOKENS) and then the least recently used until the rest fit the budget. With sliding-window
        layers a longer snapshot serves an older one's prompts only through a checkpoint near the older one's end."""
        if snapshot.size_bytes > self.budget_bytes:
            return
        self._entries = [
            old
            for old in self._entries
            if snapshot.usable(common_prefix(old.tokens, snapshot.tokens)) + MIN_SAVED_TOKENS <= len(old.tokens)
        ]
        self._entries.append(snapshot)
        while self.size_bytes > self.budget_bytes:
            self._entries.pop(0)

    def clear(self) -> None:
        self._entries.clear()
