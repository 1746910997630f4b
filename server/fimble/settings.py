"""All settings in one typed object: the one place each key is defined, documented and checked.

Sources, lowest precedence first: defaults, environment (`FIMBLE_*`), LSP initializationOptions,
`workspace/configuration` section `fimble`, CLI flags. LSP clients use camelCase keys, the CLI and env snake case.
Everything else that names a setting (CLI flags, `fimble doctor --settings`, the tables in README.md and
editor-clients/PROTOCOL.md, the editor clients' defaults) is generated from, or checked against, the fields below.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, Final, TypeVar, get_type_hints

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from fimble.errors import SettingsError

ALL_CONTEXT_SOURCES: tuple[str, ...] = ("scope", "definitions", "similar", "ring", "git")
BACKENDS: tuple[str, ...] = ("llama.cpp", "llama-server", "openai")

# Where a value came from, lowest precedence first (what `fimble doctor --settings` reports).
DEFAULT, ENV, INIT_OPTIONS, CONFIGURATION, FLAG = "default", "env", "initializationOptions", "configuration", "flag"

# The value of the variable 'apiKeyEnv' names is sent to `url` as a bearer token, so the name must plainly be one
# meant for that: fimble's own namespace, or an API key by the common convention (OPENAI_API_KEY, ...). Not any
# *_TOKEN or *_KEY: GITHUB_TOKEN, NPM_TOKEN, AWS_SESSION_TOKEN, AWS_SECRET_ACCESS_KEY sit in many environments and
# belong to other services; a settings file (some editors read project-local LSP settings) must not route them off
# the machine.
_API_KEY_ENV = re.compile(r"FIMBLE_[A-Z0-9_]+|[A-Z][A-Z0-9_]*_API_KEY")
_TRUE_WORDS: Final = ("1", "true", "yes", "on")
_FALSE_WORDS: Final = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Spec:
    """What fimble knows about one setting besides its type and default."""

    doc: str
    env: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    also: tuple[int, ...] = ()  # values allowed outside [minimum, maximum], each with a meaning (0 = automatic)
    choices: tuple[str, ...] = ()  # the allowed values of a string, or the allowed items of a list
    flag: str | None = ""  # "" = derived from the name (--n-ctx); None = no CLI flag
    check: Callable[[str, Any], None] | None = None  # a further check, raising SettingsError
    lowers_only: bool = False  # a bool that any layer can turn off and no later layer back on


_T = TypeVar("_T")


def _setting(default: _T, doc: str, **spec: Any) -> _T:
    return field(default=default, metadata={"spec": Spec(doc, **spec)})


def _check_api_key_env(label: str, name: Any) -> None:
    if not _API_KEY_ENV.fullmatch(name):
        raise SettingsError(
            f"Setting 'apiKeyEnv' is {name!r}, which is not an API-key variable: fimble sends that variable's value "
            "to the model server, so it takes only FIMBLE_API_KEY, another FIMBLE_* name, or a name ending in "
            '_API_KEY (such as OPENAI_API_KEY). To use a key kept elsewhere, export FIMBLE_API_KEY="$YOUR_VARIABLE".'
        )


@dataclass(frozen=True)
class Settings:
    model: str | None = _setting(
        None, "Path to a .gguf model. Unset: FIMBLE_MODEL, then the embedded default model.", env="FIMBLE_MODEL"
    )
    n_ctx: int = _setting(
        4096,
        "Context window in tokens; 0 uses the model's training context (capped at 32768).",
        env="FIMBLE_N_CTX",
        minimum=64,
        maximum=1 << 20,
        also=(0,),
    )
    n_threads: int = _setting(
        0,
        "CPU threads for llama.cpp; 0 picks the available cores (at most 8).",
        env="FIMBLE_N_THREADS",
        minimum=0,
        maximum=1024,
    )
    n_gpu_layers: int = _setting(
        0,
        "Layers offloaded to the GPU (needs a CUDA/Metal/Vulkan build of llama-cpp-python); -1 offloads all.",
        env="FIMBLE_N_GPU_LAYERS",
        minimum=0,
        maximum=100_000,
        also=(-1,),
    )
    n_batch: int = _setting(
        512, "Prompt tokens evaluated per llama.cpp batch.", env="FIMBLE_N_BATCH", minimum=1, maximum=65536
    )
    prompt_cache_mb: int = _setting(
        256,
        "Memory for snapshots of the model's KV cache: a prompt the model moved away from (a context snippet came "
        "and went, a file switch) is restored instead of evaluated again; 0 turns them off.",
        env="FIMBLE_PROMPT_CACHE_MB",
        minimum=0,
        maximum=1 << 20,
    )
    max_tokens: int = _setting(
        64, "Most tokens generated for one inline suggestion.", env="FIMBLE_MAX_TOKENS", minimum=1, maximum=65536
    )
    temperature: float = _setting(
        0.0, "Sampling temperature; 0 is greedy (deterministic).", env="FIMBLE_TEMPERATURE", minimum=0, maximum=2
    )
    time_budget_ms: int = _setting(
        3000,
        "A suggestion returns what was generated when this budget runs out.",
        env="FIMBLE_TIME_BUDGET_MS",
        minimum=1,
        maximum=600_000,
    )
    context_sources: tuple[str, ...] = _setting(
        ALL_CONTEXT_SOURCES,
        "Context sources besides the cursor window; `[]` (env and flag: `none`) = the cursor window only.",
        env="FIMBLE_CONTEXT",
        choices=ALL_CONTEXT_SOURCES,
        flag="--context",
    )
    max_document_bytes: int = _setting(
        1_000_000,
        "Documents larger than this (UTF-8 bytes) are tracked for edits but get no completions, syntax trees, "
        "diagnostics or context work (the user is told once); 0 = no limit.",
        env="FIMBLE_MAX_DOCUMENT_BYTES",
        minimum=0,
    )
    workspace_trusted: bool = _setting(
        True,
        "Set by the editor from its trust state (VS Code: `workspace.isTrusted`; Restricted Mode sends `false`), "
        "never from a settings file: `false` runs no git command and no checker for the workspace. It only goes "
        "down: any settings layer saying `false` wins.",
        lowers_only=True,
    )

    # -- engines (in-process llama.cpp or a shared server) ----------------------------------------------------
    backend: str = _setting(
        "llama.cpp",
        'Model engine: `llama.cpp` (in-process), `llama-server` or `openai` (a shared server, README "For teams").',
        env="FIMBLE_BACKEND",
        choices=BACKENDS,
    )
    url: str | None = _setting(None, "Base URL of the model server for remote backends.", env="FIMBLE_URL")
    api_key_env: str = _setting(
        "FIMBLE_API_KEY",
        "Name of the environment variable holding the remote server's API key (never the key itself): `FIMBLE_*` "
        "or a `*_API_KEY` name.",
        check=_check_api_key_env,
    )
    request_timeout_ms: int = _setting(
        10000,
        "Timeout for one request to a remote backend.",
        env="FIMBLE_REQUEST_TIMEOUT_MS",
        minimum=100,
        maximum=600_000,
    )
    fallback_model: str | None = _setting(
        None,
        "A local .gguf used when the remote backend is unreachable; unset = no fallback.",
        env="FIMBLE_FALLBACK_MODEL",
    )
    remote_model: str | None = _setting(
        None,
        "Model name on the remote server (the OpenAI `model` field, e.g. `qwen2.5-coder:7b-base`); unset = the "
        "server's first model.",
        env="FIMBLE_REMOTE_MODEL",
    )
    prompt_format: str = _setting(
        "auto",
        "FIM template for a remote model fimble cannot identify: a name from `prompts/fim` (qwen2.5-coder, "
        "starcoder2, starcoder, deepseek-coder, codellama, codestral, codegemma, granite, prefix-only); `auto` = "
        "detect.",
        env="FIMBLE_PROMPT_FORMAT",
    )
    # -- next edit ---------------------------------------------------------------------------------------------
    next_edit: bool = _setting(
        True,
        "Next-edit suggestions: the edit the user is likely to make next near the cursor, checked before it is "
        "shown (the clients ask after an edit pauses and after an accept).",
        env="FIMBLE_NEXT_EDIT",
    )
    next_edit_model: str | None = _setting(
        None,
        "A .gguf for next edits only (e.g. Sweep Next-Edit); unset = the completion model. When both do not fit in "
        "memory, the completion model serves both.",
        env="FIMBLE_NEXT_EDIT_MODEL",
    )
    next_edit_lines: int = _setting(
        21,
        "Height in lines of the editable region around the cursor a next edit may change.",
        env="FIMBLE_NEXT_EDIT_LINES",
        minimum=3,
        maximum=60,
    )
    # -- fix and explain agent ---------------------------------------------------------------------------------
    fix_max_attempts: int = _setting(
        3, "Most model attempts for one fix.", env="FIMBLE_FIX_MAX_ATTEMPTS", minimum=1, maximum=20
    )
    fix_time_budget_ms: int = _setting(
        60000,
        "Time budget for one fix, all attempts and checks included.",
        env="FIMBLE_FIX_TIME_BUDGET_MS",
        minimum=1000,
        maximum=3_600_000,
    )
    fix_allow_unverified: bool = _setting(
        False, "Offer a fix no check could verify, marked unverified (off: say no verified fix was found)."
    )
    fix_checkers: tuple[tuple[str, ...], ...] = _setting(
        (),
        "Extra checkers run on a fix candidate in a temporary git worktree: argument lists (no shell), with `{file}` "
        'replaced by the file\'s path, e.g. `[["ruff", "check", "{file}"]]`.',
        flag=None,
    )
    checker_timeout_ms: int = _setting(
        20000,
        "Timeout for one checker run.",
        env="FIMBLE_CHECKER_TIMEOUT_MS",
        minimum=100,
        maximum=3_600_000,
    )

    def merged(self, overrides: Mapping[str, Any], source: str = CONFIGURATION) -> Settings:
        """A copy with `overrides` applied; keys may be snake_case or camelCase, unknown keys and None values are
        ignored; the first bad value raises SettingsError."""
        changes: dict[str, Any] = {}
        for raw_key, value in overrides.items():
            name = _snake(raw_key)
            if name in _specs() and value is not None:
                changes[name] = parse(name, value, source)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults and FIMBLE_* variables; a bad value raises SettingsError naming the variable."""
        return cls().merged(env_layer(os.environ if environ is None else environ), ENV)

    def lsp_dict(self) -> dict[str, Any]:
        """The settings as an LSP client would send them (camelCase keys, lists)."""
        out: dict[str, Any] = _converter().unstructure(self)
        return out


