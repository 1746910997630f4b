"""`fimble`: serve, complete, doctor, models. Exit codes: 0 ok, 1 unexpected failure, 2 bad input or model."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from fimble import __version__
from fimble.errors import FimbleError
from fimble.evaluation.cli import add_arguments as add_eval_arguments

EXIT_USAGE = 2


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model settings (override FIMBLE_* and editor settings)")
    group.add_argument(
        "--model", metavar="PATH", help="GGUF model file (default: FIMBLE_MODEL, then the embedded model)"
    )
    group.add_argument("--n-ctx", type=int, help="context window in tokens")
    group.add_argument("--n-threads", type=int, help="CPU threads (0 = automatic)")
    group.add_argument("--n-gpu-layers", type=int, help="layers offloaded to the GPU (-1 = all)")
    group.add_argument("--max-tokens", type=int, help="most tokens generated")
    group.add_argument("--temperature", type=float, help="sampling temperature (0 = greedy)")
    group.add_argument("--time-budget-ms", type=int, help="stop generating after this long")
    group.add_argument(
        "--context",
        metavar="SOURCES",
        help="comma list of context sources, or 'none' for the cursor window only",
    )
    group.add_argument(
        "--backend",
        choices=("llama.cpp", "llama-server", "openai"),
        help="model engine: in-process llama.cpp, or a shared llama-server / OpenAI-compatible server at --url",
    )
    group.add_argument("--url", metavar="URL", help="base URL of the model server for remote backends")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "model", "n_ctx", "n_threads", "n_gpu_layers", "max_tokens", "temperature", "time_budget_ms", "backend", "url",
    )  # fmt: skip
    out = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    if getattr(args, "context", None) is not None:
        out["context_sources"] = args.context
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fimble", description="Offline, Copilot-style code completion over LSP.")
    parser.add_argument("--version", action="version", version=f"fimble {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    # vscode-languageclient and others pass --stdio when told the transport is stdio: accept it (the default).
    serve.add_argument("--stdio", action="store_true", help="use stdin/stdout (the default)")
    serve.add_argument("--log-file", help="also write the log to this file")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    _setting_flags(serve)

    comp = sub.add_parser("complete", help="complete at FILE:LINE:COL (1-based) and print the suggestion")
    comp.add_argument("location", metavar="FILE:LINE:COL")
    comp.add_argument("--json", action="store_true", help="print suggestion, timings and token counts as JSON")
    comp.add_argument("--show-prompt", action="store_true", help="print the exact prompt sent to the model (stderr)")
    _setting_flags(comp)

    expl = sub.add_parser("explain", help="explain lines START-END (1-based) of FILE, streaming Markdown")
    expl.add_argument("location", metavar="FILE:START-END")
    expl.add_argument("--json", action="store_true", help="print the Markdown and the context it used as JSON")
    _setting_flags(expl)

    doctor = sub.add_parser("doctor", help="check the model, llama.cpp, GPU offload and grammars")
    doctor.add_argument("--json", action="store_true")
    _setting_flags(doctor)

    evaluate = sub.add_parser("eval", help="measure completion quality (HumanEval infilling, repository lines)")
    add_eval_arguments(evaluate)
    _setting_flags(evaluate)

    models = sub.add_parser("models", help="manage model files")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    pull = msub.add_parser("pull", help="download REPO's FILE from the Hugging Face hub (or copy from a folder)")
    pull.add_argument("repo", metavar="REPO")
    pull.add_argument("file", metavar="FILE")
    pull.add_argument("--offline", action="store_true", help="use only the local hub cache")
    msub.add_parser("path", help="print the model file fimble would load")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "serve":
            from fimble.cli.serve import run_serve

            return run_serve(args, _overrides(args))
        if args.command == "complete":
            from fimble.cli.complete import run_complete

            return run_complete(args, _overrides(args))
        if args.command == "explain":
            from fimble.cli.explain import run_explain

            return run_explain(args, _overrides(args))
        if args.command == "doctor":
            from fimble.cli.doctor import run_doctor

            return run_doctor(args, _overrides(args))
        if args.command == "eval":
            from fimble.evaluation.harness import run_eval

            return run_eval(args, _overrides(args))
        if args.command == "models":
            return _models(args, parser)
    except FimbleError as exc:
        print(f"fimble: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return EXIT_USAGE


def _models(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from fimble.model import hub
    from fimble.model.resolve import resolve_model
    from fimble.settings import Settings

    if args.models_command == "pull":
        path = hub.pull(args.repo, args.file, offline=args.offline or os.environ.get("HF_HUB_OFFLINE") == "1")
        print(path)
        print(f"Use it with: fimble serve --model {path}  (or set FIMBLE_MODEL)", file=sys.stderr)
        return 0
    if args.models_command == "path":
        resolved = resolve_model(Settings.from_env().model)
        print(resolved.path)
        return 0
    parser.parse_args(["models", "--help"])
    return EXIT_USAGE


def setup_logging(level: str, log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    # pygls logs every message at INFO; keep its chatter out of the log unless asked for DEBUG.
    if level != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
