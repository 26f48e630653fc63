"""The command line: settings errors, --help, check, demo, SIGTERM, and secrets in logs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from tests.harness import ANNA, TOKEN, WEBHOOK_SECRET, Harness, results_replies
from tests.proc import ROOT, BotProcess, db_rows, settings_env

BASE_ENV = {
    "TELEGRAM_BOT_TOKEN": "123:abc",
    "RESELL_SCAN_API_KEY": "rs_test_full",
    "ALLOWED_USER_IDS": "1,2",
}


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """`resell-scan-bot ARGS` in a clean environment (plus `env`), run from `cwd`."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_without_token_names_it_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "TELEGRAM_BOT_TOKEN"}
    result = cli("run", env=env, cwd=tmp_path)  # no .env there
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: TELEGRAM_BOT_TOKEN: is required (the bot's token from BotFather)"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ALLOWED_CHAT_IDS", "12,abc", "ALLOWED_CHAT_IDS"),
        ("TELEGRAM_BOT_TOKEN", "not-a-token", "TELEGRAM_BOT_TOKEN: expected a BotFather token"),
        ("HTTP_PORT", "eighty", "HTTP_PORT"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
        ("RESELL_SCAN_BASE_URL", "ftp://x", "RESELL_SCAN_BASE_URL: expected a URL"),
        ("ALLOWED_USER_IDS", "", "ALLOW_ALL_USERS=true knowingly"),
    ],
)
def test_bad_settings_give_one_plain_line_each(
    tmp_path: Path, name: str, value: str, expected: str
) -> None:
    result = cli("run", env={**BASE_ENV, name: value}, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_every_setting_and_command() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for command in ("run", "check", "sandbox", "demo"):
        assert command in top.stdout
        assert cli(command, "--help").returncode == 0
    run_help = cli("run", "--help").stdout
    for name in Settings.model_fields:
        assert name.upper() in run_help, name
    assert cli("--version").stdout.startswith("resell-scan-bot ")


def test_check_against_the_sandbox(harness: Harness, settings_for: Callable[..., Any]) -> None:
    env = settings_env(settings_for())
    good = cli("check", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "bot @ResellScanSandboxBot" in good.stdout and "all checks passed" in good.stdout
    limited = cli("check", env={**env, "RESELL_SCAN_API_KEY": "rs_test_collections_only"})
    assert limited.returncode == 1
    assert "lacks the 'products' permission" in limited.stdout
    disabled = cli("check", env={**env, "RESELL_SCAN_API_KEY": "rs_test_disabled"})
    assert disabled.returncode == 1 and "AuthError" in disabled.stdout


def test_check_fails_a_loopback_public_url_unless_resell_scan_is_local_too() -> None:
    """Before: `check` marked http://127.0.0.1 as ok for the real Resell Scan, which can
    never fetch photos there."""
    from bot.cli import _public_url_line
    from bot.config import Settings

    def line(public: str, api: str = "https://app.resell-scan.de/api/v1") -> tuple[bool, str]:
        settings = Settings(
            telegram_bot_token="1:x",
            resell_scan_api_key="rs_x",
            public_base_url=public,
            resell_scan_base_url=api,
            allowed_user_ids=[1],
        )
        return _public_url_line(settings)

    ok, text = line("http://127.0.0.1:8080")
    assert not ok and "loopback address, which Resell Scan cannot reach" in text
    assert not line("https://localhost")[0] and not line("http://[::1]:80")[0]
    assert line("http://127.0.0.1:8080", api="http://127.0.0.1:9000/api/v1")[0]
    assert line("https://bot.example.org") == (True, "PUBLIC_BASE_URL https://bot.example.org: ok")
    assert not line("http://bot.example.org")[0]


def test_demo_prints_a_transcript_ending_with_results() -> None:
    result = cli("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any("Lena: sends an album of 3 photos" in line for line in lines)
    assert any("bot : ⏳ Analysing" in line for line in lines)
    assert any(
        "Resell Scan: POST /webhooks/resell-scan analysis.completed" in line for line in lines
    )
    results_at = next(i for i, line in enumerate(lines) if "bot : 📊 Results" in line)
    assert any("Estimated price" in line for line in lines[results_at:])


async def test_sigterm_stops_cleanly_and_the_next_start_resumes(
    harness: Harness, settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    import time

    await harness.rs("/sandbox/config", {"analysis_seconds": 1.5})
    settings = settings_for()
    with BotProcess(settings, tmp_path / "bot.log") as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        started = time.monotonic()
        assert bot.terminate() == 0
        assert time.monotonic() - started < 5, "SIGTERM stops within a few seconds"
    rows = db_rows(settings.database_path, "SELECT state FROM submissions")
    assert [r["state"] for r in rows] == ["submitted"]
    with BotProcess(settings, tmp_path / "bot.log"):
        await harness.wait_text(ANNA["id"], "Results", within=20)
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1
    assert "stopped" in (tmp_path / "bot.log").read_text()


async def test_no_secret_in_logs_at_debug(
    harness: Harness, settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    settings = settings_for(
        log_level="DEBUG",
        resell_scan_webhook_secrets=WEBHOOK_SECRET,
        telegram_webhook_secret="tg-secret-value-777",
    )
    with BotProcess(settings, tmp_path / "bot.log"):
        await harness.rs(
            "/sandbox/webhooks",
            {
                "url": f"http://127.0.0.1:{settings.http_port}/webhooks/resell-scan",
                "secret": WEBHOOK_SECRET,
            },
        )
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=20)
        await harness.photo(ANNA, caption="/scan Nowhere")
        await harness.wait_text(ANNA["id"], "No collection matches")
    log = (tmp_path / "bot.log").read_text()
    assert "DEBUG" in log and "submitted" in log, "the log really ran at DEBUG"
    for secret in (
        TOKEN,
        TOKEN.split(":")[1],
        "rs_test_full",
        WEBHOOK_SECRET,
        "tg-secret-value-777",
    ):
        assert secret not in log, f"secret leaked into the log: {secret[:6]}…"


def test_json_log_format(tmp_path: Path) -> None:
    import io
    import json as json_module
    import logging

    from bot.logs import setup_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", "json", ["sekrit-value"], stream=stream)
        logging.getLogger("x").info(
            "token is %s", "sekrit-value", extra={"chat_id": 5, "batch_id": "b"}
        )
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    record = json_module.loads(stream.getvalue())
    assert (
        record["message"] == "token is ***" and record["chat_id"] == 5 and record["batch_id"] == "b"
    )


def test_dockerfile_refers_to_files_and_commands_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # Instructions as Docker reads them: comments dropped, continuation lines joined.
    raw = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(raw).replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("COPY"):
            sources = line.split()[1:-1]
            for source in sources:
                if not source.startswith("--"):
                    assert (ROOT / source).exists(), source
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert any(line.startswith("VOLUME") and "/data" in line for line in lines)
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in lines)
    assert any(line.startswith("EXPOSE 8080") for line in lines)
    assert any(
        '"resell-scan-bot"' in line and line.startswith(("CMD", "ENTRYPOINT")) for line in lines
    )
    from bot.cli import build_parser

    assert "run" in build_parser().format_help()
    healthcheck = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert "python" in healthcheck, "the healthcheck uses what the slim image has"


def test_readme_and_env_example_document_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in readme, f"{name.upper()} missing from README"
        assert f"{name.upper()}=" in example, f"{name.upper()} missing from .env.example"
    assert "pip install -e '.[test]' && pytest" in readme
    assert "resell-scan-bot demo" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]' && pytest" in ci