# -- the fields, as data -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingField:
    """One setting: everything the CLI, doctor, docs and checks need to know about it."""

    name: str  # snake_case, the attribute
    key: str  # camelCase, the LSP key
    type: Any  # the resolved annotation
    default: Any
    spec: Spec

    @property
    def flag(self) -> str | None:
        if self.spec.flag is None:
            return None
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def kind(self) -> str:
        """The JSON type, as the docs name it."""
        return _KIND_NAMES[self.type]

    @property
    def allowed(self) -> str:
        """The allowed values in words ("" when the type says it all)."""
        s = self.spec
        if s.choices:
            head = "any of" if self.type == tuple[str, ...] else "one of"
            return f"{head} {', '.join(s.choices)}"
        if s.minimum is None and s.maximum is None:
            return ""
        if s.maximum is None:
            span = f"at least {_number(s.minimum)}"
        elif s.minimum is None:
            span = f"at most {_number(s.maximum)}"
        else:
            span = f"{_number(s.minimum)} to {_number(s.maximum)}"
        return ", ".join(str(v) for v in s.also) + (", or " if s.also else "") + span

    @property
    def lowest(self) -> float | None:
        """The smallest allowed number (what an editor's settings schema calls `minimum`)."""
        if self.spec.minimum is None:
            return None
        return min((self.spec.minimum, *self.spec.also))


