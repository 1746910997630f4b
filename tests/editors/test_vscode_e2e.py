"""End-to-end: fimble's VS Code extension in a real VS Code (code-server 4.100.3) driven by Debian's chromium.

Opens a file, types, sees fimble's ghost text, accepts it with Tab, runs "fimble: Explain selection", then
checks bad input (a missing server binary, a model that fails to load) and the recovery.

Needs code-server (scripts/setup_code_server.sh installs it into ${FIMBLE_CACHE:-~/.cache/fimble-ci}) and
/usr/bin/chromium; skips with the reason when either is missing. FIMBLE_SCREENSHOT_DIR, when set, receives
screenshots (vscode-ghost-text.png, vscode-explain.png, vscode-bad-model.png).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fimble_dev.tiny_gguf import write_not_gguf, write_tiny_gguf

CODE_SERVER_VERSION = "4.100.3"
REPO = Path(__file__).resolve().parents[2]
EXT_DIR = REPO / "editor-clients" / "vscode"
DRIVER = Path(__file__).resolve().parent / "vscode_e2e" / "drive.js"
INITIAL = "def add(a, b):\n    "
TYPED = "return a"

pytestmark = [pytest.mark.editor, pytest.mark.timeout(1200)]

# A quiet window: no welcome page, tips, telemetry, updates or other completion popups over the ghost text.
QUIET_SETTINGS: dict[str, object] = {
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": False,
    "workbench.enableExperiments": False,
    "workbench.welcomePage.walkthroughs.openOnInstall": False,
    "security.workspace.trust.enabled": False,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": False,
    "extensions.autoUpdate": False,
    "extensions.ignoreRecommendations": True,
    "editor.inlineSuggest.enabled": True,
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.parameterHints.enabled": False,
    "editor.acceptSuggestionOnEnter": "off",
    "editor.minimap.enabled": False,
    "files.autoSave": "off",
    "files.trimTrailingWhitespace": False,
    "git.enabled": False,
}


def _cache_root() -> Path:
    return Path(os.environ.get("FIMBLE_CACHE") or Path.home() / ".cache" / "fimble-ci")


def find_code_server() -> Path | None:
    candidates = [
        os.environ.get("FIMBLE_CODE_SERVER"),
        str(_cache_root() / f"code-server-{CODE_SERVER_VERSION}" / "bin" / "code-server"),
        shutil.which("code-server"),
    ]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def find_chromium() -> Path | None:
    for c in (os.environ.get("FIMBLE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if c and Path(c).is_file():
            return Path(c)
    return None


def find_fimble() -> Path:
    beside = Path(sys.executable).parent / "fimble"
    if beside.is_file():
        return beside
    found = shutil.which("fimble")
    assert found, "the fimble executable is not installed in this environment (pip install -e .)"
    return Path(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


def _newest_source_mtime() -> float:
    """The newest of what goes into the .vsix: the extension's sources and the server it carries (bundled/)."""
    files = [EXT_DIR / "package.json", EXT_DIR / "package-lock.json", EXT_DIR / ".vscodeignore"]
    for sub in ("src", "media"):
        files.extend(p for p in (EXT_DIR / sub).rglob("*") if p.is_file())
    files += [REPO / "pyproject.toml", REPO / "README.md", REPO / "editor-clients" / "install" / "fimble_install.py"]
    for sub in ("server/fimble", "prompts"):
        files.extend(p for p in (REPO / sub).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return max(p.stat().st_mtime for p in files if p.exists())


def build_vsix() -> Path:
    """The packaged extension; (re)built with npm when missing or older than its sources."""
    vsix = EXT_DIR / "fimble.vsix"
    if vsix.exists() and vsix.stat().st_mtime >= _newest_source_mtime():
        return vsix
    npm = shutil.which("npm")
    assert npm, "npm is needed to build the .vsix"
    if not (EXT_DIR / "node_modules" / ".bin" / "vsce").exists():
        _run([npm, "ci", "--no-audit", "--no-fund"], EXT_DIR, 900)
    _run([npm, "run", "package"], EXT_DIR, 600)
    assert vsix.exists()
    return vsix


def _tail(path: Path, n: int = 6000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError as exc:
        return f"<{exc}>"


@pytest.fixture
def code_server_bin() -> Path:
    code_server = find_code_server()
    if code_server is None:
        pytest.skip(
            f"code-server {CODE_SERVER_VERSION} is not installed (run scripts/setup_code_server.sh, "
            "or set FIMBLE_CODE_SERVER)"
        )
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium, or set FIMBLE_CHROMIUM)")
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    return code_server


class CodeServer:
    def __init__(self, binary: Path, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.user_data = root / "user-data"
        self.extensions = root / "extensions"
        self.log = root / "code-server.log"
        self.port = _free_port()
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(root / "xdg-config"),
            "XDG_DATA_HOME": str(root / "xdg-data"),
            "XDG_CACHE_HOME": str(root / "xdg-cache"),
        }
        for k in ("PASSWORD", "HASHED_PASSWORD", "VSCODE_PROXY_URI", "CS_DISABLE_FILE_DOWNLOADS"):
            self.env.pop(k, None)
        self.proc: subprocess.Popen[bytes] | None = None

    def common(self) -> list[str]:
        return [
            str(self.binary),
            "--config",
            str(self.root / "config.yaml"),
            "--user-data-dir",
            str(self.user_data),
            "--extensions-dir",
            str(self.extensions),
        ]

    def install(self, vsix: Path) -> None:
        (self.root / "config.yaml").write_text("auth: none\n")
        _run([*self.common(), "--install-extension", str(vsix), "--force"], self.root, 300, self.env)
        listed = subprocess.run(
            [*self.common(), "--list-extensions", "--show-versions"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        assert "fimble.fimble@" in listed.stdout, listed.stdout + listed.stderr

    def start(self) -> None:
        cmd = [
            *self.common(),
            "--bind-addr",
            f"127.0.0.1:{self.port}",
            "--auth",
            "none",
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
            "--disable-getting-started-override",
            "--disable-proxy",
            "--ignore-last-opened",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"code-server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.5)
        raise AssertionError(f"code-server did not answer on port {self.port}:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def diagnostics(self) -> str:
        parts = [f"--- code-server log\n{_tail(self.log)}"]
        logs = self.user_data / "logs"
        if logs.exists():
            for p in sorted(logs.rglob("*.log")):
                if "fimble" in p.name.lower() or p.name in ("exthost.log", "remoteexthost.log"):
                    parts.append(f"--- {p.relative_to(self.user_data)}\n{_tail(p, 4000)}")
        return "\n".join(parts)


@pytest.fixture
def code_server(code_server_bin: Path, tmp_path: Path) -> Iterator[CodeServer]:
    server = CodeServer(code_server_bin, tmp_path / "cs")
    server.root.mkdir()
    try:
        yield server
    finally:
        server.stop()


def test_vscode_ghost_text_tab_and_explain(code_server: CodeServer, tmp_path: Path) -> None:
    started = time.monotonic()
    vsix = build_vsix()
    model = write_tiny_gguf(tmp_path / "models" / "tiny.gguf")
    bad_model = write_not_gguf(tmp_path / "models" / "broken.gguf")
    server_log = tmp_path / "fimble-server.log"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    source = workspace / "main.py"
    source.write_text(INITIAL)

    # A code-server window is a remote window: machine-scoped settings (what fimble runs and loads) live in the
    # remote settings, where its Settings editor puts them; the others in the user settings.
    machine_settings_file = code_server.user_data / "Machine" / "settings.json"
    machine_settings_file.parent.mkdir(parents=True)
    machine_settings = {
        "fimble.serverPath": str(find_fimble()),
        "fimble.model": str(model),
        "fimble.serverArgs": ["--log-file", str(server_log)],
    }
    machine_settings_file.write_text(json.dumps(machine_settings, indent=2))
    # The workspace's own settings cannot choose them: were these used, no suggestion would ever come.
    (workspace / ".vscode").mkdir()
    (workspace / ".vscode" / "settings.json").write_text(
        json.dumps({"fimble.serverPath": "/nonexistent/evil-fimble", "fimble.model": str(bad_model)})
    )
    settings_file = code_server.user_data / "User" / "settings.json"
    settings_file.parent.mkdir(parents=True)
    settings = {"fimble.maxTokens": 12, "fimble.timeBudgetMs": 20000, **QUIET_SETTINGS}
    settings_file.write_text(json.dumps(settings, indent=2))

    code_server.install(vsix)
    code_server.start()
    setup_s = time.monotonic() - started

    result_file = tmp_path / "drive-result.json"
    shots = os.environ.get("FIMBLE_SCREENSHOT_DIR", "")
    env: dict[str, str] = {
        **os.environ,
        "FIMBLE_E2E_URL": f"http://127.0.0.1:{code_server.port}/?folder={workspace}",
        "FIMBLE_E2E_FILE": source.name,
        "FIMBLE_E2E_TYPE": TYPED,
        "FIMBLE_E2E_RESULT": str(result_file),
        "FIMBLE_E2E_PROFILE": str(tmp_path / "chromium-profile"),
        "FIMBLE_E2E_NODE_MODULES": str(EXT_DIR / "node_modules"),
        "FIMBLE_E2E_BAD_MODEL": str(bad_model),
        "FIMBLE_E2E_SERVER_PATH": str(machine_settings["fimble.serverPath"]),
        "FIMBLE_E2E_MODEL": str(model),
        "FIMBLE_E2E_SETTINGS": str(settings_file),
        "FIMBLE_E2E_MACHINE_SETTINGS": str(machine_settings_file),
        "FIMBLE_E2E_TIMEOUT_MS": "150000",
        "FIMBLE_CHROMIUM": str(find_chromium()),
    }
    if shots:
        env["FIMBLE_SCREENSHOT_DIR"] = str(Path(shots).resolve())
    drive = subprocess.run(["node", str(DRIVER)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    result = json.loads(result_file.read_text()) if result_file.exists() else {}

    def explain_failure(what: str) -> str:
        return (
            f"{what}\n--- driver exit {drive.returncode}\n{drive.stderr[-6000:]}\n"
            f"--- driver result\n{json.dumps(result, indent=2)[-6000:]}\n"
            f"--- fimble server log\n{_tail(server_log)}\n{code_server.diagnostics()}"
        )

    assert drive.returncode == 0 and result.get("ok"), explain_failure("the browser session failed")

    # Ghost text was shown, and Tab put it into the document (saved to disk).
    ghost = (result.get("ghostText") or "").replace("\u00a0", " ")
    assert ghost.strip(), explain_failure("no ghost text")
    saved = source.read_text()
    assert saved.startswith(INITIAL + TYPED), explain_failure(f"unexpected file after saving: {saved!r}")
    accepted = saved[len(INITIAL + TYPED) :]
    assert accepted.strip(), explain_failure(f"Tab accepted nothing: {saved!r}")
    first = ghost.strip().splitlines()[0][:8]
    assert first in saved, explain_failure(f"the ghost text {ghost!r} is not in the saved file {saved!r}")

    # The status bar showed the last latency and speed.
    after = result.get("statusAfterCompletion") or {}
    assert "ms" in (after.get("label", "") + after.get("text", "")), explain_failure("no latency in the status bar")

    # Explain streamed rendered Markdown into the webview beside the editor.
    explanation = result.get("explanation") or {}
    assert explanation.get("state") == "done", explain_failure("the explanation did not finish")
    assert explanation.get("text", "").strip(), explain_failure("the explanation is empty")

    # Fix at cursor reached fimble's quick fix (the tiny model may well find no verified fix: it must say so).
    fix = result.get("fix") or {}
    answers = " ".join(fix.get("messages") or [])
    assert fix.get("edited") or "fimble fix" in answers.lower() or "no verified fix" in answers.lower(), (
        explain_failure("fix at cursor did not get to fimble's quick fix")
    )

    # The debug command shows the prompt of the last suggestion, with the file's text in it.
    prompt = result.get("prompt") or ""
    assert "# fimble prompt" in prompt and "def add" in prompt, explain_failure("the last prompt was not shown")

    # Bad input: a clear status, the editor kept working, and the server came back.
    bad = result["badInput"]
    missing = bad["missingServer"]["status"]["label"]
    assert "/nonexistent/fimble" in missing and "Retrying in" in missing, explain_failure("missing server not reported")
    assert "# still typing" in bad["editorWhileMissing"], explain_failure("the editor did not take input")
    assert "error" in bad["badModel"]["status"]["label"].lower(), explain_failure("bad model not reported")
    assert "ready" in bad["recovered"]["label"].lower(), explain_failure("no recovery")

    if shots:
        assert (Path(shots) / "vscode-ghost-text.png").is_file()
    print(f"code-server setup {setup_s:.1f} s, total {time.monotonic() - started:.1f} s; ghost text {ghost!r}")
