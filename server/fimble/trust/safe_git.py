"""The one way fimble runs git: a workspace's repository can never make git run a program of its choosing.

A repository's own config (`.git/config`, files it includes, `.gitattributes` naming drivers) can point git at
programs: fsmonitor, hooks, diff textconv and external diff, clean/smudge/process filters, merge drivers, pagers,
editors, credential helpers, ssh and proxy commands, gpg, and transports that fetch (a partial clone fetches missing
objects by itself). Every git process fimble starts goes through `run`, which

- runs the git executable resolved once, to an absolute path, from the absolute entries of the server's PATH (a
  workspace cannot shadow `git`); a git older than 2.31 is not run at all (one log line);
- passes config overrides through GIT_CONFIG_COUNT/KEY_n/VALUE_n, which rank above every config file, as `git -c`
  does: the fixed keys below, plus every driver, helper and protocol key the effective config defines (listed first
  with `git config --list -z --show-origin`, which executes nothing). For filters an empty command means no filter
  (convert.c runs a command only `if (cmd && *cmd)`, likewise `process`), and `required=false` keeps a disabled one
  from being an error. For textconv and external diff an empty command is not "off": git tries to exec "" and fails,
  so nothing runs, and the callers also pass `--no-textconv` / `--no-ext-diff` so those commands still work;
- removes environment variables that name programs or relocate the repository, sets GIT_PAGER=cat, GIT_EDITOR=':'
  (git's own "no editor"), GIT_TERMINAL_PROMPT=0, GIT_ALLOW_PROTOCOL='' (no transport at all: fimble never talks to
  a remote) and GIT_NO_LAZY_FETCH=1, and drops relative PATH entries, which would resolve inside the workspace;
- refuses outright, starting nothing, when the caller says the workspace is not trusted (`trusted=False`): every
  call site has to say, so a new one cannot forget.

Each git process runs in its own process group with a timeout; on timeout the whole group is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIN_VERSION = (2, 31)  # GIT_CONFIG_COUNT
DEFAULT_TIMEOUT_S = 30.0
CONFIG_TIMEOUT_S = 10.0
UNTRUSTED = "the workspace is not trusted"

# Keys with no driver name: each names a program, or decides whether one runs. Hooks are looked up as
# "<hooksPath>/<name>", and nothing can exist below the null device.
FIXED_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", os.devnull),
    ("core.pager", "cat"),
    ("core.editor", ":"),
    ("sequence.editor", ":"),
    ("core.askPass", ""),
    ("core.sshCommand", ""),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("credential.helper", ""),  # the empty helper resets the list
    ("diff.external", ""),
    ("protocol.allow", "never"),
    ("submodule.recurse", "false"),
    ("log.showSignature", "false"),  # would run gpg on `git log`
    ("gpg.program", ""),
    ("gpg.openpgp.program", ""),
    ("gpg.x509.program", ""),
    ("gpg.ssh.program", ""),
    ("gpg.ssh.defaultKeyCommand", ""),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("safe.bareRepository", "explicit"),  # a bare repository hidden in the workspace is not picked up implicitly
    ("blame.ignoreRevsFile", ""),
    ("color.ui", "false"),
)

# Keys named "<section>.<name>.<key>" that the repository may define under any name: what each gets when the
# effective config defines any key in "<section>.<name>".
DRIVER_OVERRIDES: dict[str, tuple[tuple[str, str], ...]] = {
    "diff": (("textconv", ""), ("command", "")),
    "filter": (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")),
    "merge": (("driver", ""),),
    "credential": (("helper", ""),),
    "protocol": (("allow", "never"),),
    "remote": (("uploadpack", ""), ("receivepack", ""), ("vcs", ""), ("promisor", "false")),
    "hook": (("command", ""),),  # config-defined hooks (newer git)
}
# Transports a `protocol.<name>.allow` could re-enable although `protocol.allow` says never.
PROTOCOLS = ("file", "git", "ssh", "http", "https", "ext")
_FIXED = FIXED_OVERRIDES + tuple((f"protocol.{p}.allow", "never") for p in PROTOCOLS)

# Variables that name programs git would run, or point git at another repository, index or config.
DROPPED_ENV = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_EXTERNAL_DIFF",
        "GIT_DIFF_OPTS",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_PROXY_COMMAND",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
        "GIT_PAGER",
        "PAGER",
        "GIT_EDITOR",
        "GIT_SEQUENCE_EDITOR",
    }
)
SET_ENV: Mapping[str, str] = {
    "GIT_PAGER": "cat",
    "PAGER": "cat",
    "GIT_EDITOR": ":",
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ALLOW_PROTOCOL": "",  # an allow-list naming no transport; ranks above all protocol config
    "GIT_PROTOCOL_FROM_USER": "0",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_OPTIONAL_LOCKS": "0",  # no opportunistic index refresh written into the user's repository
}


class GitError(Exception):
    """git could not run, failed, or timed out. `returncode` is None when it did not run to an exit status."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class GitRefused(GitError):
    """Nothing was started: the workspace is not trusted, or there is no usable git."""


