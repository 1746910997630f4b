"""`fimble`: serve, complete, doctor, models. Exit codes: 0 ok, 1 unexpected failure, 2 bad input or model."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from fimble import __version__
from fimble.cli.common import EXIT_USAGE, add_setting_flags, setting_overrides
from fimble.errors import FimbleError, ModelError
from fimble.evaluation.cli import add_arguments as add_eval_arguments


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
    add_setting_flags(serve)

    comp = sub.add_parser("complete", help="complete at FILE:LINE:COL (1-based) and print the suggestion")
    comp.add_argument("location", metavar="FILE:LINE:COL")
    comp.add_argument("--json", action="store_true", help="print suggestion, timings and token counts as JSON")
    comp.add_argument("--show-prompt", action="store_true", help="print the exact prompt sent to the model (stderr)")
    add_setting_flags(comp)

    expl = sub.add_parser("explain", help="explain lines START-END (1-based) of FILE, streaming Markdown")
    expl.add_argument("location", metavar="FILE:START-END")
    expl.add_argument("--json", action="store_true", help="print the Markdown and the context it used as JSON")
    add_setting_flags(expl)

    doctor = sub.add_parser("doctor", help="check the model, llama.cpp, GPU offload and grammars")
    doctor.add_argument("--json", action="store_true")
    doctor.add_argument(
        "--settings", action="store_true", help="every setting: value, where it came from, type, default, range"
    )
    doctor.add_argument("--markdown", action="store_true", help="with --settings: the settings table of the docs")
    add_setting_flags(doctor)

    evaluate = sub.add_parser(
        "eval", help="measure completion quality (HumanEval infilling, repository lines, next edits)"
    )
    add_eval_arguments(evaluate)
    add_setting_flags(evaluate)

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

            return run_serve(args, setting_overrides(args))
        if args.command == "complete":
            from fimble.cli.complete import run_complete

            return run_complete(args, setting_overrides(args))
        if args.command == "explain":
            from fimble.cli.explain import run_explain

            return run_explain(args, setting_overrides(args))
        if args.command == "doctor":
            from fimble.cli.doctor import run_doctor

            return run_doctor(args, setting_overrides(args))
        if args.command == "eval":
            from fimble.evaluation.harness import run_eval

            return run_eval(args, setting_overrides(args))
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
        if not resolved.path.is_file():  # FIMBLE_MODEL or the embedded default, both read from the environment
            raise ModelError(f"FIMBLE_MODEL names {resolved.path}, which is not a file. Set it to a .gguf model.")
        print(resolved.path)
        return 0
    parser.parse_args(["models", "--help"])
    return EXIT_USAGE
