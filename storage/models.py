"""Plain records: what the repositories return, and what callers hand them."""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any


class State(enum.StrEnum):
    RECEIVED = "received"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    NOTIFIED = "notified"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"
    UNCERTAIN = "uncertain"
    RECONCILING = "reconciling"  # the answer to createAndAnalyze was lost: finding out


OPEN_STATES = frozenset(
    {State.RECEIVED, State.SUBMITTING, State.SUBMITTED, State.COMPLETED, State.RECONCILING}
)
# States whose arrival owes the chat a message (an outbox row, written by the transition).
MESSAGE_STATES = frozenset(
    {State.COMPLETED, State.REJECTED, State.FAILED, State.EXPIRED, State.UNCERTAIN}
)


@dataclass(frozen=True)
class Problem:
    """Why a submission was rejected or failed, as a text key and its parameters (rendered
    in the chat's language when the message is sent)."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({"code": self.code, "params": self.params})

    @classmethod
    def loads(cls, text: str | None) -> Problem | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(code=str(data["code"]), params=dict(data.get("params") or {}))


@dataclass(frozen=True)
class ChatSettings:
    chat_id: int
    default_collection_id: str | None = None
    default_collection_name: str | None = None
    remove_background: bool = False
    language: str | None = None
    admin_only: bool = False
    reachable: bool = True
    analysing_message: bool | None = None  # None: the default for the chat type
    reactions: bool | None = None  # None: not tried yet; False: Telegram refused them here
    reactions_refused_at: float | None = None  # when Telegram last refused one here
    duplicate_guard: bool = True
    digest_time: str | None = None  # "HH:MM" local time of the daily digest; None: off
    timezone: str | None = None  # IANA name; None: the bot's default
    digest_last_day: str | None = None  # the local date of the last digest sent
    digest_until: float | None = None  # where the last digest's window ended (unix seconds)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ChatSettings:
        return cls(
            chat_id=row["chat_id"],
            default_collection_id=row["default_collection_id"],
            default_collection_name=row["default_collection_name"],
            remove_background=bool(row["remove_background"]),
            language=row["language"],
            admin_only=bool(row["admin_only"]),
            reachable=bool(row["reachable"]),
            analysing_message=_flag(row["analysing_message"]),
            reactions=_flag(row["reactions"]),
            reactions_refused_at=row["reactions_refused_at"],
            duplicate_guard=bool(row["duplicate_guard"]),
            digest_time=row["digest_time"],
            timezone=row["timezone"],
            digest_last_day=row["digest_last_day"],
            digest_until=row["digest_until"],
        )

    def reactions_refused(self, now: float) -> bool:
        """Telegram refused reactions here lately: none is owed until REACTIONS_RETRY_SECONDS
        after the last refusal, then one is tried again (an admin may have allowed them)."""
        if self.reactions is not False:
            return False
        return now - (self.reactions_refused_at or 0.0) < REACTIONS_RETRY_SECONDS


REACTIONS_RETRY_SECONDS = 6 * 3600.0


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class Photo:
    id: int
    submission_id: int
    chat_id: int
    message_id: int
    product_key: str
    file_id: str
    file_unique_id: str
    file_size: int | None
    mime_type: str | None
    file_name: str | None
    media_key: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Photo:
        return cls(**dict(zip(row.keys(), row, strict=True)))


@dataclass(frozen=True)
class Submission:
    id: int
    chat_id: int
    thread_id: int | None
    message_id: int
    user_id: int
    user_name: str
    media_group_id: str | None
    collection_ref: str | None
    collection_id: str | None
    collection_name: str | None
    manual_fields: dict[str, Any]
    caption_seen: bool
    remove_background: bool
    language: str
    idempotency_key: str
    state: State
    batch_id: str | None
    attempts: int
    next_action_at: float | None
    gather_deadline: float | None
    problem: Problem | None
    last_error: str | None
    created_at: float
    updated_at: float
    submitted_at: float | None
    raw_status: str | None
    total_products: int | None
    successful_products: int | None
    failed_products: int | None
    progress: float | None
    results: dict[str, Any] | None
    progress_message_id: int | None
    progress_shown: float | None
    progress_edited_at: float | None
    poll_count: int
    completed_at: float | None
    completed_by: str | None
    notify_claimed_at: float | None
    notified_at: float | None
    notify_attempts: int
    parts_sent: int
    collecting: bool = False
    unreadable_count: int = 0  # consecutive status answers that could not be read
    requested_at: float | None = None  # when createAndAnalyze was last sent
    reconcile_checks: int = 0  # lookups of our file names after an ambiguous answer
    reconcile_until: float | None = None  # wait for a webhook this long, then analyse
    product_ids: list[str] = field(default_factory=list)  # found by reconciling
    rate_limited_since: float | None = None  # refused with 429 since then, still waiting
    batch_closed_at: float | None = None  # a /batch stopped collecting (on /done or deadline)
    reaction: str | None = None  # the emoji the bot last set on the first photo
    results_message_id: int | None = None  # the results reply's last part (with buttons)
    prompt_message_id: int | None = None  # a rejection or question a reply can answer
    retried_at: float | None = None  # "Retry failed" was used
    retry_of: int | None = None  # this analyses the failed products of that submission
    duplicate_of: int | None = None  # the duplicate guard found these photos analysed there
    guard_passed: bool = False  # "Analyse again" was pressed
    decision: int = 0  # the user's decisions to send it ("Send again" adds one): paid-call cap
    photo_failures: int = 0  # fetches of its photos from Telegram that failed, in a row

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Submission:
        data = dict(zip(row.keys(), row, strict=True))
        data["manual_fields"] = json.loads(data["manual_fields"] or "{}")
        data["results"] = json.loads(data["results"]) if data["results"] else None
        data["problem"] = Problem.loads(data["problem"])
        data["state"] = State(data["state"])
        data["caption_seen"] = bool(data["caption_seen"])
        data["remove_background"] = bool(data["remove_background"])
        data["collecting"] = bool(data.get("collecting", 0))
        data["product_ids"] = json.loads(data.get("product_ids") or "[]")
        data["guard_passed"] = bool(data.get("guard_passed", 0))
        return cls(**data)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class Counts:
    """A batch's summary as the caller read it from Resell Scan (storage reads no payloads:
    it keeps them as they came, and these counts beside them)."""

    status: str | None = None
    total: int | None = None
    successful: int | None = None
    failed: int | None = None

    def dumps(self) -> str:
        return json.dumps(
            {
                "status": self.status,
                "total": self.total,
                "ok": self.successful,
                "failed": self.failed,
            }
        )

    @classmethod
    def loads(cls, text: str | None) -> Counts:
        data = json.loads(text) if text else {}
        return cls(data.get("status"), data.get("total"), data.get("ok"), data.get("failed"))


@dataclass(frozen=True)
class PendingScan:
    collection_ref: str
    manual_fields: dict[str, Any]
    expires_at: float


@dataclass(frozen=True)
class NewPhoto:
    """A photo as intake hands it to storage."""

    chat_id: int
    message_id: int
    user_id: int
    user_name: str
    file_id: str
    file_unique_id: str
    thread_id: int | None = None
    media_group_id: str | None = None
    file_size: int | None = None
    mime_type: str | None = None
    file_name: str | None = None


@dataclass(frozen=True)
class CaptionInfo:
    """What a caption asked for (already parsed): a collection reference and field values."""

    collection_ref: str | None
    manual_fields: dict[str, Any]
