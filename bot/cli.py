"""`resell-scan-bot run | check | sandbox | demo`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot import __version__
from bot.config import Settings, describe_errors
from bot.logs import Redactor, log_uncaught, setup_logging

EXIT_SETTINGS = 2


def settings_table() -> str:
    """Every setting with its default and meaning, generated from Settings (so --help and the
    code cannot disagree)."""
    lines = ["settings (environment variables or .env):"]
    for name, field in Settings.model_fields.items():
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = getattr(value, "value", value)
            if isinstance(default, list):
                default = ",".join(str(v) for v in default) or "empty"
            default = "empty" if default in ("", None) else default
            if "SecretStr" in type(value).__name__:
                default = "empty"
        lines.append(f"  {name.upper():32} {field.description} (default: {default})")
    return "\n".join(lines)


def load_settings() -> Settings:
    """Settings from the environment and .env; on error one line per problem, exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for line in describe_errors(exc):
            print(f"error: {line}", file=sys.stderr)
        print("see .env.example or `resell-scan-bot run --help`", file=sys.stderr)
        raise SystemExit(EXIT_SETTINGS) from None


def token_rejected(settings: Settings, exc: InvalidToken) -> str:
    """What to say when the Bot API server refuses the token (401, or 404 for a malformed one):
    the variable to fix and the server's own words. Never `str(exc)`: PTB puts the whole token
    into that message."""
    cause = exc.__cause__
    said = cause.message if isinstance(cause, TelegramError) else "rejected"
    default = Settings.model_fields["telegram_api_base_url"].default
    if settings.telegram_api_base_url == default:
        return f"rejected by Telegram ({said}); copy the token again from @BotFather"
    return (
        f"rejected by the Bot API server at {settings.telegram_api_base_url} ({said}); "
        "copy the token again from @BotFather, or check TELEGRAM_API_BASE_URL"
    )


# run ------------------------------------------------------------------------------------------


async def _run(settings: Settings) -> None:
    from bot.app import BotRuntime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtime = BotRuntime(settings)
    try:
        await runtime.start()
        await stop.wait()
    finally:
        await runtime.stop()


def cmd_run(args: argparse.Namespace) -> int:
    import warnings

    from telegram.warnings import PTBDeprecationWarning

    # PTB 22 warns from inside its own RetryAfter constructor; we read the value in both forms.
    warnings.filterwarnings("ignore", ".*retry_after.*", PTBDeprecationWarning)
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format.value, settings.secret_values())
    log_uncaught()
    try:
        asyncio.run(_run(settings))
    except InvalidToken as exc:
        # A setting Telegram refuses: one line naming it, like a setting that does not validate.
        redact = Redactor(settings.secret_values())
        print(
            f"error: TELEGRAM_BOT_TOKEN: {redact(token_rejected(settings, exc))}", file=sys.stderr
        )
        return EXIT_SETTINGS
    return 0


# check ----------------------------------------------------------------------------------------


def check_client(settings: Settings, http: httpx.AsyncClient) -> Any:
    """The Resell Scan client of `check`: few retries, so a problem shows quickly."""
    from bot.resellscan import ResellScanClient, RetryPolicy

    return ResellScanClient(
        http,
        api_key=settings.resell_scan_api_key,
        base_url=settings.resell_scan_base_url,
        retry=RetryPolicy(max_attempts=2, total_timeout=20),
    )


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _public_url_line(settings: Settings) -> tuple[bool, str]:
    """Resell Scan fetches photos (and sends webhooks) at PUBLIC_BASE_URL: it must reach it.
    A loopback address is reachable only from a Resell Scan on the same machine (the
    sandbox); https:// is required otherwise."""
    url = settings.public_base_url or ""
    head = f"PUBLIC_BASE_URL {url}: "
    if _loopback(url):
        if _loopback(settings.resell_scan_base_url):
            return True, head + "local only (Resell Scan runs on this machine too)"
        return False, head + (
            "a loopback address, which Resell Scan cannot reach: set the bot's public https://"
            " address, or IMAGE_DELIVERY=base64"
        )
    if url.startswith("https://"):
        return True, head + "ok"
    return False, head + "must be https:// for Resell Scan to reach it"