_KIND_NAMES: dict[Any, str] = {
    int: "integer",
    float: "number",
    bool: "boolean",
    str: "string",
    str | None: "string",
    tuple[str, ...]: "string[]",
    tuple[tuple[str, ...], ...]: "string[][]",
}


def setting_fields() -> tuple[SettingField, ...]:
    """Every setting, in the order the docs list them."""
    return tuple(_specs().values())


@cache
def _specs() -> dict[str, SettingField]:
    hints = get_type_hints(Settings)  # the annotations are strings (PEP 563): resolve them to types once
    return {
        f.name: SettingField(f.name, _camel(f.name), hints[f.name], f.default, f.metadata["spec"])
        for f in fields(Settings)
    }


def field_named(key: str) -> SettingField | None:
    """A setting by its snake_case or camelCase name."""
    return _specs().get(_snake(key))


# -- reading values ------------------------------------------------------------------------------------------------
def parse(name: str, value: Any, source: str = CONFIGURATION) -> Any:
    """One setting's value from any source (JSON from an editor, a string from the environment or a flag), checked
    against its range; a bad value raises SettingsError naming the setting, where it came from and what it takes."""
    f = _specs()[name]
    label = _label(f, source)
    try:
        parsed = _converter().structure(value, f.type)
    except (ValueError, TypeError, cattrs.BaseValidationError):
        raise SettingsError(f"{label} is {value!r}; it takes {_expected(f)}.") from None
    if isinstance(parsed, str) and not parsed and f.type is str:
        return f.default  # an empty string unsets a setting that has no "unset" of its own
    if f.spec.check is not None and parsed is not None:
        f.spec.check(label, parsed)
    if not _in_range(f, parsed):
        raise SettingsError(f"{label} is {value!r}; it takes {_expected(f)}.")
    return parsed


def _in_range(f: SettingField, value: Any) -> bool:
    s = f.spec
    if s.choices and isinstance(value, tuple):
        return all(v in s.choices for v in value)
    if s.choices and isinstance(value, str):
        return value in s.choices
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value in s.also:
            return True
        return (s.minimum is None or value >= s.minimum) and (s.maximum is None or value <= s.maximum)
    return True


