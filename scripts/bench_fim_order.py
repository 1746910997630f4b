#!/usr/bin/env python3
"""Prompt tokens evaluated per keystroke with the text after the cursor before the text before it (suffix first,
SPM) or after it (PSM), on a FIM model.

A typist (the one `scripts/bench_latency.py` uses, with typos and backspaces, no suggestions) types a region of a
real file; every keystroke's prompt is built as the server builds it (cursor window, no context sources) in each
order and evaluated by the in-process llama.cpp engine, which keeps the KV cache of the previous prompt and
evaluates only what follows the shared prefix. In PSM the text after the cursor (up to 512 tokens) follows the
typed text and is evaluated again at every keystroke; suffix first, a keystroke only appends. Quality is not
measured here: the default is a tiny random-weight model (tokenizer and special tokens of the family, no
knowledge), which gives exact token counts and prompt-evaluation times of its own size only.

Examples:
    scripts/bench_fim_order.py --family starcoder --limit 150
    scripts/bench_fim_order.py --model ~/models/codellama-7b.Q4_K_M.gguf --limit 60 --out order.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from fimble.completion.pipeline import CompletionRequest, build_prompt
from fimble.evaluation.metrics import mean, percentile, rounded
from fimble.model.backend import CancelToken, GenerationParams
from fimble.model.llama_cpp_backend import LlamaCppBackend
from fimble.prompt.formats import FimFormat
from fimble.settings import Settings
from fimble_dev.latency import default_file
from fimble_dev.tiny_gguf import FAMILY_SPECIAL_TOKENS, TinyModelSpec, write_tiny_gguf
from fimble_dev.typist import Typist, region_end, start_offset


def orders(fmt: FimFormat) -> dict[str, FimFormat]:
    """The family's template in both orders: prefix first (PSM) and suffix first (SPM, the text before the cursor
    last, right where the model writes; spelled as the StarCoder and Code Llama training code does)."""
    psm = "{{fim_prefix}}{prefix}{{fim_suffix}}{suffix}{{fim_middle}}"
    spm = "{{fim_prefix}}{{fim_suffix}}{suffix}{{fim_middle}}{prefix}"
    head = fmt.fim[: fmt.fim.index("{{fim_")]  # e.g. StarCoder's <filename>path line
    return {
        "psm": dataclasses.replace(fmt, fim=head + psm),
        "spm": dataclasses.replace(fmt, fim=head + spm),
    }


def replay(backend: LlamaCppBackend, fmt: FimFormat, file: Path, limit: int, seed: int) -> dict[str, Any]:
    text = file.read_text(encoding="utf-8")
    start = start_offset(text, None, str(file))
    end = region_end(text, start, max(200, limit * 3), str(file))
    typist = Typist(text[:start], text[start:end], text[end:], random.Random(seed), accept_rate=0.0, typo_rate=0.05)
    backend.info = dataclasses.replace(backend.info, format=fmt)
    settings = Settings(context_sources=())
    evaluated: list[float] = []
    prompt_ms: list[float] = []
    prompt_tokens: list[float] = []
    for _ in range(limit):
        if typist.done:
            break
        typist.next_action("")
        req = CompletionRequest(typist.text, typist.offset, "python", file.name, settings)
        prompt = build_prompt(backend, req)
        result = backend.generate(
            prompt.ids, GenerationParams(max_tokens=1, boundaries=prompt.boundaries), CancelToken()
        )
        evaluated.append(result.prompt_tokens - result.reused_tokens)
        prompt_ms.append(result.prompt_ms)
        prompt_tokens.append(result.prompt_tokens)
    return {
        "keystrokes": len(evaluated),
        "prompt_tokens_mean": rounded(mean(prompt_tokens)),
        "evaluated_per_keystroke": {
            "mean": rounded(mean(evaluated)),
            "p50": rounded(percentile(evaluated, 50)),
            "p95": rounded(percentile(evaluated, 95)),
        },
        "reuse_rate": round(1 - sum(evaluated) / sum(prompt_tokens), 3) if prompt_tokens else None,
        "prompt_eval_ms_p50": rounded(percentile(prompt_ms, 50)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_fim_order.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a FIM GGUF model (default: a tiny random model of --family)")
    parser.add_argument(
        "--family", default="starcoder", choices=sorted(k for k in FAMILY_SPECIAL_TOKENS if k != "none")
    )
    parser.add_argument("--file", help="file to type into (default: pygls/workspace/text_document.py)")
    parser.add_argument("--limit", type=int, default=150, help="keystrokes per order (default 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    file = Path(args.file or default_file())
    with tempfile.TemporaryDirectory(prefix="fimble-order-") as tmp:
        model = args.model or str(
            write_tiny_gguf(
                Path(tmp) / f"tiny-{args.family}.gguf",
                TinyModelSpec(name=f"tiny-{args.family}", special_tokens=FAMILY_SPECIAL_TOKENS[args.family]),
            )
        )
        results: dict[str, Any] = {"model": model, "file": str(file), "orders": {}}
        with closing(LlamaCppBackend(model, Settings(n_threads=args.threads, n_ctx=4096))) as backend:
            fmt = backend.info.format
            if not fmt.uses_suffix:
                print(f"bench_fim_order: {model} has no FIM template ({fmt.name})", file=sys.stderr)
                return 2
            results["format"] = fmt.name
            for name, variant in orders(fmt).items():
                results["orders"][name] = replay(backend, variant, file, args.limit, args.seed)
    for name, row in results["orders"].items():
        e = row["evaluated_per_keystroke"]
        print(
            f"{results['format']} {name}: {row['keystrokes']} keystrokes, prompt {row['prompt_tokens_mean']} tokens, "
            f"evaluated per keystroke mean {e['mean']} p50 {e['p50']} p95 {e['p95']}, reuse {row['reuse_rate']}, "
            f"prompt eval p50 {row['prompt_eval_ms_p50']} ms"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
