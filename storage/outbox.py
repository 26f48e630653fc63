"""The outbox: every message, edit, reaction and document the bot owes a chat, as a row.

A row is written in the same transaction as the change of state that owes it (`owe` inside a
caller's `Tx`), so a process that dies between the two leaves both or neither; the delivery
loop (bot/telegram/delivery.py) sends the rows within Telegram's limits and deletes each one in
the same transaction that records what it produced (a message id, a part sent, `notified`).
Nothing else in the bot waits for Telegram.

Rows are not rendered text where the text depends on what is true when it is sent: a `notify`
row names its submission, and the results, refusal or question are rendered when it is
delivered; an `analysing` row is dropped if its results are owed by then. A row with a `key`
coalesces: writing it again replaces the waiting one (`replace`) or leaves it (a notification
owed once).

Priorities: 0 what the user waits for (results, refusals, questions), 1 replies to commands and
buttons, 2 optional output (the analysing message, progress and board edits, reactions,
refusals to strangers), which is coalesced or skipped when its chat is behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from storage.db import Database, Tx
from storage.models import MESSAGE_STATES, State
from storage.owed import (
    MESSAGE_FIELDS,
    Kind,
    OutboxRow,
    Owed,
    Priority,
    board_row,
    owe,
    owe_notifications,
)
from storage.transitions import assignments, move

__all__ = [
    "Kind",
    "Outbox",
    "OutboxRow",
    "Owed",
    "Priority",
    "board_row",
    "owe",
    "owe_notifications",
]


ROWS_SCANNED_PER_CHAT = 16  # due rows read to find `limit` chats with something to send


class Outbox:
    """The `outbox` and `refusals` tables; see the module doc. What a power loss may undo
    without harm is committed without an fsync (`durable=False`): optional rows, a delivery's
    bookkeeping (the row is sent again), holds and retries. A notification's parts and its
    end (`notified`) are durable: a power loss must not repeat results."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # Writing -------------------------------------------------------------------------------

    async def owe(self, *rows: Owed, now: float) -> None:
        """Rows owed with no change of state (command replies, reactions, board refreshes)."""
        async with self.db.transaction(
            durable=any(r.priority is not Priority.OPTIONAL for r in rows)
        ) as tx:
            await owe(tx, rows, now)

    async def owe_board(self, chat_id: int, thread: int | None, now: float) -> None:
        """Refresh the live board of a group (or of a private chat that shows one): one row
        per board, due now (a row waiting is brought forward), rendered when delivered. The
        board's own budget decides then whether it is edited at once or later
        (bot/telegram/board.py), so a change of state is never held back by a fixed
        interval."""
        if chat_id > 0:  # a private chat shows one only while a burst is analysed: look first
            async with self.db.reading() as tx:
                if (
                    await tx.one(
                        "SELECT 1 FROM boards WHERE chat_id = ? AND thread_id = ?",
                        (chat_id, thread or 0),
                    )
                    is None
                ):
                    return
        row = board_row(chat_id, thread)
        async with self.db.transaction(durable=False) as tx:
            if chat_id > 0 and (
                await tx.one(
                    "SELECT 1 FROM boards WHERE chat_id = ? AND thread_id = ?",
                    (chat_id, thread or 0),
                )
                is None
            ):
                return  # gone meanwhile
            await owe(tx, [row], now)
            await tx.execute(
                "UPDATE outbox SET not_before = ? WHERE key = ? AND not_before > ?",
                (now, row.key, now),
            )

    async def refuse_once(self, user_id: int, row: Owed, now: float, *, every: float) -> bool:
        """A refusal for an unauthorised sender, at most once per `every` seconds per user:
        True if it was owed now."""
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "INSERT INTO refusals (user_id, refused_at) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET refused_at = excluded.refused_at"
                " WHERE refusals.refused_at <= ?",
                (user_id, now, now - every),
            )
            if n:
                await owe(tx, [row], now)
        return n == 1

    # Reading for delivery ------------------------------------------------------------------

    async def outbox_due_chats(
        self, now: float, limit: int, *, optional_owed_by: float = math.inf
    ) -> list[int]:
        """Chats with rows due now, the most urgent first; optional rows count only when owed
        by `optional_owed_by` (they yield to work waiting; see bot/telegram/delivery.py)."""
        async with self.db.reading() as tx:
            # The most urgent due rows first (index order), then their chats: the scan stops
            # early however many rows wait (a backlog of refusals to strangers, say).
            rows = await tx.all(
                "SELECT chat_id FROM (SELECT chat_id, priority, id FROM outbox"
                " WHERE not_before <= ? AND (priority < ? OR created_at <= ?)"
                " ORDER BY priority, id LIMIT ?)"
                " GROUP BY chat_id ORDER BY MIN(priority), MIN(id) LIMIT ?",
                (
                    now,
                    int(Priority.OPTIONAL),
                    optional_owed_by,
                    limit * ROWS_SCANNED_PER_CHAT,
                    limit,
                ),
            )
        return [r[0] for r in rows]

    async def outbox_next_at(self, *, below: int = len(Priority)) -> float | None:
        """When the next row falls due (of the rows more urgent than `below`)."""
        async with self.db.reading() as tx:
            row = await tx.one("SELECT MIN(not_before) FROM outbox WHERE priority < ?", (below,))
        return row[0] if row else None

    async def outbox_rows(self, chat_id: int, now: float, limit: int) -> list[OutboxRow]:
        """A chat's rows due now, in the order they go: priority, then age."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM outbox WHERE chat_id = ? AND not_before <= ?"
                " ORDER BY priority, id LIMIT ?",
                (chat_id, now, limit),
            )
        return [OutboxRow.from_row(r) for r in rows]

    async def outbox_count(
        self, chat_id: int, kind: Kind | None = None, thread_id: int | None = None
    ) -> int:
        sql = "SELECT COUNT(*) FROM outbox WHERE chat_id = ?"
        args: list[Any] = [chat_id]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind.value)
        if thread_id is not None:
            sql += " AND thread_id IS ?"
            args.append(thread_id or None)
        async with self.db.reading() as tx:
            row = await tx.one(sql, args)
        return int(row[0]) if row else 0

    async def waiting_results(self, chat_id: int) -> int:
        """Completed analyses whose results wait for Telegram (for /status)."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT COUNT(*) FROM outbox o JOIN submissions s ON s.id = o.submission_id"
                " WHERE o.chat_id = ? AND o.kind = ? AND s.state = ?",
                (chat_id, Kind.NOTIFY.value, State.COMPLETED.value),
            )
        return int(row[0]) if row else 0

    async def outbox_size(self) -> int:
        async with self.db.reading() as tx:
            row = await tx.one("SELECT COUNT(*) FROM outbox")
        return int(row[0]) if row else 0

    # After delivery ------------------------------------------------------------------------

    async def delivered(
        self,
        row: OutboxRow,
        now: float,
        *,
        record: dict[str, Any] | None = None,
        then: Sequence[Owed] = (),
    ) -> None:
        """The row was sent (or is not wanted any more): delete it, record what the
        submission keeps of it (`record`: message ids, the reaction), and owe what follows."""
        async with self.db.transaction(durable=False) as tx:
            await tx.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
            await _record(tx, row.submission_id, record)
            await owe(tx, then, now)

    async def part_sent(
        self, row: OutboxRow, parts: int, record: dict[str, Any] | None = None
    ) -> None:
        """One more part of a notification was sent (a retry sends only the rest)."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE submissions SET parts_sent = ? WHERE id = ?", (parts, row.submission_id)
            )
            await _record(tx, row.submission_id, record)

    async def notified(
        self,
        row: OutboxRow,
        now: float,
        *,
        error: str | None = None,
        record: dict[str, Any] | None = None,
        parts: int | None = None,
        then: Sequence[Owed] = (),
    ) -> bool:
        """A notification was delivered (or never can be: `error` says why): completed ->
        notified, the other states that owe a message keep theirs and record the time.
        `parts`: how many parts were sent in all (recorded in the same transaction)."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM outbox WHERE id = ?", (row.id,))
            if parts is not None:
                await tx.execute(
                    "UPDATE submissions SET parts_sent = ? WHERE id = ?", (parts, row.submission_id)
                )
            await _record(tx, row.submission_id, record)
            moved = await _mark_notified(tx, row.submission_id, now, error)
            if moved:
                await owe(tx, then, now)
        return moved

    async def retry_row(self, row: OutboxRow, at: float, error: str) -> None:
        async with self.db.transaction(durable=False) as tx:
            await tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, not_before = ?, last_error = ?"
                " WHERE id = ?",
                (at, error[:300], row.id),
            )

    async def postpone(self, row: OutboxRow, at: float) -> None:
        """The row is not due before `at` (not a failure: no attempt counted)."""
        async with self.db.transaction(durable=False) as tx:
            await tx.execute("UPDATE outbox SET not_before = ? WHERE id = ?", (at, row.id))

    async def hold_chat(self, chat_id: int, until: float) -> None:
        """Nothing goes to this chat before `until` (a 429, or its budget spent)."""
        async with self.db.transaction(durable=False) as tx:
            await tx.execute(
                "UPDATE outbox SET not_before = MAX(not_before, ?) WHERE chat_id = ?",
                (until, chat_id),
            )

    async def drop_rows(self, chat_id: int, kind: Kind, thread_id: int | None = None) -> int:
        async with self.db.transaction(durable=False) as tx:
            return await tx.execute(
                "DELETE FROM outbox WHERE chat_id = ? AND kind = ? AND thread_id IS ?",
                (chat_id, kind.value, thread_id),
            )

    async def drop_late_optional(self, created_before: float) -> int:
        """Optional messages (a refusal to a stranger) that waited this long say nothing any
        more: dropped. Optional edits and reactions render what is true when sent, and stay."""
        async with self.db.transaction(durable=False) as tx:
            return await tx.execute(
                "DELETE FROM outbox WHERE priority = ? AND kind = ? AND created_at < ?",
                (int(Priority.OPTIONAL), Kind.TEXT.value, created_before),
            )

    async def drop_stale(self, created_before: float, now: float) -> int:
        """Rows owed to chats that are gone (blocked or removed the bot) for longer than the
        bound are dropped; their notifications are recorded as never deliverable."""
        gone = "created_at < ? AND chat_id IN (SELECT chat_id FROM chats WHERE reachable = 0)"
        async with self.db.transaction() as tx:
            stale = await tx.all(
                f"SELECT submission_id FROM outbox WHERE kind = ? AND {gone}",  # noqa: S608 (literal)
                (Kind.NOTIFY.value, created_before),
            )
            for row in stale:
                await _mark_notified(tx, row[0], now, "unreachable: dropped")
            return await tx.execute(
                f"DELETE FROM outbox WHERE {gone}",  # noqa: S608 (literal)
                (created_before,),
            )


