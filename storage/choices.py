"""What the user decides about a submission that was not sent yet.

A received submission is due (`next_action_at` set) unless it waits for the user: for a
collection to be picked (`await_choice`, then `choose_collection`), for missing fields
(`await_fields`), or for a choice at the duplicate guard (`hold_duplicate`, then `pass_guard`
or `drop`). A caption fixed by an edit or a reply (`revise`) applies to a waiting submission,
and brings a rejected one back to received. /cancel drops every waiting submission of its
sender (`cancel_waiting`). A dropped or cancelled submission is rejected with the problem
"cancelled" and marked notified at once: the user asked for it, no message is owed.

Each of these applies only while the submission waits: once it is being sent, the conditional
UPDATE changes nothing and the caller learns it from the return value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from storage.db import Database
from storage.models import Problem, State, Submission
from storage.owed import Owed, owe
from storage.transitions import Raw, assignments, move, move_all

_RECEIVED = State.RECEIVED.value


class Choices:
    """The user's say over waiting submissions; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def choose_collection(
        self, sub_id: int, collection_id: str, collection_name: str, now: float
    ) -> bool:
        """Set the collection of a received submission (resolved, or picked by a button) and
        make it due now."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET collection_id = ?, collection_name = ?, next_action_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (collection_id, collection_name, now, now, sub_id, _RECEIVED),
            )
        return n == 1

    async def await_choice(self, sub_id: int, now: float, owed: Sequence[Owed] = ()) -> bool:
        """A received submission waits for the user to pick a collection: not due any more.
        `owed`: the question, written with it."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET next_action_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (now, sub_id, _RECEIVED),
            )
            if n:
                await owe(tx, owed, now)
        return n == 1

    async def await_fields(
        self, sub_id: int, problem: Problem, now: float, owed: Sequence[Owed] = ()
    ) -> bool:
        """Keep the photos and wait for the missing fields (a reply to the question, which
        `owed` carries)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET problem = ?, next_action_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (problem.dumps(), now, sub_id, _RECEIVED),
            )
            if n:
                await owe(tx, owed, now)
        return n == 1

    async def revise(
        self,
        sub_id: int,
        now: float,
        *,
        collection_ref: str | None = None,
        manual_fields: dict[str, Any] | None = None,
        replace_fields: bool = False,
    ) -> Submission | None:
        """Apply a corrected caption (`collection_ref`, `manual_fields`) or extra fields to a
        submission not yet sent: waiting (it is due again at once, or when its album window
        ends) or rejected (received again, its message bookkeeping afresh). None when it was
        already sent or is gone."""
        async with self.db.transaction() as tx:
            row = await tx.one("SELECT * FROM submissions WHERE id = ?", (sub_id,))
            if row is None:
                return None
            sub = Submission.from_row(row)
            fields = (
                dict(manual_fields or {})
                if replace_fields
                else {**sub.manual_fields, **(manual_fields or {})}
            )
            values: dict[str, Any] = {"manual_fields": json.dumps(fields), "problem": None}
            if collection_ref is not None and collection_ref != sub.collection_ref:
                values.update(collection_ref=collection_ref, collection_id=None,
                              collection_name=None)  # fmt: skip
            if sub.state is State.REJECTED:
                values.update(
                    next_action_at=now,
                    notify_claimed_at=None,
                    notified_at=None,
                    parts_sent=0,
                    notify_attempts=0,
                    prompt_message_id=None,
                )
                moved = await move(tx, sub_id, "revise", now, **values)
            elif sub.state is State.RECEIVED and not sub.collecting:
                values["next_action_at"] = Raw(f"MAX(COALESCE(next_action_at, 0), {now!r})")
                sets, bound = assignments(values)
                moved = (
                    await tx.execute(
                        f"UPDATE submissions SET updated_at = ?{sets}"  # noqa: S608 (our column names)
                        " WHERE id = ? AND state = ?",
                        (now, *bound, sub_id, _RECEIVED),
                    )
                    == 1
                )
            else:
                return None
            if not moved:
                return None
            fresh = await tx.one("SELECT * FROM submissions WHERE id = ?", (sub_id,))
        return Submission.from_row(fresh) if fresh else None

    # The duplicate guard -------------------------------------------------------------------

    async def previous_analysis(self, sub: Submission) -> Submission | None:
        """The latest earlier submission in this chat that analysed every one of this one's
        photos (by Telegram's file_unique_id), or is analysing them now; None when any photo
        is new. An analysis that failed as a whole does not count (the photo is worth sending
        again), and neither does an earlier one that waits for its sender (a question). A
        chat upgraded from a group (storage/chats.py) includes the group: its photos keep the
        group's id as their address, so they are looked up under every id the chat had."""
        async with self.db.reading() as tx:
            # CROSS JOIN keeps this submission's photos the outer loop, each looked up in
            # photos_unique (chat_id, file_unique_id): with the ids as a list, SQLite would
            # otherwise scan every photo of the chat for each submission.
            rows = await tx.all(
                "WITH RECURSIVE ids(chat_id) AS (SELECT ? UNION SELECT m.old_chat_id"
                " FROM chat_migrations m JOIN ids ON m.new_chat_id = ids.chat_id)"
                " SELECT p.file_unique_id, MAX(s.id) AS earlier FROM photos p"
                " CROSS JOIN photos q ON q.chat_id IN (SELECT chat_id FROM ids)"
                " AND q.file_unique_id = p.file_unique_id"
                " JOIN submissions s ON s.id = q.submission_id"
                " WHERE p.submission_id = ? AND q.submission_id != ? AND ("
                # analysed, with at least one product that did not fail
                "(s.state IN (?, ?) AND s.batch_id IS NOT NULL"
                " AND COALESCE(s.successful_products, 1) > 0)"
                # on its way: being sent, or at Resell Scan
                " OR s.state IN (?, ?, ?)"
                # received before this one and due (not waiting for its sender, not held)
                " OR (s.state = ? AND s.id < ? AND s.next_action_at IS NOT NULL"
                " AND s.duplicate_of IS NULL AND s.collecting = 0 AND s.problem IS NULL))"
                " GROUP BY p.file_unique_id",
                (
                    sub.chat_id,
                    sub.id,
                    sub.id,
                    State.NOTIFIED.value,
                    State.COMPLETED.value,
                    State.SUBMITTING.value,
                    State.SUBMITTED.value,
                    State.RECONCILING.value,
                    State.RECEIVED.value,
                    sub.id,
                ),
            )
            total = await tx.one(
                "SELECT COUNT(DISTINCT file_unique_id) FROM photos WHERE submission_id = ?",
                (sub.id,),
            )
            if not rows or total is None or len(rows) < total[0]:
                return None
            row = await tx.one(
                "SELECT * FROM submissions WHERE id = ?", (max(r["earlier"] for r in rows),)
            )
        return Submission.from_row(row) if row else None

    async def hold_duplicate(
        self, sub_id: int, earlier: int, now: float, owed: Sequence[Owed] = ()
    ) -> bool:
        """Nothing is uploaded until the user chooses (show the old results, or analyse);
        `owed` carries the question."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET duplicate_of = ?, next_action_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (earlier, now, sub_id, _RECEIVED),
            )
            if n:
                await owe(tx, owed, now)
        return n == 1

    async def pass_guard(self, sub_id: int, now: float) -> bool:
        """ "Analyse again": the duplicate is sent after all."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET guard_passed = 1, next_action_at = ?, updated_at = ?"
                " WHERE id = ? AND state = ? AND duplicate_of IS NOT NULL AND guard_passed = 0",
                (now, now, sub_id, _RECEIVED),
            )
        return n == 1

    # Letting go ----------------------------------------------------------------------------

    async def drop(self, sub_id: int, now: float) -> bool:
        """The user let a waiting submission go (nothing sent, no message owed)."""
        # "cancel": only from received. A submission already being sent is not dropped (its
        # upload may have happened); the tracker finishes it and answers as usual.
        async with self.db.transaction() as tx:
            return await move(
                tx,
                sub_id,
                "cancel",
                now,
                problem=Problem("cancelled").dumps(),
                next_action_at=None,
                collecting=0,
                notified_at=now,
            )

    async def held_questions(self, chat_id: int, user_id: int) -> list[int]:
        """The messages asking this user about photos held by the duplicate guard (their
        buttons go when the photos are cancelled)."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT prompt_message_id FROM submissions WHERE chat_id = ? AND user_id = ?"
                " AND state = ? AND duplicate_of IS NOT NULL AND prompt_message_id IS NOT NULL",
                (chat_id, user_id, _RECEIVED),
            )
        return [int(r[0]) for r in rows]

    async def cancel_waiting(self, chat_id: int, user_id: int, now: float) -> int:
        """/cancel: drop this user's submissions that were not sent yet. No message is owed."""
        async with self.db.transaction() as tx:
            return await move_all(
                tx,
                "cancel",
                now,
                where="chat_id = ? AND user_id = ?",
                where_args=(chat_id, user_id),
                problem=Problem("cancelled").dumps(),
                next_action_at=None,
                collecting=0,
                notified_at=now,
            )
