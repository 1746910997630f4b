"""Explanations: context from scope, definitions, callers and git history; streamed text equals the final Markdown."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import git

from fimble.agent.context import FixedContext
from fimble.agent.explain import ExplainRequest, StreamGate, explain
from fimble.prompt.assemble import Snippet
from fimble.settings import Settings
from tests.agent.conftest import RuntimeFactory, commit

SOURCE = '''"""Prices."""

TAX = 0.2


def net(price):
    return price / (1 + TAX)


def gross(price):
    base = net(price)
    return round(base * (1 + TAX), 2)
'''


def request(text: str, start: int, end: int, **kw: object) -> ExplainRequest:
    return ExplainRequest(
        uri="file:///project/prices.py",
        text=text,
        language_id="python",
        path="prices.py",
        start=start,
        end=end,
        settings=Settings(model="scripted"),
        **kw,  # type: ignore[arg-type]
    )


async def test_streams_and_returns_the_same_markdown(scripted: RuntimeFactory, repo: git.Repo) -> None:
    root = Path(repo.working_tree_dir or "")
    commit(
        repo,
        {"prices.py": SOURCE.replace("round(base * (1 + TAX), 2)", "base * (1 + TAX)")},
        "Add prices",
        "2024-03-01T10:00:00",
    )
    commit(repo, {"prices.py": SOURCE}, "Round gross prices to cents", "2024-05-02T10:00:00")
    answer = " converts a net price to gross.\n\n- uses `net`\n- rounds to cents\n### Next heading that is cut"
    runtime, backend = scripted([answer])
    ctx = FixedContext(
        definitions=[Snippet("definitions", "prices.py", "def net(price):\n    return price / (1 + TAX)")],
        callers=[Snippet("callers", "shop/cart.py", "total = gross(item.price)")],
    )
    start = SOURCE.index("    base = net")
    end = SOURCE.index("2)\n") + 2
    deltas: list[str] = []
    threads: set[str] = set()

    def on_delta(delta: str) -> None:
        deltas.append(delta)
        threads.add(threading.current_thread().name)

    result = await explain(
        runtime, request(SOURCE, start, end, file_path=root / "prices.py", context=ctx), None, on_delta
    )
    assert "".join(deltas) == result.markdown
    assert result.markdown.startswith("This code converts a net price to gross.")
    assert "Next heading" not in result.markdown and "###" not in result.markdown
    prompt = backend.prompts[0]
    assert "Enclosing function `gross`" in prompt and "def gross(price):" in prompt
    assert "def net(price)" in prompt and "shop/cart.py" in prompt
    assert "Round gross prices to cents" in prompt
    assert "Add prices" in prompt  # line 11 ("base = net(price)") was last touched by the first commit
    data = result.to_dict()
    assert data["scope"] == "gross" and data["callers"] == ["shop/cart.py"] and data["definitions"] == ["net"]
    assert [(c["subject"], c["date"]) for c in data["commits"]] == [
        ("Round gross prices to cents", "2024-05-02"),
        ("Add prices", "2024-03-01"),
    ]
    assert (
        "_Context: enclosing function `gross`" in result.markdown and "Round gross prices to cents" in result.markdown
    )
    assert any(name.startswith("fimble-model") for name in threads)  # generation streamed from the model worker


async def test_empty_selection_explains_the_enclosing_unit(scripted: RuntimeFactory) -> None:
    runtime, backend = scripted([" divides by the tax rate."])
    at = SOURCE.index("price / (1")
    result = await explain(runtime, request(SOURCE, at, at))
    assert "def net(price):\n    return price / (1 + TAX)" in backend.prompts[0]
    assert result.context.selection.kind == "function_definition"
    assert "_Context: the selected code only._" in result.markdown or "_Context:" in result.markdown


async def test_uncommitted_file_has_no_history(scripted: RuntimeFactory, tmp_path: Path) -> None:
    runtime, backend = scripted([" does things."])
    result = await explain(runtime, request(SOURCE, 0, 20, file_path=tmp_path / "prices.py"))
    assert result.context.commits == []
    assert "Last commits" not in backend.prompts[0]


async def test_cancel_stops_the_explanation(scripted: RuntimeFactory) -> None:
    from fimble.model.backend import CancelToken

    runtime, _ = scripted([" word" * 200], delay_s=0.02)
    cancel = CancelToken()
    task = asyncio.create_task(explain(runtime, request(SOURCE, 0, 40), cancel))
    await asyncio.sleep(0.2)
    cancel.cancel()
    result = await asyncio.wait_for(task, 5)
    assert result.generation is not None and result.generation.stop_reason == "cancelled"
    assert "explanation stopped: cancelled" in result.markdown


async def test_a_looping_answer_is_cut_at_the_repeat(scripted: RuntimeFactory) -> None:
    loop = (
        " sums the prices. It adds each price to the running total." + " It adds each price to the running total." * 8
    )
    runtime, _ = scripted([loop])
    deltas: list[str] = []
    result = await explain(runtime, request(SOURCE, 0, 40), None, deltas.append)
    assert result.markdown.count("It adds each price to the running total.") == 1
    assert "".join(deltas) == result.markdown
    assert result.generation is not None and result.generation.generated_tokens < len(loop)  # stopped early


def test_stream_gate_holds_back_possible_stops() -> None:
    sent: list[str] = []
    gate = StreamGate(["\n### "], sent.append)
    for piece in ["Hello", " world", "\n#", "#"]:
        gate.feed(piece)
    assert "".join(sent) == "Hello world"[: len("Hello world\n##") - 4]
    final = gate.finish("Hello world")
    assert "".join(sent) == final == "Hello world"