def _ledger_lines(settings: Settings) -> list[tuple[bool, str]]:
    """The paid calls of the last 24 hours, and what the bot has seen of the API's listings
    (storage/ledger.py), read without changing the database."""
    from storage.ledger import read_summary

    try:
        summary = read_summary(settings.database_path, time.time() - 86400)
    except sqlite3.Error as exc:
        return [(False, f"database {settings.database_path}: {exc}")]
    if summary is None:
        return []
    paid = sum(n for (_, outcome), n in summary.paid.items() if outcome != "refused")
    parts = ", ".join(
        f"{endpoint} {outcome} {n}" for (endpoint, outcome), n in sorted(summary.paid.items())
    )
    lines = [(True, f"paid calls in the last 24 h: {paid}" + (f" ({parts})" if parts else ""))]
    listings = summary.facts.get("listing_file_names")
    if listings == "yes":
        lines.append(
            (
                True,
                "Resell Scan listings show the bot's file names: a lost upload can "
                "be proven absent",
            )
        )
    elif listings == "no":
        lines.append(
            (
                True,
                "Resell Scan listings show no file names: after a lost upload the "
                "user is asked, never charged twice",
            )
        )
    else:
        lines.append(
            (
                True,
                "not seen yet whether Resell Scan listings show file names (the "
                "first upload shows it)",
            )
        )
    honoured = summary.facts.get("idempotency_key_honoured")
    if honoured is not None:
        seen = "honoured" if honoured == "yes" else "ignored"
        lines.append((True, f"Resell Scan was seen to have {seen} Idempotency-Key on a resend"))
    return lines


def _allowlist_lines(settings: Settings) -> list[tuple[bool, str]]:
    """ALLOWED_CHAT_IDS entries that name a group Telegram upgraded to a supergroup (the
    database knows where it went), read without changing the database."""
    from bot.outbox import stale_allowlist_entry
    from storage.chats import read_successors

    allowed = settings.allowed_chat_ids
    try:
        moved = read_successors(settings.database_path, allowed)
    except sqlite3.Error as exc:
        return [(False, f"database {settings.database_path}: {exc}")]
    return [
        (False, stale_allowlist_entry(old, new, new_listed=new in allowed))
        for old, new in moved.items()
    ]


async def _check(settings: Settings) -> list[tuple[bool, str]]:
    from bot.resellscan import PermissionDenied, ResellScanError

    report: list[tuple[bool, str]] = [(True, "settings are valid")]
    bot = Bot(
        settings.telegram_bot_token.get_secret_value(),
        base_url=settings.bot_api_url,
        base_file_url=settings.bot_file_url,
    )
    try:
        async with bot:
            me = await bot.get_me()
            report.append((True, f"Telegram: bot @{me.username} (id {me.id})"))
            if me.can_read_all_group_messages:
                report.append((True, "Telegram: privacy mode off, the bot sees all group messages"))
            else:
                report.append(
                    (
                        True,
                        "Telegram: privacy mode on; in groups make the bot an admin "
                        "so it sees album photos without a caption",
                    )
                )
    except InvalidToken as exc:
        report.append((False, f"Telegram: TELEGRAM_BOT_TOKEN {token_rejected(settings, exc)}"))
    except TelegramError as exc:
        report.append((False, f"Telegram: getMe failed: {exc}"))
    async with httpx.AsyncClient(timeout=settings.resell_scan_timeout) as http:
        client = check_client(settings, http)
        try:
            page = await client.list_collections(limit=1)
            report.append(
                (True, f"Resell Scan: collections readable ({page.total or len(page.items)} found)")
            )
            if page.items:
                try:
                    await client.list_products(page.items[0].id, limit=1)
                    report.append((True, "Resell Scan: products readable"))
                except PermissionDenied:
                    report.append(
                        (
                            False,
                            "Resell Scan: the API key lacks the 'products' permission "
                            "(needed to upload and analyse photos)",
                        )
                    )
        except PermissionDenied as exc:
            report.append(
                (False, f"Resell Scan: the API key lacks the '{exc.resource}' permission")
            )
        except ResellScanError as exc:
            report.append((False, f"Resell Scan: {type(exc).__name__}: {exc}"))
    report.extend(_ledger_lines(settings))
    report.extend(_allowlist_lines(settings))
    if settings.public_base_url:
        report.append(_public_url_line(settings))
    else:
        report.append((True, "PUBLIC_BASE_URL empty: photos are sent as base64"))
    if settings.resell_scan_webhook_secrets:
        odd = [
            s
            for s in settings.resell_scan_webhook_secrets
            if not s.get_secret_value().startswith("whsec_")
        ]
        report.append(
            (
                not odd,
                f"{len(settings.resell_scan_webhook_secrets)} webhook secret(s)"
                + (": every secret should start with whsec_" if odd else ""),
            )
        )
        if not settings.public_base_url:
            report.append(
                (
                    False,
                    "webhook secrets are set but PUBLIC_BASE_URL is empty: "
                    "Resell Scan cannot reach the relay",
                )
            )
    else:
        report.append((True, "no webhook secrets: completion by polling only"))
    return report


