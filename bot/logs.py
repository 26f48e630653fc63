"""Logging: one line per event, plain text or JSON, with chat/submission/batch ids when given
(`extra=`), and every configured secret replaced by `***` wherever it would appear, in
exceptions nobody caught too (`log_uncaught`)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import quote

CONTEXT_KEYS = ("chat_id", "submission_id", "batch_id")
MASK = "***"
# A bot token is `<bot id>:<secret>`; the id is public (it is the bot's user id), the part
# after the colon is the secret and can show up on its own, e.g. with the colon URL-encoded.
# Shorter parts are no real token (BotFather's are 35 characters) and would mask common words.
MIN_TOKEN_SECRET = 8


class Redactor:
    """Replaces every secret, and the forms it takes in URLs and tokens, by `***`."""

    def __init__(self, secrets: Sequence[str]) -> None:
        forms: set[str] = set()
        for secret in filter(None, secrets):
            forms.update({secret, quote(secret, safe="")})
            head, sep, tail = secret.partition(":")
            if sep and head.isdigit() and len(tail) >= MIN_TOKEN_SECRET:
                forms.update({tail, quote(tail, safe="")})
        # Longest first, so a secret that contains another is masked whole.
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


class RedactingFilter(logging.Filter):
    """Replaces secret values in the final message (and exception text) of every record."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{key}={getattr(record, key)}"
            for key in CONTEXT_KEYS
            if getattr(record, key, None) is not None
        )
        return f"{line} [{context}]" if context else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str, fmt: str, secrets: Sequence[str], stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request URL at INFO; Telegram URLs contain the bot token. Redaction
    # covers it anyway, but these lines are noise at INFO.
    for noisy in ("httpx", "httpcore", "telegram.ext.Updater", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def log_uncaught() -> None:
    """Exceptions nobody caught (at start, in a thread, in a `__del__`) and warnings go through
    logging, so they are redacted and formatted like every other line; Python would print them
    straight to stderr, with a rejected bot token in the message. For the command line after
    `setup_logging`, never in tests (pytest has hooks of its own there)."""
    log = logging.getLogger("bot")

    def on_exception(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        log.critical(
            "stopped by an unexpected error: %s: %s",
            kind.__name__,
            value,
            exc_info=(kind, value, tb),
        )

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error(
            "unexpected error in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    def on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
        value = unraisable.exc_value
        log.error(
            "%s: %s",
            unraisable.err_msg or "Exception ignored in",
            _safe_repr(unraisable.object),
            exc_info=(unraisable.exc_type, value, unraisable.exc_traceback)
            if value is not None
            else None,
        )

    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception
    sys.unraisablehook = on_unraisable
    logging.captureWarnings(True)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        return f"<{type(value).__name__} object>"
