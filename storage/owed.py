"""What the bot owes a chat, as outbox rows (the shape, and writing them in a transaction).

Kept apart from the outbox's repository (outbox.py) so that the state machine
(transitions.py) can owe a submission's message in the transaction that moves it, without an
import cycle. See outbox.py for what the rows mean.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.db import Tx


class Kind(enum.StrEnum):
    NOTIFY = "notify"  # what a submission's state owes: results, a refusal, a failure
    QUESTION = "question"  # what a received submission waits on: collection, fields, duplicate
    ANALYSING = "analysing"  # the per-album "analysing" message (optional)
    PROGRESS = "progress"  # an edit of the analysing message: progress, or done (optional)
    REACT = "react"  # the bot's reaction on a message (optional)
    BOARD = "board"  # refresh the live board of a chat (topic) (optional)
    TEXT = "text"  # a rendered message, document or photo (command replies, notices)
    EDIT = "edit"  # replace the text and/or keyboard of a message the bot sent


class Priority(enum.IntEnum):
    RESULT = 0
    REPLY = 1
    OPTIONAL = 2


@dataclass(frozen=True)
class Owed:
    """One row to write. `key` coalesces: with `replace` a newer row takes the waiting one's
    place (the newest progress text, the latest reaction); without, the first one stays."""

    chat_id: int
    kind: Kind
    priority: Priority
    thread_id: int | None = None
    reply_to: int | None = None
    submission_id: int | None = None
    key: str | None = None
    replace: bool = False
    payload: dict[str, Any] = field(default_factory=dict)
    document: bytes | None = None
    not_before: float = 0.0


@dataclass(frozen=True)
class OutboxRow:
    id: int
    chat_id: int
    kind: Kind
    priority: Priority
    thread_id: int | None
    reply_to: int | None
    submission_id: int | None
    key: str | None
    payload: dict[str, Any]
    document: bytes | None
    created_at: float
    not_before: float
    attempts: int

    @classmethod
    def from_row(cls, row: Any) -> OutboxRow:
        return cls(
            id=row["id"],
            chat_id=row["chat_id"],
            kind=Kind(row["kind"]),
            priority=Priority(row["priority"]),
            thread_id=row["thread_id"],
            reply_to=row["reply_to"],
            submission_id=row["submission_id"],
            key=row["key"],
            payload=json.loads(row["payload"] or "{}"),
            document=row["document"],
            created_at=row["created_at"],
            not_before=row["not_before"],
            attempts=row["attempts"],
        )


# The columns a submission may record about a message the bot sent for it.
MESSAGE_FIELDS = frozenset(
    {"results_message_id", "prompt_message_id", "reaction", "progress_message_id"}
)


async def owe(tx: Tx, rows: Sequence[Owed], now: float) -> None:
    """Write rows inside the caller's transaction; the delivery loop is woken after COMMIT."""
    for row in rows:
        conflict = (
            " ON CONFLICT (key) DO UPDATE SET payload = excluded.payload,"
            " document = excluded.document, priority = excluded.priority,"
            " not_before = excluded.not_before"
            if row.replace
            else " ON CONFLICT (key) DO NOTHING"
        )
        sql = (
            "INSERT INTO outbox (chat_id, thread_id, reply_to, submission_id, kind, priority,"
            " key, payload, document, created_at, not_before)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        await tx.execute(
            sql + conflict,
            (
                row.chat_id,
                row.thread_id,
                row.reply_to,
                row.submission_id,
                row.kind.value,
                int(row.priority),
                row.key,
                json.dumps(row.payload),
                row.document,
                now,
                row.not_before,
            ),
        )
        tx.owed.add(row.chat_id)


async def owe_notifications(tx: Tx, sub_ids: Sequence[int], now: float) -> None:
    """The message each of these submissions' states owes (called by the transitions into a
    state of MESSAGE_STATES, in their transaction); once per submission until delivered. The
    submission is then the delivery loop's, not due for the tracker any more."""
    for sub_id in sub_ids:
        row = await tx.one(
            "SELECT chat_id, thread_id, message_id FROM submissions WHERE id = ?"
            " AND notified_at IS NULL",
            (sub_id,),
        )
        if row is None:
            continue
        await tx.execute("UPDATE submissions SET next_action_at = NULL WHERE id = ?", (sub_id,))
        await owe(
            tx,
            [
                Owed(
                    row["chat_id"],
                    Kind.NOTIFY,
                    Priority.RESULT,
                    thread_id=row["thread_id"],
                    reply_to=row["message_id"],
                    submission_id=sub_id,
                    key=f"notify:{sub_id}",
                )
            ],
            now,
        )


def board_row(chat_id: int, thread: int | None) -> Owed:
    return Owed(
        chat_id,
        Kind.BOARD,
        Priority.OPTIONAL,
        thread_id=thread or None,
        key=f"board:{chat_id}:{thread or 0}",
    )
