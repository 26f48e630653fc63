"""The one place settings are read: environment variables and an optional `.env` file.

Every other module receives a `Settings` instance; nothing else reads `os.environ`.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def valid_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this machine knows (tzdata)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def zone_named(name: str) -> str | None:
    """The IANA zone a user means, in its own spelling: `europe/vienna` is Europe/Vienna
    (zone names are case-sensitive on disk, people do not type them so)."""
    name = name.strip()
    if valid_zone(name):
        return name
    import zoneinfo

    by_lower = {zone.lower(): zone for zone in zoneinfo.available_timezones()}
    return by_lower.get(name.lower())


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class GroupMode(enum.StrEnum):
    """How groups see analyses in progress and their results (README, "Team groups")."""

    BOARD = "board"  # one live board per group (topic); results combined when the limit bites
    PER_ALBUM = "per_album"  # an "analysing" message per album and a reply per result


class ImageDelivery(enum.StrEnum):
    """How photos reach Resell Scan (a URL or base64, resell-scan-api.md §2.6)."""

    AUTO = "auto"  # signed URLs when PUBLIC_BASE_URL is set, else base64
    URL = "url"
    BASE64 = "base64"


class Base64Field(enum.StrEnum):
    """Where base64 image data goes; the API docs do not say (resell-scan-api.md §9 #7)."""

    DATA_URI = "data_uri"  # {"url": "data:image/jpeg;base64,..."}
    BASE64_KEY = "base64"  # {"base64": "...", "mimeType": "image/jpeg"}


def _split_ids(value: Any) -> Any:
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        return [p for p in parts if p]
    return value


def _split_strings(value: Any) -> Any:
    return _split_ids(value)


IdList = Annotated[list[int], NoDecode]
SecretList = Annotated[list[SecretStr], NoDecode]


class Settings(BaseSettings):
    """All settings, named as in the README table and `.env.example`."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Telegram
    telegram_bot_token: SecretStr = Field(description="the bot's token from BotFather")
    telegram_api_base_url: str = Field(
        "https://api.telegram.org", description="Bot API server (a local one, or the sandbox)"
    )
    telegram_webhook_url: str = Field("", description="receive updates by webhook at this URL")
    telegram_webhook_secret: SecretStr = Field(
        SecretStr(""), description="secret token Telegram sends with webhook updates"
    )
    telegram_poll_timeout: int = Field(
        30, ge=0, le=50, description="long-polling timeout for getUpdates, seconds"
    )
    telegram_messages_per_second: int = Field(
        30, ge=1, description="Telegram's limit for the bot overall, messages a second"
    )
    telegram_chat_messages_per_second: float = Field(
        1.0, gt=0, description="Telegram's limit in one chat, messages a second (short bursts of 3)"
    )
    telegram_group_messages_per_minute: int = Field(
        20, ge=1, description="Telegram's limit in one group, messages a minute (edits count)"
    )
    telegram_group_window_seconds: float = Field(
        60.0, gt=0, description="the minute of the group limit, seconds (tests shorten it)"
    )
    group_mode: GroupMode = Field(
        GroupMode.BOARD,
        description="board (a live board per group, results combined) or per_album"
        " (a message per album, as before 0.3; the team benchmark's baseline)",
    )
    board_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="a group's live board is edited once per this many seconds on average (a"
        " change of state may spend three edits at once)",
    )
    inbox_retention_seconds: float = Field(
        2 * 86400.0,
        gt=0,
        description="keep handled Telegram updates this long to recognise redeliveries, seconds",
    )

    # Resell Scan
    resell_scan_api_key: SecretStr = Field(description="Resell Scan API key (bearer)")
    resell_scan_base_url: str = Field(
        "https://app.resell-scan.de/api/v1", description="Resell Scan API base URL"
    )
    resell_scan_webhook_secrets: SecretList = Field(
        default_factory=list, description="comma-separated whsec_ secrets accepted on the relay"
    )
    resell_scan_timeout: float = Field(30.0, gt=0, description="timeout of one API call, seconds")
    resell_scan_max_attempts: int = Field(4, ge=1, le=10, description="attempts per API call")
    resell_scan_retry_total: float = Field(
        60.0, gt=0, description="longest total time for one API call with its retries, seconds"
    )

    webhook_unknown_retention_seconds: float = Field(
        7 * 86400.0,
        gt=0,
        description="keep webhook events for batches the bot does not know this long, seconds",
    )

    # HTTP side
    public_base_url: str = Field(
        "", description="where Resell Scan reaches this bot (image URLs); empty: base64 images"
    )
    http_host: str = Field("127.0.0.1", description="address the bot's HTTP side listens on")
    http_port: int = Field(8080, ge=0, le=65535, description="port of the bot's HTTP side")
    webhook_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest accepted webhook body"
    )

    # Storage and access
    database_path: Path = Field(Path("./data/resell-scan-bot.sqlite3"), description="SQLite file")
    allowed_user_ids: IdList = Field(default_factory=list, description="user allowlist")
    allowed_chat_ids: IdList = Field(default_factory=list, description="chat allowlist")
    allow_all_users: bool = Field(False, description="run with no allowlist, knowingly")

    # Logs
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    log_format: LogFormat = Field(LogFormat.TEXT, description="text or json")

    # Tuning
    album_window_seconds: float = Field(
        1.5, gt=0, description="quiet time after the last album member before submitting"
    )
    album_max_wait_seconds: float = Field(
        10.0, gt=0, description="longest wait for an album to complete"
    )
    poll_initial_seconds: float = Field(3.0, gt=0, description="first poll after submitting")
    poll_max_seconds: float = Field(60.0, gt=0, description="longest gap between polls")
    poll_backoff_factor: float = Field(1.6, ge=1.0, description="growth of the poll gap")
    poll_deadline_seconds: float = Field(
        3600.0, gt=0, description="give up (expired) this long after submitting"
    )
    poll_budget_per_second: float = Field(
        5.0, gt=0, description="status requests per second shared by all batches"
    )
    webhook_poll_factor: float = Field(
        4.0, ge=1.0, description="poll gaps are this much longer when webhooks are configured"
    )
    reconcile_settle_seconds: float = Field(
        20.0,
        ge=0,
        description="after an unclear createAndAnalyze answer, wait this long before looking "
        "the photos up among the collection's products",
    )
    reconcile_margin_seconds: float = Field(
        300.0, ge=0, description="look for products created this long before the request"
    )
    reconcile_webhook_wait_seconds: float = Field(
        300.0,
        ge=0,
        description="webhooks configured, after a lost upload answer: wait this long for the "
        "analysis' webhook before analysing the found products again, or (not found, no "
        "proof) before asking the user",
    )
    reconcile_analyze: bool = Field(
        True,
        description="analyse found products with POST /products/analyze (may analyse them "
        "twice); false: ask the user instead",
    )
    rate_limit_deadline_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="an upload Resell Scan keeps refusing before processing it (429, 503, "
        "connection refused) waits this long, then the user gets a Send again button",
    )
    image_delivery: ImageDelivery = Field(ImageDelivery.AUTO, description="auto, url or base64")
    image_base64_field: Base64Field = Field(
        Base64Field.DATA_URI, description="data_uri or base64: how base64 images are sent"
    )
    media_url_ttl_seconds: float = Field(3600.0, gt=0, description="life of a signed image URL")
    csv_threshold: int = Field(10, ge=1, description="batches with more products also get a CSV")
    progress_edit_interval_seconds: float = Field(
        5.0, ge=0, description="least time between edits of the analysing message"
    )
    pending_scan_seconds: float = Field(
        300.0, gt=0, description="how long '/scan X' sent as text applies to the next photos"
    )
    max_photos_per_product: int = Field(10, ge=1, le=50, description="photos in one product")
    max_products_per_batch: int = Field(
        50, ge=1, le=500, description="products in one /batch (the API's limit is unknown)"
    )
    max_price: float = Field(
        1_000_000.0,
        gt=0,
        description="the highest price a caption may give (purchasePrice and other price fields,"
        " in euros); below zero is always refused",
    )
    worker_concurrency: int = Field(8, ge=1, le=64, description="submissions handled at once")
    default_language: str = Field("en", description="en or de, when the user's is unknown")
    default_timezone: str = Field(
        "Europe/Berlin",
        description="IANA time zone of a chat's days (/report, digest) until /settings sets one",
    )
    digest_check_seconds: float = Field(
        30.0, gt=0, description="how often due daily digests are looked for, seconds"
    )

    @field_validator("allowed_user_ids", "allowed_chat_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _split_ids(value)

    @field_validator("resell_scan_webhook_secrets", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        return _split_strings(value)

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        head, sep, tail = token.partition(":")
        if not (sep and head.isdigit() and tail):
            raise ValueError("expected a BotFather token like 123456:ABC-DEF...")
        return value

    @field_validator("resell_scan_api_key")
    @classmethod
    def _key_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not valid_zone(value):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)")
        return value

    @field_validator("default_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in {"en", "de"}:
            raise ValueError("expected en or de")
        return value

    @field_validator("telegram_api_base_url", "resell_scan_base_url", "public_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected a URL starting with http:// or https://")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not (self.allowed_user_ids or self.allowed_chat_ids or self.allow_all_users):
            raise ValueError(
                "ALLOWED_USER_IDS or ALLOWED_CHAT_IDS must list someone, "
                "or set ALLOW_ALL_USERS=true knowingly (every analysis costs the account owner)"
            )
        if self.image_delivery is ImageDelivery.URL and not self.public_base_url:
            raise ValueError("IMAGE_DELIVERY=url needs PUBLIC_BASE_URL")
        if self.telegram_webhook_url and not self.telegram_webhook_secret.get_secret_value():
            raise ValueError("TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET")
        if self.album_max_wait_seconds < self.album_window_seconds:
            raise ValueError("ALBUM_MAX_WAIT_SECONDS must be at least ALBUM_WINDOW_SECONDS")
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def bot_api_url(self) -> str:
        """PTB's base_url: it appends the token itself."""
        return f"{self.telegram_api_base_url}/bot"

    @property
    def bot_file_url(self) -> str:
        return f"{self.telegram_api_base_url}/file/bot"

    @property
    def uses_image_urls(self) -> bool:
        if self.image_delivery is ImageDelivery.AUTO:
            return bool(self.public_base_url)
        return self.image_delivery is ImageDelivery.URL

    @property
    def webhooks_enabled(self) -> bool:
        return bool(self.resell_scan_webhook_secrets)

    def secret_values(self) -> list[str]:
        """Every secret, for the log redaction filter."""
        values = [
            self.telegram_bot_token.get_secret_value(),
            self.resell_scan_api_key.get_secret_value(),
            self.telegram_webhook_secret.get_secret_value(),
            *(s.get_secret_value() for s in self.resell_scan_webhook_secrets),
        ]
        return [v for v in values if len(v) >= 4]


def describe_errors(error: ValidationError) -> list[str]:
    """One plain line per problem, naming the environment variable and what is expected."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ()) if not str(part).isdigit()]
        name = loc[0].upper() if loc else "settings"
        message = str(item.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if item.get("type") == "missing":
            field = Settings.model_fields.get(loc[0]) if loc else None
            what = field.description if field and field.description else "a value"
            message = f"is required ({what})"
        lines.append(f"{name}: {message}" if loc else message)
    return lines
