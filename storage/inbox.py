"""The durable Telegram update inbox.

Telegram considers an update delivered once the bot asks for the next offset (long polling) or
answers 200 to its POST (webhook). Every update is written here first, raw, in one transaction
per fetched batch (group commit), and only then confirmed. Rows are processed in arrival order
per chat and marked done after their handlers ran; a crash in between processes them again
on start (handlers are idempotent by update or message). The UNIQUE update_id makes a
redelivered update a no-op. Done rows are pruned after a retention period.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Database


@dataclass(frozen=True)
class InboxUpdate:
    id: int  # arrival order
    update_id: int
    chat_id: int | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class NewUpdate:
    update_id: int
    chat_id: int | None
    payload: str  # the update's JSON as received
    data: dict[str, Any] | None = None  # the same, parsed (saves parsing it back)


INSERT_CHUNK = 200  # rows per INSERT statement (4 parameters each, far below SQLite's limit)


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, updates: Sequence[NewUpdate], now: float) -> list[InboxUpdate]:
        """Store a fetched batch in one transaction; returns the rows that were new (a
        redelivered update_id changes nothing)."""
        fresh: list[InboxUpdate] = []
        if not updates:
            return fresh
        by_id = {u.update_id: u for u in updates}
        async with self.db.transaction() as tx:
            for start in range(0, len(updates), INSERT_CHUNK):
                chunk = updates[start : start + INSERT_CHUNK]
                values = ", ".join("(?, ?, ?, ?)" for _ in chunk)
                params = [p for u in chunk for p in (u.update_id, u.chat_id, u.payload, now)]
                # One statement per chunk (one trip to the database thread, not one per row);
                # RETURNING names the rows that were new.
                rows = await tx.all(
                    "INSERT INTO inbox (update_id, chat_id, payload, received_at)"  # noqa: S608 (placeholders only)
                    f" VALUES {values} ON CONFLICT (update_id) DO NOTHING"
                    " RETURNING id, update_id",
                    params,
                )
                for row in rows:
                    update = by_id[int(row[1])]
                    data = update.data if update.data is not None else json.loads(update.payload)
                    fresh.append(InboxUpdate(int(row[0]), update.update_id, update.chat_id, data))
        fresh.sort(key=lambda u: u.id)
        return fresh

    async def pending(self, *, after: int = 0, limit: int = 500) -> list[InboxUpdate]:
        """Undone updates in arrival order, from row `after` on."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT id, update_id, chat_id, payload FROM inbox"
                " WHERE done_at IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after, limit),
            )
        return [
            InboxUpdate(row["id"], row["update_id"], row["chat_id"], json.loads(row["payload"]))
            for row in rows
        ]

    async def mark_done(self, ids: Sequence[int], now: float) -> int:
        if not ids:
            return 0
        count = 0
        # Not fsynced: a done mark a power loss undoes only hands the update over again.
        async with self.db.transaction(durable=False) as tx:
            for start in range(0, len(ids), 500):  # one statement per 500 (bound parameters)
                chunk = list(ids[start : start + 500])
                marks = ", ".join("?" for _ in chunk)
                count += await tx.execute(
                    f"UPDATE inbox SET done_at = ? WHERE id IN ({marks}) AND done_at IS NULL",  # noqa: S608 (placeholders only)
                    (now, *chunk),
                )
        return count

    async def counts(self) -> dict[str, int]:
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE done_at IS NULL) FROM inbox"
            )
        total, pending = (row[0], row[1]) if row else (0, 0)
        return {"total": int(total), "pending": int(pending)}

    async def prune(self, *, done_before: float) -> int:
        """Forget updates handled before `done_before` (Telegram redelivers nothing older than
        24 hours, so a retention of days keeps every duplicate recognisable)."""
        async with self.db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < ?", (done_before,)
            )
