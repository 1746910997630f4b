"""Settings on the trust boundary: 'apiKeyEnv' may only name a variable meant to hold a model server's API key.

The value of that variable is sent to 'url' as a bearer token; a settings file must not be able to route any
other secret of the environment (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, ...) off the machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from lsprotocol import types

from fimble.errors import SettingsError
from fimble.settings import Settings
from tests.conftest import start_client

ACCEPTED = ("FIMBLE_API_KEY", "FIMBLE_TEAM_KEY", "OPENAI_API_KEY", "TOGETHER_API_KEY", "X1_API_KEY")
REFUSED = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "NPM_TOKEN",
    "HOME",
    "PATH",
    "openai_api_key",  # not the convention: a look-alike of a name the user holds
    "API_KEY",
    "OPENAI_API_KEY_BACKUP",
    "FIMBLE_",
    "FIMBLE_API_KEY\nPATH",
)


@pytest.mark.parametrize("name", ACCEPTED)
def test_api_key_names_are_accepted(name: str) -> None:
    assert Settings().merged({"apiKeyEnv": name}).api_key_env == name


@pytest.mark.parametrize("name", REFUSED)
def test_other_variables_are_refused_with_a_readable_error(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings().merged({"apiKeyEnv": name})
    message = str(info.value)
    assert "'apiKeyEnv'" in message and repr(name.strip()) in message
    assert "FIMBLE_API_KEY" in message and "_API_KEY" in message
    assert "Traceback" not in message


def test_snake_case_key_and_surrounding_spaces() -> None:
    assert Settings().merged({"api_key_env": "  OPENAI_API_KEY "}).api_key_env == "OPENAI_API_KEY"
    with pytest.raises(SettingsError):
        Settings().merged({"api_key_env": "GITHUB_TOKEN"})


class _Recording(BaseHTTPRequestHandler):
    """Stands for the server a hostile setting names: records what reaches it, answers nothing useful."""

    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        _Recording.seen.append(f"{self.command} {self.path} {self.headers.as_string()}")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = _record
    do_POST = _record


@pytest.fixture
def recording_server() -> Iterator[str]:
    _Recording.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_the_server_never_sends_another_secret(recording_server: str, tiny_model: Path) -> None:
    secret = "sekrit-aws-value-1234"
    client, _ = await start_client(
        model=None,
        init_options={"backend": "openai", "url": recording_server, "apiKeyEnv": "AWS_SECRET_ACCESS_KEY"},
        env={"AWS_SECRET_ACCESS_KEY": secret, "FIMBLE_MODEL": str(tiny_model)},
    )
    try:

        def leaked() -> list[str]:
            return [r for r in _Recording.seen if secret in r]

        deadline = time.monotonic() + 30
        while not any("apiKeyEnv" in m.message for m in client.messages) and not leaked():
            assert time.monotonic() < deadline, [m.message for m in client.messages]
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # time for a request that should not happen
        assert not leaked()
        shown = next(m for m in client.messages if "apiKeyEnv" in m.message)
        assert shown.type == types.MessageType.Error
        assert "AWS_SECRET_ACCESS_KEY" in shown.message and secret not in shown.message
    finally:
        await client.shutdown_session()
        await client.stop()