async def _probe(settings: Settings, args: argparse.Namespace) -> bool:
    from bot.probe import probe

    async with httpx.AsyncClient(timeout=settings.resell_scan_timeout) as http:
        client = check_client(settings, http)
        return await probe(
            client,
            sys.stdout,
            photo=args.analyze,
            collection_ref=args.collection,
            base64_field=settings.image_base64_field.value,
            poll_timeout=args.timeout,
        )


def cmd_check(args: argparse.Namespace) -> int:
    if args.analyze is not None and (not args.probe or not args.collection):
        print("error: --analyze needs --probe and --collection NAME", file=sys.stderr)
        return EXIT_SETTINGS
    if args.analyze is not None and not args.analyze.is_file():
        print(f"error: --analyze {args.analyze}: no such file", file=sys.stderr)
        return EXIT_SETTINGS
    settings = load_settings()
    setup_logging("WARNING", settings.log_format.value, settings.secret_values())
    log_uncaught()
    # An answer may quote what it was sent (a proxy's error page with the request's URL).
    redact = Redactor(settings.secret_values())
    report = asyncio.run(_check(settings))
    for ok, line in report:
        print(f"{'ok  ' if ok else 'FAIL'} {redact(line)}")
    failed = sum(1 for ok, _ in report if not ok)
    if args.probe:
        print("\nprobe: what the bot understood of each answer (keys and types only)")
        if not asyncio.run(_probe(settings, args)):
            failed += 1
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 0 if not failed else 1


# sandbox --------------------------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.server import serve

    base = f"http://{args.host}:{args.port}"
    print(
        f"""Resell Scan sandbox and Telegram Bot API emulator on {base}

Resell Scan API:  {base}/api/v1
API keys:         rs_test_full (every permission), rs_test_collections_only, rs_test_disabled
Telegram API:     {base}/bot<token>/<method>   (any token shaped like 123456:abc)
Control API:      {base}/sandbox/...           (see README, "Sandbox")

Paste into .env to run the bot against it:
  TELEGRAM_BOT_TOKEN=123456:sandbox-token
  TELEGRAM_API_BASE_URL={base}
  RESELL_SCAN_API_KEY=rs_test_full
  RESELL_SCAN_BASE_URL={base}/api/v1
  ALLOW_ALL_USERS=true

Ctrl-C stops it.""",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))
    return 0


# demo -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return asyncio.run(run_demo(verbose=args.verbose))


# main -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resell-scan-bot",
        description="Telegram bot that sends product photos to Resell Scan and replies with the "
        "analysis.",
        epilog="Start with `resell-scan-bot demo`: the whole flow offline, no accounts needed.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the bot (long polling, or Telegram webhook when configured)",
        description="Run the bot and its HTTP side (webhook relay, image URLs, /healthz, "
        "/metrics). SIGTERM or Ctrl-C stops it cleanly; the next start resumes.",
        epilog=settings_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.set_defaults(func=cmd_run)
    check = sub.add_parser(
        "check",
        help="check settings, Telegram and Resell Scan access",
        description="Validate the settings, call Telegram getMe and Resell Scan GET /collections, "
        "report missing permissions and webhook/public URL problems. Exits 1 if "
        "anything needed is wrong.",
        epilog=settings_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--probe",
        action="store_true",
        help="also read one page of collections, one collection, its manual fields and products, "
        "and print per field whether the bot understood it (keys and types, never values)",
    )
    check.add_argument(
        "--analyze",
        metavar="PHOTO",
        type=Path,
        help="with --probe: run one real createAndAnalyze with this photo (costs one analysis), "
        "poll it, and probe the status and results answers too",
    )
    check.add_argument("--collection", metavar="NAME", help="with --analyze: the collection")
    check.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="with --analyze: longest wait for the analysis, seconds (default 300)",
    )
    check.set_defaults(func=cmd_check)
    sandbox = sub.add_parser(
        "sandbox",
        help="run the local Resell Scan + Telegram stand-ins",
        description="Serve a Resell Scan-compatible API at /api/v1 and a Telegram Bot API "
        "emulator on one port, with control endpoints under /sandbox/.",
    )
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sandbox.add_argument("--port", type=int, default=8765, help="port to listen on")
    sandbox.set_defaults(func=cmd_sandbox)
    demo = sub.add_parser(
        "demo",
        help="show the whole flow offline and print the chat transcript",
        description="Start the sandbox, run the real bot against it, play a short chat (album "
        "with caption, /status, webhook completion, results) and print it.",
    )
    demo.add_argument("--verbose", action="store_true", help="also show the bot's log")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        raise SystemExit(EXIT_SETTINGS)
    code: Any = args.func(args)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
