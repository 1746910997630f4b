"""What the agent asks of the code base besides the file itself: definitions of the names a range uses, and callers.

The context engine (`fimble.context.engine.ContextEngine`) owns the syntax trees and the workspace index; the agent
only consumes it through this small protocol (`EngineContext` adapts the engine), so the LSP server passes the
engine it runs, the CLI the one it builds, and tests fixed snippets. `NoContext` is the honest answer when nothing
is available: the prompt then has no such section. Nothing here builds a symbol index of its own: definitions come
from the engine's definitions source, and callers are the index's enclosing symbols of `git grep` hits.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fimble.prompt.assemble import Snippet
from fimble.trust import safe_git
from fimble.trust.paths import confine
from fimble.trust.safe_git import GitError

if TYPE_CHECKING:
    from fimble.context.engine import ContextEngine

log = logging.getLogger(__name__)

DEFINITIONS_BUDGET_TOKENS = 900
DEFINITIONS_DEADLINE_S = 0.25
MAX_CALLERS = 6
GREP_TIMEOUT_S = 5.0
_IMPORT = re.compile(r"\s*(from\s+\S+\s+import\b|import\b|#\s*include\b|use\s|local\s+\w+\s*=\s*require\b)")


class CodeContext(Protocol):
    def definitions(self, uri: str, text: str, language_id: str, path: str, start: int, end: int) -> Sequence[Snippet]:
        """Definitions of names used in text[start:end] that are not visible there, most relevant first."""
        ...

    def callers(self, uri: str, text: str, language_id: str, name: str) -> Sequence[Snippet]:
        """Places in the workspace that call or use `name`, most relevant first."""
        ...


class NoContext:
    def definitions(self, uri: str, text: str, language_id: str, path: str, start: int, end: int) -> Sequence[Snippet]:
        return ()

    def callers(self, uri: str, text: str, language_id: str, name: str) -> Sequence[Snippet]:
        return ()


class FixedContext:
    """Given snippets (tests, scripts): every definition, and the callers whose text mentions the name."""

    def __init__(self, definitions: Sequence[Snippet] = (), callers: Sequence[Snippet] = ()) -> None:
        self._definitions = list(definitions)
        self._callers = list(callers)

    def definitions(self, uri: str, text: str, language_id: str, path: str, start: int, end: int) -> Sequence[Snippet]:
        return list(self._definitions)

    def callers(self, uri: str, text: str, language_id: str, name: str) -> Sequence[Snippet]:
        return [s for s in self._callers if name in s.text]


class EngineContext:
    """The context engine behind the agent's protocol. Blocking (index look-ups, `git grep`): call from a thread."""

    def __init__(self, engine: ContextEngine, count_tokens: Callable[[str], int] | None = None) -> None:
        self.engine = engine
        # Budgets are estimates; four characters a token is what matters for fitting a prompt section.
        self._count = count_tokens or (lambda s: len(s) // 4 + 1)

    def definitions(self, uri: str, text: str, language_id: str, path: str, start: int, end: int) -> Sequence[Snippet]:
        from fimble.context.source_types import ContextQuery

        # The engine ranks names around a cursor; the end of the range sees the whole range (up to 40 lines back).
        query = ContextQuery(
            text=text, offset=max(start, end), language_id=language_id, path=path, uri=uri, window=(start, end)
        )
        result = self.engine.gather(
            query, ("definitions",), DEFINITIONS_BUDGET_TOKENS, self._count, time.monotonic() + DEFINITIONS_DEADLINE_S
        )
        return result.snippets

    def callers(self, uri: str, text: str, language_id: str, name: str) -> Sequence[Snippet]:
        engine = self.engine
        root = engine.root
        if root is None or not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
            return ()
        own = engine.rel_path(uri)
        hits = _grep(root, name, trusted=engine.trusted)
        index = engine.index
        out: list[Snippet] = []
        defining = re.compile(rf"\b(def|class|function|fn|func|struct|interface|type)\s+{re.escape(name)}\b")
        for rel, row, line in hits:
            if len(out) >= MAX_CALLERS:
                break
            if defining.search(line) or _IMPORT.match(line) or not engine.allowed(rel) or confine(root, rel) is None:
                # the definition, an import, or a file that must not reach the model (ignored, too big, or leading
                # outside the workspace through a symlinked directory)
                continue
            caller = ""
            if index is not None:
                around = [s for s in index.symbols_in(rel) if s.line <= row <= max(s.end_line, s.line)]
                if around:
                    inner = max(around, key=lambda s: s.line)
                    if inner.name == name:
                        continue  # recursion inside the definition is not a caller
                    caller = f" in {inner.container + '.' if inner.container else ''}{inner.name}"
            where = f"{rel} (this file)" if rel == own else rel
            out.append(Snippet("callers", where, f"line {row + 1}{caller}: {line.strip()}", 1.0))
        return out


def _grep(root: Path, name: str, *, trusted: bool) -> list[tuple[str, int, str]]:
    """(path, 0-based row, line) of whole-word uses of `name` in tracked and untracked-not-ignored files."""
    args = ["grep", "-n", "-I", "-w", "--untracked", "--no-color", "--no-textconv", "-e", name, "--", "."]
    try:
        out = safe_git.run(args, root, trusted=trusted, timeout=GREP_TIMEOUT_S, ok=(0, 1))  # 1: no match
    except GitError as exc:  # not a repository, git missing, timeout, not trusted
        log.debug("git grep for callers of %s: %s", name, exc)
        return []
    hits: list[tuple[str, int, str]] = []
    for line in out.splitlines()[:500]:
        rel, _, rest = line.partition(":")
        row, _, content = rest.partition(":")
        if row.isdigit():
            hits.append((rel, int(row) - 1, content[:200]))
    return hits


def render_snippets(snippets: Sequence[Snippet], fence: str, max_chars: int) -> str:
    """Snippets as 'path:' + fenced code (callers as plain lines), stopping before `max_chars`."""
    parts: list[str] = []
    used = 0
    for snip in snippets:
        fenced = f"{snip.path}:\n```{fence}\n{snip.text.rstrip()}\n```"
        block = f"- {snip.path}: {snip.text.strip()}" if snip.source == "callers" else fenced
        if used + len(block) > max_chars and parts:
            break
        parts.append(block[:max_chars])
        used += len(block)
    return "\n".join(parts)
