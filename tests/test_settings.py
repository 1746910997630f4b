"""Settings from every source: parsed by one converter, checked against the ranges of settings.py, refused with a
message that names the setting and what it takes (CLI: exit 2; server: a message, the previous value kept)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types

from fimble.errors import SettingsError
from fimble.settings import CONFIGURATION, ENV, FLAG, INIT_OPTIONS, Settings, compose, field_named, parse
from fimble.settings_docs import markdown_table
from tests.conftest import open_doc, server_env, start_client, wait_until

URI = "file:///tmp/fimble-settings/big.py"


def fimble(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fimble", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(**(env or {})),
    )


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("n_threads", "-3", "0 to 1024"),
        ("temperature", "-1", "0 to 2"),
        ("max_tokens", "0", "1 to 65536"),
        ("n_ctx", "-5", "0, or 64 to 1048576"),
        ("n_ctx", "32", "0, or 64 to 1048576"),
        ("n_gpu_layers", "-2", "-1, or 0 to 100000"),
        ("time_budget_ms", "soon", "1 to 600000"),
        ("backend", "llama", "one of llama.cpp, llama-server, openai"),
        ("context_sources", "scope,nearby", "any of scope, definitions, similar, ring, git"),
        ("fix_allow_unverified", "maybe", "true or false"),
    ],
)
def test_bad_values_name_the_setting_its_source_and_range(name: str, value: str, allowed: str) -> None:
    f = field_named(name)
    assert f is not None
    for source, where in ((FLAG, f.flag), (ENV, f.spec.env), (CONFIGURATION, None)):
        with pytest.raises(SettingsError) as info:
            parse(name, value, source)
        message = str(info.value)
        assert f"Setting '{f.key}'" + (f" ({where})" if where else " is") in message, message
        assert allowed in message and repr(value) in message, message


@pytest.mark.parametrize(
    ("name", "value"),
    [("n_ctx", True), ("n_ctx", 2048.5), ("temperature", False), ("model", 7), ("context_sources", "scope"),
     ("fix_checkers", ["ruff", "check"]), ("fix_checkers", "ruff check"), ("workspace_trusted", 1)],
)  # fmt: skip
def test_json_values_of_the_wrong_type_are_refused(name: str, value: object) -> None:
    if (name, value) == ("context_sources", "scope"):  # a string is the env/flag spelling of a list: accepted
        assert parse(name, value) == ("scope",)
        return
    with pytest.raises(SettingsError):
        parse(name, value)


def test_values_every_source_spells_its_own_way() -> None:
    env = {
        "FIMBLE_N_CTX": "0",
        "FIMBLE_CONTEXT": "scope, git,scope",
        "FIMBLE_TEMPERATURE": " 0.5 ",
        "FIMBLE_URL": "",  # empty: unset
        "FIMBLE_PROMPT_FORMAT": "starcoder",
    }
    settings = Settings.from_env(env)
    assert settings.n_ctx == 0 and settings.context_sources == ("scope", "git") and settings.temperature == 0.5
    assert settings.url is None and settings.prompt_format == "starcoder"
    assert Settings.from_env({"FIMBLE_CONTEXT": "none"}).context_sources == ()
    lsp = Settings().merged({"nCtx": 2048.0, "contextSources": [], "fixCheckers": [["ruff", "{file}"], []]})
    assert lsp.n_ctx == 2048 and lsp.context_sources == () and lsp.fix_checkers == (("ruff", "{file}"),)
    assert Settings().merged({"promptFormat": "", "model": "  "}) == Settings()  # empty text: the default / unset
    with pytest.raises(SettingsError, match="FIMBLE_MAX_TOKENS"):
        Settings.from_env({"FIMBLE_MAX_TOKENS": "0"})


def test_what_lsp_dict_writes_reads_back() -> None:
    settings = Settings(n_ctx=2048, context_sources=("git",), fix_checkers=(("ruff", "{file}"),), url="http://x:1")
    sent = settings.lsp_dict()
    assert sent["nCtx"] == 2048 and sent["contextSources"] == ["git"] and sent["fixCheckers"] == [["ruff", "{file}"]]
    assert json.loads(json.dumps(sent)) == sent
    assert Settings().merged(sent) == settings


def test_a_refused_value_keeps_the_previous_one_and_the_rest_applies() -> None:
    first = compose([(ENV, {"n_ctx": "2048"}), (INIT_OPTIONS, {"maxTokens": 12, "nThreads": 2})])
    assert not first.problems
    assert (first.settings.n_ctx, first.settings.max_tokens, first.settings.n_threads) == (2048, 12, 2)
    assert first.sources["n_ctx"] == ENV and first.sources["max_tokens"] == INIT_OPTIONS
    assert first.sources["temperature"] == "default"
    update = [(ENV, {"n_ctx": "2048"}), (INIT_OPTIONS, {"maxTokens": 12, "nThreads": 2})]
    update.append((CONFIGURATION, {"maxTokens": 0, "nThreads": 4, "temperature": "hot"}))
    second = compose(update, first)
    assert [("'maxTokens'" in str(p), "'temperature'" in str(p)) for p in second.problems] == [(1, 0), (0, 1)]
    assert second.settings.max_tokens == 12 and second.sources["max_tokens"] == INIT_OPTIONS  # kept
    assert second.settings.n_threads == 4 and second.sources["n_threads"] == CONFIGURATION  # applied
    assert second.settings.temperature == 0.0
    # A higher layer with a good value wins over a lower one's bad value.
    assert compose([(ENV, {"n_ctx": "-5"}), (FLAG, {"n_ctx": 1024})]).settings.n_ctx == 1024


def test_trust_only_goes_down_across_layers() -> None:
    lowered = compose([(INIT_OPTIONS, {"workspaceTrusted": False}), (CONFIGURATION, {"workspaceTrusted": True})])
    assert lowered.settings.workspace_trusted is False
    assert compose([(CONFIGURATION, {"workspaceTrusted": True})]).settings.workspace_trusted is True


def test_cli_refuses_a_bad_flag_with_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    result = fimble("complete", f"{source}:1:1", "--n-ctx", "-5")
    assert result.returncode == 2, result.stderr
    assert "'nCtx' (--n-ctx)" in result.stderr and "0, or 64 to 1048576" in result.stderr
    assert "architecture" not in result.stderr and "Traceback" not in result.stderr
    env_bad = fimble("doctor", "--settings", env={"FIMBLE_TEMPERATURE": "-1"})
    assert env_bad.returncode == 2 and "FIMBLE_TEMPERATURE" in env_bad.stderr and "0 to 2" in env_bad.stderr


def test_models_path_refuses_a_missing_model(tmp_path: Path) -> None:
    result = fimble("models", "path", env={"FIMBLE_MODEL": str(tmp_path / "nope.gguf")})
    assert result.returncode == 2 and not result.stdout
    assert "FIMBLE_MODEL" in result.stderr and "nope.gguf" in result.stderr and "Traceback" not in result.stderr


def test_doctor_settings_says_where_each_value_came_from() -> None:
    result = fimble("doctor", "--settings", "--json", "--max-tokens", "12", "--no-fix-allow-unverified",
                    env={"FIMBLE_N_CTX": "2048"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    assert (rows["nCtx"]["value"], rows["nCtx"]["source"]) == (2048, "env")
    assert (rows["maxTokens"]["value"], rows["maxTokens"]["source"]) == (12, "flag")
    assert (rows["fixAllowUnverified"]["value"], rows["fixAllowUnverified"]["source"]) == (False, "flag")
    assert rows["temperature"] == {
        "key": "temperature", "value": 0.0, "source": "default", "type": "number", "default": 0.0,
        "allowed": "0 to 2", "env": "FIMBLE_TEMPERATURE", "flag": "--temperature",
    }  # fmt: skip
    text = fimble("doctor", "--settings")
    assert text.returncode == 0 and all(row in text.stdout for row in rows)
    markdown = fimble("doctor", "--settings", "--markdown")
    assert markdown.stdout.strip() == markdown_table()


async def test_the_server_tells_a_bad_value_and_keeps_the_previous_one(tiny_model: Path) -> None:
    # maxDocumentBytes shows which value is in force: a document over it is answered "too large" at once.
    client, recorder = await start_client(model=tiny_model, init_options={"maxDocumentBytes": 10, "temperature": -1})
    try:
        await wait_until(lambda: any("'temperature'" in m.message for m in client.messages))
        shown = next(m for m in client.messages if "'temperature'" in m.message)
        assert shown.type == types.MessageType.Error and "0 to 2" in shown.message
        open_doc(client, URI, "x = 1\n" * 10)

        async def too_large() -> bool:
            recorder.status.clear()
            await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=URI),
                    position=types.Position(line=1, character=0),
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                )
            )
            return any(s.get("reason") == "documentTooLarge" for s in recorder.status)

        assert await too_large()  # the other setting of that update applies
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"fimble": {"maxDocumentBytes": -1}})
        )
        await wait_until(lambda: any("'maxDocumentBytes'" in m.message for m in client.messages))
        assert await too_large()  # still 10, not the default
    finally:
        await client.shutdown_session()
        await client.stop()
