"""Counts carried across edits are exactly the counts of the new text."""

from __future__ import annotations

import random

from fimble.context.mentions import Mentions, common_prefix, common_suffix

NAMES = ("os", "path", "Path", "__all__", "aa", "a as a", "x", "compute", "xx")


def test_counts_follow_random_edits_exactly() -> None:
    rng = random.Random(7)
    alphabet = "aaxs _\nPpathos()"
    text = "".join(rng.choice(alphabet) for _ in range(3000))
    mentions = Mentions()
    for step in range(400):
        at = rng.randrange(len(text) + 1)
        cut = rng.randrange(0, 4)
        new = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4)))
        text = text[:at] + new + text[at + cut :]
        if step % 97 == 0:
            text = "".join(rng.choice(alphabet) for _ in range(2000))  # another document
        for name in rng.sample(NAMES, 4):
            assert mentions.count(text, name) == text.count(name), (step, name)
            assert mentions.occurs(text, name) == (name in text), (step, name)


def test_common_ends() -> None:
    assert common_prefix("abcdef", "abcxef") == 3
    assert common_prefix("abc", "abc") == 3
    assert common_prefix("abc", "abcd") == 3
    assert common_prefix("", "a") == 0
    assert common_suffix("abcdef", "abxdef", 6) == 3
    assert common_suffix("aaaa", "aaaa", 2) == 2  # never into the common prefix
    assert common_suffix("xyz", "abc", 3) == 0
