"""The bot token is never printed: not by `check`, not when `run` stops at start, not in a
traceback nobody caught. Against a fake Bot API server on loopback that rejects every token (or
fails quoting the URL it was asked, as a proxy's error page does), with the real command line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bot.logs import Redactor, setup_logging
from sandbox.server import free_port
from tests.proc import ROOT
from tests.test_cli import cli

# Shaped like BotFather's: the bot's id, a colon, 35 characters of secret.
TOKEN = "5550001234:AAFleakCanary_Zq7xW3vN9pL2kR8tY4uJ6hB"
TOKEN_SECRET = TOKEN.partition(":")[2]
API_KEY = "rs_live_leakcanary_9f8e7d6c5b4a"


class FakeBotApi:
    """A Bot API server in a thread that refuses everything: `unauthorized` answers 401 as
    Telegram does for a revoked token; `echo` answers 500 with the request's path (the token)
    in its description. Resell Scan's paths get 401 either way."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.paths: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.respond()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.respond()

            def respond(self) -> None:
                fake.paths.append(self.path)
                if fake.answer == "echo" and self.path.startswith("/bot"):
                    status = HTTPStatus.INTERNAL_SERVER_ERROR
                    description = f"Internal Server Error at {self.path}"
                else:
                    status, description = HTTPStatus.UNAUTHORIZED, "Unauthorized"
                body = json.dumps(
                    {"ok": False, "error_code": int(status), "description": description}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # quiet: the test reads `paths`

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeBotApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def saw_token(self) -> bool:
        """The token really went out (in the URL), so its absence from the output means
        something."""
        return any(f"/bot{TOKEN}/" in path for path in self.paths)


@pytest.fixture
def unauthorized() -> Iterator[FakeBotApi]:
    with FakeBotApi("unauthorized") as server:
        yield server


@pytest.fixture
def echoing() -> Iterator[FakeBotApi]:
    with FakeBotApi("echo") as server:
        yield server


def bot_env(server: FakeBotApi, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": server.url,
        "RESELL_SCAN_API_KEY": API_KEY,
        "RESELL_SCAN_BASE_URL": f"{server.url}/api/v1",
        "ALLOWED_USER_IDS": "1",
        "DATABASE_PATH": str(tmp_path / "bot.sqlite3"),
        "HTTP_PORT": str(free_port()),
        "LOG_LEVEL": "DEBUG",  # every line the bot has, so every chance to leak
        **extra,
    }


def assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    lines = (result.stdout + result.stderr).splitlines()
    for secret, name in ((TOKEN, "token"), (TOKEN_SECRET, "token's secret"), (API_KEY, "key")):
        leaks = [line[:300] for line in lines if secret in line]
        assert not leaks, f"the {name} was printed in {len(leaks)} line(s): {leaks[:3]}"


def test_check_says_the_token_was_rejected_and_never_prints_it(
    unauthorized: FakeBotApi, tmp_path: Path
) -> None:
    result = cli("check", env=bot_env(unauthorized, tmp_path), cwd=tmp_path, timeout=30)
    assert unauthorized.saw_token()
    assert_no_secret(result)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"FAIL Telegram: TELEGRAM_BOT_TOKEN rejected by the Bot API server at "
        f"{unauthorized.url} (Unauthorized); copy the token again from @BotFather"
    ) in result.stdout
    assert "Traceback" not in result.stderr


