"""The ids of the messages the bot sent for a submission (progress, results, a prompt a
reply can answer) and the reaction it set, so later edits, buttons and replies find their
submission. What a submission is owed, and its delivery, is the outbox's (outbox.py).
"""

from __future__ import annotations

from storage.db import Database
from storage.models import Submission


class Notifications:
    """The message columns of `submissions`; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # Messages sent -------------------------------------------------------------------------

    async def note_progress_shown(self, sub_id: int, progress: float, now: float) -> None:
        async with self.db.transaction(durable=False) as tx:
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
