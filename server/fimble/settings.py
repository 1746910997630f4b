"""All settings in one typed object, and the one place that documents each key.

Sources, lowest precedence first: defaults, environment (`FIMBLE_*`), LSP initializationOptions,
`workspace/configuration` section `fimble`, CLI flags. LSP clients use camelCase keys, the CLI and env snake case.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from fimble.errors import SettingsError

ALL_CONTEXT_SOURCES: tuple[str, ...] = ("scope", "definitions", "similar", "ring", "git")

# The value of the variable 'apiKeyEnv' names is sent to `url` as a bearer token, so the name must plainly be one
# meant for that: fimble's own namespace, or an API key by the common convention (OPENAI_API_KEY, ...). Not any
# *_TOKEN or *_KEY: GITHUB_TOKEN, NPM_TOKEN, AWS_SESSION_TOKEN, AWS_SECRET_ACCESS_KEY sit in many environments and
# belong to other services; a settings file (some editors read project-local LSP settings) must not route them off
# the machine.
_API_KEY_ENV = re.compile(r"FIMBLE_[A-Z0-9_]+|[A-Z][A-Z0-9_]*_API_KEY")


def _doc(text: str, env: str | None = None) -> dict[str, Any]:
    return {"doc": text, "env": env}


@dataclass(frozen=True)
class Settings:
    model: str | None = field(
        default=None,
        metadata=_doc("Path to a .gguf model. Unset: FIMBLE_MODEL, then the embedded default model.", "FIMBLE_MODEL"),
    )
    n_ctx: int = field(
        default=4096,
        metadata=_doc(
            "Context window in tokens; 0 uses the model's training context (capped at 32768).", "FIMBLE_N_CTX"
        ),
    )
    n_threads: int = field(
        default=0,
        metadata=_doc("CPU threads for llama.cpp; 0 picks the number of physical cores.", "FIMBLE_N_THREADS"),
    )
    n_gpu_layers: int = field(
        default=0,
        metadata=_doc(
            "Layers offloaded to the GPU (needs a CUDA/Metal/Vulkan build of llama-cpp-python); -1 offloads all.",
            "FIMBLE_N_GPU_LAYERS",
        ),
    )
    n_batch: int = field(default=512, metadata=_doc("Prompt tokens evaluated per llama.cpp batch.", "FIMBLE_N_BATCH"))
    prompt_cache_mb: int = field(
        default=256,
        metadata=_doc(
            "Memory for snapshots of the model's KV cache, so a prompt the model moved away from (a context snippet "
            "came and went, a file switch) is restored instead of evaluated again; 0 turns them off.",
            "FIMBLE_PROMPT_CACHE_MB",
        ),
    )
    max_tokens: int = field(
        default=64, metadata=_doc("Most tokens generated for one inline suggestion.", "FIMBLE_MAX_TOKENS")
    )
    temperature: float = field(
        default=0.0, metadata=_doc("Sampling temperature; 0 is greedy (deterministic).", "FIMBLE_TEMPERATURE")
    )
    time_budget_ms: int = field(
        default=3000,
        metadata=_doc("A suggestion returns what was generated when this budget runs out.", "FIMBLE_TIME_BUDGET_MS"),
    )
    context_sources: tuple[str, ...] = field(
        default=ALL_CONTEXT_SOURCES,
        metadata=_doc(
            "Context sources to use besides the cursor window: " + ", ".join(ALL_CONTEXT_SOURCES) + "; [] = none.",
            "FIMBLE_CONTEXT",
        ),
    )

    max_document_bytes: int = field(
        default=1_000_000,
        metadata=_doc(
            "Documents larger than this (UTF-8 bytes) are still tracked for edits but get no completions, syntax "
            "trees, diagnostics or context work (the user is told once); 0 = no limit.",
            "FIMBLE_MAX_DOCUMENT_BYTES",
        ),
    )
    workspace_trusted: bool = field(
        default=True,
        metadata=_doc(
            "False for a workspace the editor does not trust (VS Code's Restricted Mode): fimble then runs no git "
            "command and no checker there; files are still read only inside the workspace folders.",
            None,
        ),
    )

    # -- engines (in-process llama.cpp or a shared server) ----------------------------------------------------
    backend: str = field(
        default="llama.cpp",
        metadata=_doc(
            "Model engine: 'llama.cpp' (in-process), 'llama-server' or 'openai' (a compatible server).",
            "FIMBLE_BACKEND",
        ),
    )
    url: str | None = field(
        default=None, metadata=_doc("Base URL of the model server for remote backends.", "FIMBLE_URL")
    )
    api_key_env: str = field(
        default="FIMBLE_API_KEY",
        metadata=_doc(
            "Name of the environment variable holding the remote server's API key (never the key itself).", None
        ),
    )
    request_timeout_ms: int = field(
        default=10000, metadata=_doc("Timeout for one request to a remote backend.", "FIMBLE_REQUEST_TIMEOUT_MS")
    )
    fallback_model: str | None = field(
        default=None,
        metadata=_doc(
            "A local .gguf used when the remote backend is unreachable; unset = no fallback.", "FIMBLE_FALLBACK_MODEL"
        ),
    )
    remote_model: str | None = field(
        default=None,
        metadata=_doc(
            "Model name on the remote server (the OpenAI 'model' field, e.g. 'qwen2.5-coder:7b-base'); unset = the "
            "server's first model.",
            "FIMBLE_REMOTE_MODEL",
        ),
    )
    prompt_format: str | None = field(
        default=None,
        metadata=_doc(
            "FIM template for a remote model fimble cannot identify: a name from prompts/fim (qwen2.5-coder, "
            "starcoder2, starcoder, deepseek-coder, codellama, codestral, codegemma, granite, prefix-only); unset or "
            "'auto' = detect.",
            "FIMBLE_PROMPT_FORMAT",
        ),
    )
    # -- fix and explain agent ---------------------------------------------------------------------------------
    fix_max_attempts: int = field(
        default=3, metadata=_doc("Most model attempts for one fix.", "FIMBLE_FIX_MAX_ATTEMPTS")
    )
    fix_time_budget_ms: int = field(
        default=60000,
        metadata=_doc("Time budget for one fix, all attempts and checks included.", "FIMBLE_FIX_TIME_BUDGET_MS"),
    )
    fix_allow_unverified: bool = field(
        default=False,
        metadata=_doc(
            "Offer a fix no check could verify, marked 'unverified' (off: say no verified fix was found).", None
        ),
    )
    fix_checkers: tuple[tuple[str, ...], ...] = field(
        default=(),
        metadata=_doc(
            "Extra checkers run on a fix candidate in a temporary git worktree: argument lists (no shell), "
            'with {file} replaced by the file\'s path, e.g. [["ruff", "check", "{file}"]].',
            None,
        ),
    )
    checker_timeout_ms: int = field(
        default=20000, metadata=_doc("Timeout for one checker run.", "FIMBLE_CHECKER_TIMEOUT_MS")
    )

    def merged(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with `overrides` applied; keys may be snake_case or camelCase, unknown keys are ignored."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for raw_key, value in overrides.items():
            key = _snake(raw_key)
            if key not in known or value is None:
                continue
            changes[key] = _coerce(key, known[key].type, value)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = f.metadata.get("env")
            if env and environ.get(env):
                values[f.name] = environ[env]
        return cls().merged(values)

    def lsp_dict(self) -> dict[str, Any]:
        return {_camel(f.name): getattr(self, f.name) for f in fields(self)}


def describe() -> list[tuple[str, str, str, str]]:
    """(lsp key, env var, default, doc) for every setting, for `fimble doctor` and the README."""
    return [(_camel(f.name), f.metadata.get("env") or "", repr(f.default), f.metadata["doc"]) for f in fields(Settings)]


def _snake(key: str) -> str:
    out = []
    for ch in key:
        if ch.isupper():
            out.append("_" + ch.lower())
        else:
            out.append(ch)
    return "".join(out).replace("-", "_")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _check_api_key_env(name: str) -> None:
    if not _API_KEY_ENV.fullmatch(name):
        raise SettingsError(
            f"Setting 'apiKeyEnv' is {name!r}, which is not an API-key variable: fimble sends that variable's value "
            "to the model server, so it takes only FIMBLE_API_KEY, another FIMBLE_* name, or a name ending in "
            '_API_KEY (such as OPENAI_API_KEY). To use a key kept elsewhere, export FIMBLE_API_KEY="$YOUR_VARIABLE".'
        )


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    kind = str(annotation)
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.strip().lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind == "tuple[tuple[str, ...], ...]":
            if isinstance(value, str) or not all(isinstance(v, list | tuple) for v in value):
                raise ValueError
            return tuple(tuple(str(a) for a in v) for v in value if v)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = [] if value.strip() in ("", "none") else value.split(",")
            items = tuple(str(v).strip() for v in value if str(v).strip())
            if key == "context_sources":
                unknown = [s for s in items if s not in ALL_CONTEXT_SOURCES]
                if unknown:
                    raise SettingsError(
                        f"Unknown context source(s) {', '.join(unknown)}; known: {', '.join(ALL_CONTEXT_SOURCES)}."
                    )
            return items
        if kind.startswith("str"):
            text = str(value).strip()
            if key == "api_key_env" and text:
                _check_api_key_env(text)
            return text or None
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"Setting {_camel(key)!r} has an invalid value {value!r} (expected {kind}).") from exc
    return value
