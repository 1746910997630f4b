"""The agent's view of the context engine: cross-file definitions and callers from the workspace index."""

from __future__ import annotations

from pathlib import Path

import git

from fimble.agent.context import EngineContext
from fimble.context.engine import ContextEngine
from tests.agent.conftest import commit

MONEY = 'def add_tax(amount, rate=0.2):\n    """Amount with tax added."""\n    return amount * (1 + rate)\n'
SHOP = "from money import add_tax\n\n\ndef checkout(cart):\n    total = sum(cart)\n    return add_tax(totl)\n"
REPORT = "from money import add_tax\n\n\ndef yearly(sales):\n    return [add_tax(s) for s in sales]\n"


def test_definitions_and_callers_from_the_engine(repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(repo, {"money.py": MONEY, "shop.py": SHOP, "report.py": REPORT}, "shop")
    engine = ContextEngine(root, cache_file=False)
    try:
        engine.index_now(time_limit=20)
        ctx = EngineContext(engine)
        uri = (root / "shop.py").as_uri()
        start = SHOP.index("def checkout")
        defs = ctx.definitions(uri, SHOP, "python", "shop.py", start, len(SHOP) - 1)
        assert any(s.path == "money.py" and "Amount with tax added." in s.text for s in defs)
        callers = ctx.callers(uri, SHOP, "python", "add_tax")
        paths = {s.path for s in callers}
        assert "report.py" in paths and "shop.py (this file)" in paths
        assert all("def add_tax" not in s.text for s in callers)  # the definition is not its own caller
        report = next(s for s in callers if s.path == "report.py")
        assert "in yearly" in report.text and "line 5" in report.text
        assert ctx.callers(uri, SHOP, "python", "not a name") == ()
    finally:
        engine.close()