async def _mark_notified(tx: Tx, sub_id: int | None, now: float, error: str | None) -> bool:
    """completed -> notified (the transition); the other states that owe a message keep
    theirs and only record the time. False if it was recorded already."""
    if sub_id is None:
        return False
    values: dict[str, Any] = {"notified_at": now, "next_action_at": None}
    if error is not None:
        values["last_error"] = error
    if await move(tx, sub_id, "mark_notified", now, where="notified_at IS NULL", **values):
        return True
    marks = ", ".join("?" for _ in MESSAGE_STATES)
    sets, bound = assignments(values)
    n = await tx.execute(
        f"UPDATE submissions SET updated_at = ?{sets}"  # noqa: S608 (our column names)
        f" WHERE id = ? AND notified_at IS NULL AND state IN ({marks})",
        (now, *bound, sub_id, *(s.value for s in MESSAGE_STATES)),
    )
    return n == 1


async def _record(tx: Tx, sub_id: int | None, record: dict[str, Any] | None) -> None:
    if not record or sub_id is None:
        return
    unknown = set(record) - MESSAGE_FIELDS
    if unknown:
        raise ValueError(f"unknown message fields: {sorted(unknown)}")
    sets = ", ".join(f"{k} = ?" for k in record)
    await tx.execute(
        f"UPDATE submissions SET {sets} WHERE id = ?",  # noqa: S608 (names from MESSAGE_FIELDS)
        (*record.values(), sub_id),
    )
