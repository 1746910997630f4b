"""HumanEval infilling (Bavarian et al. 2022): single-line and multi-line holes in HumanEval solutions.

Each task is a program with whole lines cut out: `prompt` (text before the hole, ending at a line start), the hole
(`canonical_solution`, whole lines), `suffix` and the unit `test`. The editor scenario is a cursor on an empty line
where the hole was, so the document is `prompt + "\n" + suffix`; accepting the suggestion there gives
`prompt + suggestion + "\n" + suffix`, which is what gets executed.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from fimble.errors import FimbleError
from fimble.evaluation.metrics import first_line

SUITE_FILES: dict[str, str] = {
    "humaneval-single": "HumanEval-SingleLineInfilling.jsonl.gz",
    "humaneval-multi": "HumanEval-MultiLineInfilling.jsonl.gz",
}


@dataclass(frozen=True)
class InfillTask:
    task_id: str
    entry_point: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str

    @property
    def problem(self) -> str:
        """'HumanEval/12' for 'SingleLineInfilling/HumanEval/12/L3'."""
        parts = self.task_id.split("/")
        return "/".join(parts[1:3]) if len(parts) >= 3 else self.task_id

    def document(self) -> tuple[str, int]:
        """Editor text and cursor offset: the cursor sits on an empty line where the hole was."""
        return self.prompt + "\n" + self.suffix, len(self.prompt)

    def program(self, completion: str) -> str:
        """The file after accepting `completion` at the cursor, plus the tests and the call that runs them."""
        body = completion.rstrip("\n")
        return f"{self.prompt}{body}\n{self.suffix}{self.test}\n\ncheck({self.entry_point})\n"

    def canonical_program(self) -> str:
        return self.program(self.canonical_solution)


class DatasetError(FimbleError):
    """The benchmark files are missing or malformed."""


def load_tasks(folder: Path, suite: str) -> list[InfillTask]:
    path = folder / SUITE_FILES[suite]
    if not path.is_file():
        raise DatasetError(f"{path} not found; pass the folder holding {', '.join(SUITE_FILES.values())}.")
    tasks: list[InfillTask] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                tasks.append(
                    InfillTask(
                        task_id=str(row["task_id"]),
                        entry_point=str(row["entry_point"]),
                        prompt=str(row["prompt"]),
                        suffix=str(row["suffix"]),
                        canonical_solution=str(row["canonical_solution"]),
                        test=str(row["test"]),
                    )
                )
            except (ValueError, KeyError) as exc:
                raise DatasetError(f"{path}:{number}: not a HumanEval infilling record ({exc}).") from None
    return tasks


def select(tasks: list[InfillTask], limit: int | None, seed: int) -> list[InfillTask]:
    """All tasks in file order, or `limit` of them drawn with `seed`, one per problem before any problem repeats.

    The files list a problem's holes next to each other (HumanEval/0 has dozens), so the first N tasks would all
    come from two or three problems; spreading over problems makes a short run say something about the whole set.
    """
    if limit is None or limit >= len(tasks):
        return list(tasks)
    rng = random.Random(seed)
    order = list(range(len(tasks)))
    rng.shuffle(order)
    chosen: list[int] = []
    seen: set[str] = set()
    for i in order:
        if tasks[i].problem not in seen:
            seen.add(tasks[i].problem)
            chosen.append(i)
            if len(chosen) == limit:
                break
    if len(chosen) < limit:
        taken = set(chosen)
        chosen += [i for i in order if i not in taken][: limit - len(chosen)]
    return [tasks[i] for i in sorted(chosen)]


def candidate(suite: str, suggestion: str) -> str:
    """What is scored: single-line holes take the suggestion's first line (the hole is exactly one line, and
    single-line infilling is scored that way in the literature); multi-line holes take the suggestion as shown."""
    if suite == "humaneval-single":
        # The cursor is at column 0 (the model writes the indentation); a suggestion that opens with an empty
        # line and then the code means the same program, so the first line with content is the answer.
        return first_line(suggestion)
    return suggestion.strip("\n")