def test_run_with_a_rejected_token_stops_with_one_line_naming_the_setting(
    unauthorized: FakeBotApi, tmp_path: Path
) -> None:
    result = cli("run", env=bot_env(unauthorized, tmp_path), cwd=tmp_path, timeout=30)
    assert unauthorized.saw_token()
    assert_no_secret(result)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: TELEGRAM_BOT_TOKEN: rejected by the Bot API server at {unauthorized.url} "
        "(Unauthorized); copy the token again from @BotFather, or check TELEGRAM_API_BASE_URL"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert "DEBUG" in result.stderr, "the log really ran at DEBUG"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_unexpected_error_at_start_is_logged_with_the_token_masked(
    echoing: FakeBotApi, tmp_path: Path, log_format: str
) -> None:
    result = cli(
        "run", env=bot_env(echoing, tmp_path, LOG_FORMAT=log_format), cwd=tmp_path, timeout=30
    )
    assert echoing.saw_token()
    assert_no_secret(result)
    assert result.returncode == 1, result.stderr
    # One JSON line with the traceback inside, as every other event (aiosqlite's thread may
    # still log its close after it: the crash line is found, not assumed last).
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    crashes = [line for line in lines if line["level"] == "CRITICAL"]
    crash = crashes[0] if log_format == "json" else None
    if crash is not None:
        assert len(crashes) == 1, crashes
        assert crash["message"].startswith("stopped by an unexpected error: NetworkError")
        assert "Traceback" in crash["exception"] and "/bot***/getMe" in crash["exception"]
    else:
        assert "CRITICAL bot: stopped by an unexpected error: NetworkError" in result.stderr
        assert "Traceback" in result.stderr
    assert "Internal Server Error at /bot***/getMe" in result.stderr, "what failed, masked"


def test_check_masks_the_token_in_an_error_that_quotes_it(
    echoing: FakeBotApi, tmp_path: Path
) -> None:
    result = cli("check", env=bot_env(echoing, tmp_path), cwd=tmp_path, timeout=30)
    assert echoing.saw_token()
    assert_no_secret(result)
    assert result.returncode == 1
    assert "FAIL Telegram: getMe failed: Internal Server Error at /bot***/getMe" in result.stdout


CRASHING = """
import threading, warnings
from bot.logs import log_uncaught, setup_logging
setup_logging("INFO", "text", [TOKEN])
log_uncaught()
thread = threading.Thread(target=lambda: int(f"/bot{TOKEN}/getUpdates"), name="poller")
thread.start()
thread.join()
warnings.warn(f"retrying /bot{TOKEN}/getMe", UserWarning, stacklevel=1)
class Leaky:
    def __del__(self):
        raise RuntimeError(f"closing /bot{TOKEN}/close")
Leaky()
raise RuntimeError(f"cannot start /bot{TOKEN}/getMe")
"""


def test_uncaught_errors_in_any_thread_and_warnings_go_through_the_masking_log() -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"TOKEN = {TOKEN!r}\n{CRASHING}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert_no_secret(result)
    assert result.returncode == 1
    lines = result.stderr
    assert "ERROR bot: unexpected error in thread poller" in lines
    assert "invalid literal for int() with base 10: '/bot***/getUpdates'" in lines
    assert "WARNING py.warnings:" in lines and "retrying /bot***/getMe" in lines
    assert "ERROR bot: Exception ignored in" in lines and "closing /bot***/close" in lines
    assert (
        "CRITICAL bot: stopped by an unexpected error: RuntimeError: cannot start /bot***/getMe"
        in lines
    )
    assert lines.count("Traceback") == 3, lines


def test_the_token_is_masked_whole_and_its_secret_part_alone() -> None:
    redact = Redactor([TOKEN, API_KEY])
    assert redact(f"GET /bot{TOKEN}/getMe") == "GET /bot***/getMe"
    assert redact(f"GET /bot5550001234%3A{TOKEN_SECRET}/getMe") == "GET /bot***/getMe"
    assert redact(f"secret {TOKEN_SECRET}, key {API_KEY}") == "secret ***, key ***"
    # A short part after a colon is no real token: masking it would blank out common words.
    assert Redactor(["123:abc"])("123:abc, abc") == "***, abc"


def test_a_logged_exception_is_masked_in_both_formats() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for fmt in ("text", "json"):
            stream = io.StringIO()
            setup_logging("INFO", fmt, [TOKEN], stream=stream)
            try:
                raise ValueError(f"/bot{TOKEN}/getMe")
            except ValueError:
                logging.getLogger("x").exception("failed at %s", TOKEN_SECRET)
            output = stream.getvalue()
            assert TOKEN_SECRET not in output and "/bot***/getMe" in output, output
            assert "failed at ***" in output
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