@dataclass(frozen=True)
class GitExecutable:
    path: str
    version: tuple[int, ...]


_lock = threading.Lock()
_resolved: list[GitExecutable | None] = []  # empty until resolved; then one entry


def _trusted_path() -> str:
    """PATH without empty or relative entries: those resolve against the current directory."""
    parts = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(p for p in parts if p and os.path.isabs(p))


def _parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"git version (\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def _resolve() -> GitExecutable | None:
    found = shutil.which("git", path=_trusted_path())
    if found is None:
        log.info("git not found on PATH: git context, history and worktrees are off")
        return None
    path = os.path.abspath(found)
    try:
        out = subprocess.run(
            [path, "version"],
            cwd=os.path.abspath(os.sep),  # no repository: `git version` reads none anyway
            env=_base_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CONFIG_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("git at %s cannot run (%s): fimble runs no git", path, exc)
        return None
    version = _parse_version(out.stdout.decode("utf-8", "replace"))
    if version is None or version[:2] < MIN_VERSION:
        shown = ".".join(map(str, version)) if version else "unknown"
        log.warning(
            "git %s at %s is older than %d.%d, which fimble needs to run git safely: fimble runs no git",
            shown,
            path,
            *MIN_VERSION,
        )
        return None
    return GitExecutable(path, version)


def executable() -> GitExecutable | None:
    """The git fimble runs (resolved once per process), or None when there is no usable one."""
    with _lock:
        if not _resolved:
            _resolved.append(_resolve())
        return _resolved[0]


def _base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in DROPPED_ENV and not k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "GIT_CONFIG_COUNT"))
    }
    env.update(SET_ENV)
    env["PATH"] = _trusted_path()
    return _with_config(env, _FIXED)


def _with_config(env: dict[str, str], pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    out = {k: v for k, v in env.items() if not k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))}
    for i, (key, value) in enumerate(pairs):
        out[f"GIT_CONFIG_KEY_{i}"] = key
        out[f"GIT_CONFIG_VALUE_{i}"] = value
    out["GIT_CONFIG_COUNT"] = str(len(pairs))
    return out


def parse_config_list(raw: bytes) -> list[tuple[str, str, str]]:
    """(origin, key, value) from `git config --list -z --show-origin`: NUL-separated origin and "key\\nvalue"."""
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    out = []
    for origin, entry in zip(fields[0::2], fields[1::2], strict=False):
        key, _, value = entry.partition("\n")
        if key:
            out.append((origin, key, value))
    return out


