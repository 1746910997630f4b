"""`fimble doctor`: what fimble would load and run, without loading the model weights."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
from typing import Any

from fimble import __version__
from fimble.cli.common import print_json
from fimble.errors import FimbleError
from fimble.languages import GRAMMARS
from fimble.model.gguf_meta import check_complete, read_header
from fimble.model.llama_cpp_backend import default_threads, gpu_offload_supported
from fimble.model.resolve import cache_dir, resolve_model
from fimble.prompt.formats import select_format
from fimble.settings import ENV, FLAG, Settings, compose, env_layer
from fimble.settings_docs import markdown_table, report_lines
from fimble.settings_docs import report as settings_report


def gather(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"fimble": __version__, "python": platform.python_version()}
    try:
        import llama_cpp

        report["llama_cpp_python"] = llama_cpp.__version__
    except ImportError as exc:
        report["llama_cpp_python"] = f"missing ({exc})"
    report["threads"] = settings.n_threads or default_threads()
    report["gpu_offload_supported"] = gpu_offload_supported()
    report["n_gpu_layers"] = settings.n_gpu_layers
    report["cache_dir"] = str(cache_dir())
    model: dict[str, Any] = {}
    try:
        resolved = resolve_model(settings.model)
        model["path"] = str(resolved.path)
        model["origin"] = resolved.origin
        header = read_header(resolved.path)
        check_complete(header)
        fmt = select_format(header)
        model.update(
            name=header.get("general.name"),
            architecture=header.architecture,
            context_length=header.get(f"{header.architecture}.context_length"),
            size_mb=round(header.file_size / 1e6, 1),
            format=fmt.name,
            fim=fmt.is_fim,
            multi_file=fmt.multi_file,
            chat_template=bool(header.get("tokenizer.chat_template")),
        )
        model["ok"] = True
    except FimbleError as exc:
        model["ok"] = False
        model["error"] = str(exc)
    report["model"] = model
    grammars = {}
    for module in dict.fromkeys(module for module, _ in GRAMMARS.values()):  # tsx comes in typescript's wheel
        name = module.removeprefix("tree_sitter_")
        try:
            importlib.import_module(module)
            grammars[name] = True
        except ImportError:
            grammars[name] = False
    report["grammars"] = grammars
    return report


def run_settings(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """`fimble doctor --settings`: every setting, its value and where that came from (or, with --markdown, the
    table of the docs)."""
    if args.markdown:
        print(markdown_table())
        return 0
    composed = compose([(ENV, env_layer(os.environ)), (FLAG, overrides)])
    if composed.problems:
        raise composed.problems[0]
    if args.json:
        print_json(settings_report(composed))
    else:
        print("\n".join(report_lines(composed)))
    return 0


def run_doctor(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    if args.settings or args.markdown:
        return run_settings(args, overrides)
    report = gather(Settings.from_env().merged(overrides))
    if args.json:
        print_json(report)
    else:
        model = report["model"]
        print(f"fimble {report['fimble']} (Python {report['python']}, llama-cpp-python {report['llama_cpp_python']})")
        print(f"model:       {model.get('path')} [{model.get('origin')}]")
        if model["ok"]:
            print(
                f"             {model['name']} | arch {model['architecture']} | {model['size_mb']} MB | "
                f"trained context {model['context_length']}"
            )
            print(
                f"format:      {model['format']} (FIM: {'yes' if model['fim'] else 'no, prefix-only'}; "
                f"multi-file: {'yes' if model['multi_file'] else 'no'})"
            )
        else:
            print(f"  PROBLEM:   {model['error']}")
        print(f"threads:     {report['threads']}")
        offload = "available" if report["gpu_offload_supported"] else "not in this llama-cpp-python build (CPU only)"
        print(f"GPU offload: {offload}; nGpuLayers = {report['n_gpu_layers']}")
        found = [g for g, ok in report["grammars"].items() if ok]
        missing = [g for g, ok in report["grammars"].items() if not ok]
        print(f"grammars:    {', '.join(found) or 'none'}" + (f" (missing: {', '.join(missing)})" if missing else ""))
        print(f"cache dir:   {report['cache_dir']}")
    return 0 if report["model"]["ok"] else 2
