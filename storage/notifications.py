"""What the chat is told about a submission: the message it is owed, and the messages sent.

The notification claim. A submission that reaches a state in `MESSAGE_STATES` owes its chat one
message (results, a rejection, a failure, a question). `claim_notification` lets exactly one
caller send it; the parts sent are counted (`mark_part_sent`), so a sender that retries sends
only the rest; `release_claim` gives the claim back after a failure (due again later), and
`mark_notified` ends it for good: completed -> notified, while the other states that owe a
message keep their state and only record that it was sent. `recover` (submissions.py)
releases, at start, the claims of a process that died while sending.

Also the ids of messages the bot sent for a submission (progress, results, a prompt a reply
can answer) and the reaction it set, so later edits, buttons and replies find their
submission.
"""

from __future__ import annotations

from typing import Any

from storage.db import Database
from storage.models import MESSAGE_STATES, Submission
from storage.transitions import assignments, move

_CLAIMED = "notify_claimed_at IS NOT NULL AND notified_at IS NULL"
_MESSAGE_FIELDS = frozenset(
    {"results_message_id", "prompt_message_id", "reaction", "progress_message_id"}
)


class Notifications:
    """The notification columns of `submissions`; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # The claim -----------------------------------------------------------------------------

    async def claim_notification(self, sub_id: int, now: float) -> bool:
        """Take the right to send this submission's message. Only one caller wins."""
        marks = ", ".join("?" for _ in MESSAGE_STATES)
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET notify_claimed_at = ?, next_action_at = NULL"  # noqa: S608 (placeholders only)
                f" WHERE id = ? AND state IN ({marks})"
                " AND notified_at IS NULL AND notify_claimed_at IS NULL",
                (now, sub_id, *(s.value for s in MESSAGE_STATES)),
            )
        return n == 1

    async def mark_part_sent(self, sub_id: int, parts: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE submissions SET parts_sent = ? WHERE id = ?", (parts, sub_id))

    async def release_claim(self, sub_id: int, error: str, retry_at: float, now: float) -> bool:
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET notify_claimed_at = NULL, notify_attempts ="  # noqa: S608 (a literal condition)
                " notify_attempts + 1, last_error = ?, next_action_at = ?, updated_at = ?"
                f" WHERE id = ? AND {_CLAIMED}",
                (error, retry_at, now, sub_id),
            )
        return n == 1

    async def mark_notified(self, sub_id: int, now: float, error: str | None = None) -> bool:
        """The message was sent (or cannot ever be: `error` says why). completed -> notified;
        a rejected, failed, expired or uncertain submission keeps its state."""
        values: dict[str, Any] = {"notified_at": now, "next_action_at": None}
        if error is not None:
            values["last_error"] = error
        async with self.db.transaction() as tx:
            if await move(tx, sub_id, "mark_notified", now, where=_CLAIMED, **values):
                return True
            sets, bound = assignments(values)
            n = await tx.execute(
                f"UPDATE submissions SET updated_at = ?{sets}"  # noqa: S608 (our column names)
                f" WHERE id = ? AND {_CLAIMED}",
                (now, *bound, sub_id),
            )
        return n == 1

    # Messages sent -------------------------------------------------------------------------

    async def note_message(self, sub_id: int, **ids: int | str | None) -> None:
        """Remember a message the bot sent for this submission (results_message_id,
        prompt_message_id) or the reaction it set (reaction)."""
        if set(ids) - _MESSAGE_FIELDS:
            raise ValueError(f"unknown message fields: {sorted(set(ids) - _MESSAGE_FIELDS)}")
        sets = ", ".join(f"{k} = ?" for k in ids)
        async with self.db.transaction() as tx:
            await tx.execute(
                f"UPDATE submissions SET {sets} WHERE id = ?",  # noqa: S608 (names from _MESSAGE_FIELDS)
                (*ids.values(), sub_id),
            )

    async def set_progress_message(self, sub_id: int, message_id: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE submissions SET progress_message_id = ? WHERE id = ?", (message_id, sub_id)
            )

    async def note_progress_shown(self, sub_id: int, progress: float, now: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE submissions SET progress_shown = ?, progress_edited_at = ? WHERE id = ?",
                (progress, now, sub_id),
            )

    async def by_prompt(self, chat_id: int, message_id: int) -> Submission | None:
        """The submission a bot message (a rejection or a question) was about."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT * FROM submissions WHERE chat_id = ? AND prompt_message_id = ?",
                (chat_id, message_id),
            )
        return Submission.from_row(row) if row else None