def driver_overrides(entries: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """The overrides for every driver-like key the config defines (pure: tested on its own).

    Config keys are "section.subsection.key"; section and key are case-insensitive, the subsection is not and may
    itself hold dots, so the subsection is everything between the first and the last dot."""
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for origin, key, _value in entries:
        if origin.startswith("command line:"):
            continue  # fimble's own overrides, or the user's `git -c`
        section, dot, rest = key.partition(".")
        subsection, dot2, _name = rest.rpartition(".")
        section = section.lower()
        if section == "pager" and dot and not dot2:
            # pager.<command> = <program>: git pages only to a terminal, but a string here names a program.
            if ("pager", rest) not in seen:
                seen.add(("pager", rest))
                pairs.append((f"pager.{rest}", "false"))
            continue
        if not (dot and dot2 and subsection) or section not in DRIVER_OVERRIDES:
            continue
        if (section, subsection) in seen:
            continue
        seen.add((section, subsection))
        log.debug("git: disabling %s.%s (from %s)", section, subsection, origin)
        pairs.extend((f"{section}.{subsection}.{name}", value) for name, value in DRIVER_OVERRIDES[section])
    return pairs


def _spawn(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float, stdin: bytes | None
) -> tuple[int, bytes, bytes]:
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=os.name == "posix",  # a timeout kills git and whatever it started, as one group
    )
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.name == "posix":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.kill()
        proc.communicate()
        raise GitError(f"git {_subcommand(argv[1:])} timed out after {timeout:.0f} s") from None
    return proc.returncode, out, err


def _subcommand(args: Sequence[str]) -> str:
    return next((a for a in args if not a.startswith("-")), "")


def safe_env(cwd: Path) -> dict[str, str]:
    """The environment for a git process in `cwd`: the fixed overrides plus one for every driver the effective
    config there defines. Raises GitError when the config cannot be read (then nothing else runs either)."""
    git = executable()
    if git is None:
        raise GitRefused("no usable git")
    env = _base_env()
    listing = [git.path, "--no-pager", "config", "--list", "-z", "--show-origin"]
    code, out, err = _spawn(listing, cwd, env, CONFIG_TIMEOUT_S, None)
    if code != 0:
        raise GitError(f"git config --list failed: {_first_line(err)}", code, err.decode("utf-8", "replace"))
    return _with_config(env, (*_FIXED, *driver_overrides(parse_config_list(out))))


def _first_line(err: bytes) -> str:
    text = err.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "no message"


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    trusted: bool,
    timeout: float = DEFAULT_TIMEOUT_S,
    ok: Sequence[int] = (0,),
    stdin: bytes | None = None,
) -> str:
    """Run `git <args>` in `cwd` with repository-controlled programs disabled; its stdout as text (undecodable bytes
    replaced). Blocking: call from a thread. Raises GitRefused (nothing started) for an untrusted workspace or
    without a usable git, GitError for a failure, an exit status not in `ok`, or a timeout."""
    if not trusted:
        raise GitRefused(f"git not run: {UNTRUSTED}")
    git = executable()
    if git is None:
        raise GitRefused("no usable git")
    try:
        env = safe_env(cwd)
        code, out, err = _spawn([git.path, "--no-pager", *args], cwd, env, timeout, stdin)
    except OSError as exc:
        raise GitError(f"git {_subcommand(args)} could not run: {exc.strerror or exc}") from None
    if code not in ok:
        stderr = err.decode("utf-8", "replace")
        raise GitError(f"git {_subcommand(args)} exited with {code}: {_first_line(err)}", code, stderr)
    return out.decode("utf-8", "replace")


def toplevel(path: Path, *, trusted: bool) -> Path | None:
    """The working tree holding the folder `path` (resolved), or None: not in a repository (a bare one is not
    discovered), not trusted, or no usable git."""
    try:
        out = run(["rev-parse", "--show-toplevel"], path, trusted=trusted, timeout=CONFIG_TIMEOUT_S)
    except GitError as exc:
        log.debug("no git working tree at %s: %s", path, exc)
        return None
    top = out.rstrip("\n")
    return Path(top).resolve() if top else None