def _label(f: SettingField, source: str) -> str:
    where = {ENV: f.spec.env, FLAG: f.flag}.get(source)
    return f"Setting '{f.key}'" + (f" ({where})" if where else "")


def _expected(f: SettingField) -> str:
    words = {
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "string": "text",
        "string[]": "a list of names (in the environment or a flag: comma-separated, or none)",
        "string[][]": "a list of argument lists",
    }[f.kind]
    if f.kind == "string" and f.spec.choices:
        return f.allowed
    return words + (f": {f.allowed}" if f.allowed else "")


def env_layer(environ: Mapping[str, str]) -> dict[str, str]:
    """The FIMBLE_* variables that name a setting, keyed by setting (empty variables are unset)."""
    return {f.name: environ[f.spec.env] for f in setting_fields() if f.spec.env and environ.get(f.spec.env)}


# -- composing the layers ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Composed:
    """Settings from all layers, where each value came from, and the values refused."""

    settings: Settings
    sources: Mapping[str, str]  # setting name -> DEFAULT, ENV, INIT_OPTIONS, CONFIGURATION or FLAG
    problems: tuple[SettingsError, ...] = ()


def compose(layers: Sequence[tuple[str, Mapping[str, Any]]], previous: Composed | None = None) -> Composed:
    """Apply `layers` (source, values), lowest precedence first, over the defaults.

    A bad value is reported in `problems` and does not stop the others: that setting keeps its value in `previous`
    (the settings in force before this update), or without one the value of the layers below."""
    values: dict[str, Any] = {}
    sources = {f.name: DEFAULT for f in setting_fields()}
    refused: set[str] = set()
    problems: list[SettingsError] = []
    lowered: set[str] = set()
    for source, layer in layers:
        for raw_key, raw in layer.items():
            f = field_named(raw_key) if isinstance(raw_key, str) else None
            if f is None or raw is None:
                continue
            try:
                value = parse(f.name, raw, source)
            except SettingsError as exc:
                problems.append(exc)
                refused.add(f.name)
                continue
            refused.discard(f.name)
            if f.spec.lowers_only and value is False:
                lowered.add(f.name)
            values[f.name], sources[f.name] = value, source
    for name in refused:
        if previous is not None:
            values[name], sources[name] = getattr(previous.settings, name), previous.sources[name]
    for name in lowered:  # trust only goes down: a later layer (some clients fill it from workspace files) may not
        values[name] = False  # switch it back on after one said the workspace is not trusted
    return Composed(dataclasses.replace(Settings(), **values), sources, tuple(problems))


# -- the converter -------------------------------------------------------------------------------------------------
@cache
def _converter() -> cattrs.Converter:
    """cattrs with camelCase keys for Settings and hooks that read both JSON values and the strings of the
    environment and the command line, refusing what does not fit (1.5 for an integer, true for a number)."""
    conv = cattrs.Converter()
    renames: dict[str, Any] = {f.name: override(rename=f.key) for f in setting_fields()}
    conv.register_unstructure_hook(Settings, make_dict_unstructure_fn(Settings, conv, **renames))
    conv.register_structure_hook(Settings, make_dict_structure_fn(Settings, conv, **renames))
    hooks: dict[Any, Callable[[Any, Any], Any]] = {
        bool: _to_bool,
        int: _to_int,
        float: _to_float,
        str: _to_str,
        str | None: _to_optional_str,
        tuple[str, ...]: _to_names,
        tuple[tuple[str, ...], ...]: _to_argument_lists,
    }
    for kind, hook in hooks.items():
        if isinstance(kind, type):  # classes go through cattrs' singledispatch, which wins over predicates
            conv.register_structure_hook(kind, hook)
        else:
            conv.register_structure_hook_func(_is(kind), hook)
    return conv


def _is(kind: Any) -> Callable[[Any], bool]:
    # By equality, not identity or class: `str | None` and `tuple[str, ...]` are new objects at each spelling.
    return lambda t: bool(t == kind)


def _to_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise ValueError(value)


def _to_int(value: Any, _: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError(value)


def _to_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _to_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value.strip()


def _to_optional_str(value: Any, _: Any) -> str | None:
    return None if value is None else _to_str(value, str) or None


def _to_names(value: Any, _: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment and flags: "scope,git" or "none"
        value = [] if value.strip().lower() in ("", "none") else value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def _to_argument_lists(value: Any, _: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list | tuple):
        raise TypeError(value)
    out = []
    for argv in value:
        if not isinstance(argv, list | tuple) or not all(isinstance(a, str) for a in argv):
            raise TypeError(value)
        if argv:
            out.append(tuple(argv))
    return tuple(out)


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value or 0))


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key).replace("-", "_")


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)
