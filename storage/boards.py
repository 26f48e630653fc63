"""The live board of a group chat (one per forum topic): what it lists, and the message
that shows it.

The board is one message edited in place instead of a message per album. Storage keeps
its message id and the text last shown (so an unchanged board is not edited again), and
answers what it lists: the analyses of that chat and topic not finished yet.
"""

from __future__ import annotations

from storage.db import Database
from storage.models import State, Submission

# Listed: being sent, analysed or looked up, completed with the results on their way, and
# received ones on their way (scheduled: an album gathering, a retry; or a /batch collecting).
# Received ones waiting for the user (a collection to pick, fields to add, the duplicate
# guard) are not.
_LISTED = (State.SUBMITTING, State.SUBMITTED, State.RECONCILING, State.COMPLETED)


class Boards:
    """The `boards` table, and the board's query over `submissions`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def board_items(
        self, chat_id: int, thread_id: int | None, limit: int = 40
    ) -> tuple[list[Submission], int]:
        """What a chat's (topic's) board lists: the oldest `limit` analyses not finished yet,
        and how many there are in all (the rest are only counted)."""
        where = (
            " FROM submissions WHERE chat_id = ? AND thread_id IS ?"
            " AND (state IN (?, ?, ?, ?) OR (state = ? AND (next_action_at IS NOT NULL"
            " OR collecting = 1)))"
        )
        args = (chat_id, thread_id, *(s.value for s in _LISTED), State.RECEIVED.value)
        async with self.db.reading() as tx:
            rows = await tx.all(f"SELECT *{where} ORDER BY id LIMIT ?", (*args, limit))
            total = len(rows)
            if total == limit:
                counted = await tx.one(f"SELECT COUNT(*){where}", args)
                total = int(counted[0]) if counted else total
        return [Submission.from_row(r) for r in rows], total

    async def board(self, chat_id: int, thread: int) -> tuple[int | None, str | None]:
        """The board's message id and the text it shows, or (None, None) when there is none."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT message_id, text FROM boards WHERE chat_id = ? AND thread_id = ?",
                (chat_id, thread),
            )
        return (row["message_id"], row["text"]) if row else (None, None)

    async def set_board(
        self,
        chat_id: int,
        thread: int,
        message_id: int | None,
        text: str | None,
        now: float | None = None,
    ) -> None:
        """Remember the board's message and text; a `message_id` of None forgets the board."""
        async with self.db.transaction() as tx:
            if message_id is None:
                await tx.execute(
                    "DELETE FROM boards WHERE chat_id = ? AND thread_id = ?", (chat_id, thread)
                )
                return
            await tx.execute(
                "INSERT INTO boards (chat_id, thread_id, message_id, text, edited_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (chat_id, thread_id) DO UPDATE SET message_id = excluded.message_id,"
                " text = excluded.text, edited_at = excluded.edited_at",
                (chat_id, thread, message_id, text, now),
            )
