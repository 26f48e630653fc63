"""A submission's way through Resell Scan, and the reads of submissions.

received -> submitting (the createAndAnalyze request is on its way) -> submitted (its batch id
is stored; polled, or completed by a webhook) -> completed (the results are stored, the chat is
owed them) -> notified. Off that path: submit_retry (the request provably never arrived),
reconciling (its answer was lost: the bot looks its photos up and attaches the batch, sends
again, or asks the user: uncertain, then resubmit), rejected, failed, expired. Every change of
state here is a transition of `storage.transitions`; the other updates (a poll's progress, a
deferral) apply only in the state they mean something in.

Resell Scan's answers are stored as the caller hands them: `results` as JSON text that storage
never reads, and the counts the caller read from them (`Counts`, `record_poll`'s tuple).

`recover`, at start, takes over from a process that died: what it was sending to Resell Scan
is reconciled (what it owed the chat is still in the outbox). `start_retry` ("Retry failed")
opens a new submission, already submitted, for the failed products of a finished one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from storage.db import Database, Tx
from storage.ledger import ACCEPTED, CallSpec, record_answer, record_send
from storage.models import Counts, Problem, State, Submission
from storage.owed import Owed, owe
from storage.transitions import Raw, complete, move, move_all
from storage.webhooks import WebhookOutcome, apply_early, attach_by_products


class Submissions:
    """The lifecycle columns of `submissions`; see the module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # Transitions ---------------------------------------------------------------------------

    async def transition(self, sub_id: int, name: str, now: float, **values: Any) -> bool:
        """The transition `name` (see `TRANSITIONS`) for one submission, setting `values`."""
        async with self.db.transaction() as tx:
            return await move(tx, sub_id, name, now, **values)

    async def begin_submit(
        self, sub_id: int, now: float, owed: Sequence[Owed] = (), call: CallSpec | None = None
    ) -> bool:
        """received -> submitting, just before the POST (and owe `owed`: the 👀 reaction;
        count `call` as sent in the ledger, storage/ledger.py)."""
        async with self.db.transaction() as tx:
            moved = await move(
                tx,
                sub_id,
                "begin_submit",
                now,
                attempts=Raw("attempts + 1"),
                next_action_at=None,
                collecting=0,
                requested_at=now,  # stored before the POST: reconciling looks from here
            )
            if moved:
                await owe(tx, owed, now)
                if call is not None:
                    await record_send(tx, sub_id, call, now)
            return moved

    async def submit_retry(
        self,
        sub_id: int,
        error: str,
        retry_at: float,
        now: float,
        *,
        rate_limited: bool = False,
        owed: Sequence[Owed] = (),
        once_per_chat: Sequence[Owed] = (),
    ) -> bool:
        """The request provably never reached Resell Scan: back to received, due later. A
        refusal before processing (429) or an outage (503, connection refused) is not a
        failure: it does not count as an attempt, and the time it began is kept (the
        submission waits within a long deadline); `owed`: what the chat is told.
        `once_per_chat`: owed too, unless another upload of the chat already waits for the
        same cause (its `last_error` starts like `error`, up to the colon: "unreachable: …"):
        the chat was told with that one. Decided in the same transaction, so albums of one
        chat refused at the same moment tell it once."""
        if rate_limited:
            async with self.db.transaction() as tx:
                moved = await move(
                    tx,
                    sub_id,
                    "submit_retry",
                    now,
                    last_error=error,
                    next_action_at=retry_at,
                    attempts=Raw("MAX(0, attempts - 1)"),
                    rate_limited_since=Raw("COALESCE(rate_limited_since, updated_at)"),
                )
                if moved:
                    await owe(tx, owed, now)
                    if once_per_chat and not await _chat_waits_already(tx, sub_id, error):
                        await owe(tx, once_per_chat, now)
                return moved
        return await self.transition(
            sub_id,
            "submit_retry",
            now,
            last_error=error,
            next_action_at=retry_at,
            rate_limited_since=None,
        )

    async def mark_submitted(
        self,
        sub_id: int,
        batch_id: str,
        next_poll_at: float,
        now: float,
        owed: Sequence[Owed] = (),
        call: CallSpec | None = None,
    ) -> bool:
        """Store the batch id (and owe `owed`: the analysing message; record `call` accepted
        in the ledger). If a webhook for this batch arrived first, apply it now. Returns True
        when that made the submission completed at once."""
        return await self._submitted(
            sub_id, "mark_submitted", batch_id, next_poll_at, now, owed, call
        )

    async def _submitted(
        self,
        sub_id: int,
        transition: str,
        batch_id: str,
        next_poll_at: float,
        now: float,
        owed: Sequence[Owed],
        call: CallSpec | None = None,
    ) -> bool:
        async with self.db.transaction() as tx:
            if call is not None:
                await record_answer(tx, sub_id, call, ACCEPTED, now, batch_id=batch_id)
            moved = await move(
                tx,
                sub_id,
                transition,
                now,
                batch_id=batch_id,
                submitted_at=now,
                next_action_at=next_poll_at,
                last_error=None,
                rate_limited_since=None,
            )
            if not moved:
                return False
            await owe(tx, owed, now)
            return await apply_early(tx, sub_id, batch_id, now)

    # Reconciling a lost answer -------------------------------------------------------------

    async def mark_reconciling(
        self, sub_id: int, error: str, check_at: float, now: float, *, cause: Problem
    ) -> bool:
        """createAndAnalyze may or may not have taken effect: look our photos up at
        `check_at` (after a settle delay) instead of asking the user. `cause` says what
        happened to the request, in case the user must be told after all."""
        return await self.transition(
            sub_id,
            "reconcile",
            now,
            last_error=error,
            problem=cause.dumps(),
            next_action_at=check_at,
            reconcile_checks=0,
            reconcile_until=None,
            product_ids=None,
        )

    async def reconcile_again(self, sub_id: int, check_at: float, now: float) -> bool:
        """Not found yet: one more look at `check_at`."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET reconcile_checks = reconcile_checks + 1,"
                " next_action_at = ?, updated_at = ? WHERE id = ? AND state = ?",
                (check_at, now, sub_id, State.RECONCILING.value),
            )
        return n == 1

    async def reconcile_resend(self, sub_id: int, now: float) -> bool:
        """Not there after the settle delay and a re-check: the request never took effect."""
        return await self.transition(
            sub_id, "reconcile_resend", now, next_action_at=now, product_ids=None
        )

    async def reconcile_found(
        self, sub_id: int, product_ids: list[str], wait_until: float | None, now: float
    ) -> WebhookOutcome | None:
        """Our photos exist as these products: the analysis was started with them. Remember
        them; if a completion webhook for them already came (for a batch we did not know),
        attach it now. Otherwise wait for one until `wait_until` (None: do not wait)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET product_ids = ?, reconcile_until = ?, next_action_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (
                    json.dumps(product_ids),
                    wait_until,
                    wait_until or now,
                    now,
                    sub_id,
                    State.RECONCILING.value,
                ),
            )
            if n != 1:
                return None
            return await attach_by_products(tx, sub_id, product_ids, now)

    async def attach_batch(
        self,
        sub_id: int,
        batch_id: str,
        next_poll_at: float,
        now: float,
        owed: Sequence[Owed] = (),
    ) -> bool:
        """The products found by reconciling are being analysed as `batch_id` (started with
        POST /products/analyze): track it like any other batch."""
        return await self._submitted(sub_id, "attach", batch_id, next_poll_at, now, owed)

    async def ask_user(self, sub_id: int, problem: Problem, now: float) -> bool:
        """The lookup itself failed: the user decides, told what was and was not found."""
        return await self.transition(
            sub_id, "ask", now, problem=problem.dumps(), next_action_at=now
        )

    async def resubmit(self, sub_id: int, now: float) -> bool:
        """The user chose to send an uncertain submission again: a new decision, with its own
        paid calls (storage/ledger.py)."""
        return await self.transition(
            sub_id,
            "resubmit",
            now,
            decision=Raw("decision + 1"),
            next_action_at=now,
            notify_claimed_at=None,
            notified_at=None,
            problem=None,
            parts_sent=0,
            notify_attempts=0,
        )

    # Endings -------------------------------------------------------------------------------

    async def reject(self, sub_id: int, problem: Problem, now: float) -> bool:
        return await self.transition(
            sub_id, "reject", now, problem=problem.dumps(), next_action_at=now
        )

    async def fail(self, sub_id: int, problem: Problem, now: float) -> bool:
        return await self.transition(
            sub_id, "fail", now, problem=problem.dumps(), next_action_at=now
        )

    async def expire(self, sub_id: int, now: float) -> bool:
        return await self.transition(sub_id, "expire", now, next_action_at=now)

    async def complete(
        self, sub_id: int, results: Any, counts: Counts, source: str, now: float
    ) -> bool:
        """submitted -> completed with the results as Resell Scan sent them (any JSON) and the
        counts the caller read from them; False if someone else completed it first."""
        async with self.db.transaction() as tx:
            return await complete(tx, sub_id, counts, json.dumps(results), source, now)

    # While analysed ------------------------------------------------------------------------

    async def photo_failed(self, sub_id: int, at: float | None, error: str) -> int:
        """A photo of the submission could not be fetched from Telegram (a getFile or its
        download failed): counted, and looked at again at `at` (None: when it was due anyway;
        the /media route counts a fetch Resell Scan asked for, while the upload waits for its
        answer). Returns the count so far."""
        async with self.db.transaction(durable=False) as tx:
            row = await tx.one(
                "UPDATE submissions SET photo_failures = photo_failures + 1,"
                " next_action_at = COALESCE(?, next_action_at), last_error = ?"
                " WHERE id = ? AND notified_at IS NULL RETURNING photo_failures",
                (at, error, sub_id),
            )
        return int(row[0]) if row else 0

    async def note_waiting(self, sub_id: int, error: str) -> bool:
        """An upload in flight waits for Resell Scan (the client retries a 429): /status says
        so (last_error), nothing else changes."""
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "UPDATE submissions SET last_error = ? WHERE id = ? AND state = ?",
                (error, sub_id, State.SUBMITTING.value),
            )
        return n == 1

    async def defer(self, sub_id: int, at: float | None, error: str | None = None) -> bool:
        """Look at an open submission again at `at` (None: only when something wakes it)."""
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "UPDATE submissions SET next_action_at = ?, last_error = COALESCE(?, last_error)"
                " WHERE id = ? AND notified_at IS NULL",
                (at, error, sub_id),
            )
        return n == 1

    async def record_poll(
        self,
        sub_id: int,
        *,
        raw_status: str,
        counts: tuple[int | None, int | None, int | None],
        progress: float | None,
        next_poll_at: float,
        now: float,
    ) -> bool:
        """A status answer, as the caller read it: `counts` are (total, successful, failed)."""
        async with self.db.transaction(durable=False) as tx:
            n = await tx.execute(
                "UPDATE submissions SET raw_status = ?, total_products = ?,"
                " successful_products = ?, failed_products = ?, progress = ?,"
                " poll_count = poll_count + 1, unreadable_count = 0, next_action_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (raw_status, *counts, progress, next_poll_at, now, sub_id, State.SUBMITTED.value),
            )
        return n == 1

    async def note_unreadable(
        self, sub_id: int, next_poll_at: float, error: str, now: float
    ) -> bool:
        """One more answer about this batch that could not be read."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET unreadable_count = unreadable_count + 1,"
                " poll_count = poll_count + 1, next_action_at = ?, last_error = ?, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (next_poll_at, error[:300], now, sub_id, State.SUBMITTED.value),
            )
        return n == 1

    # Retrying failed products --------------------------------------------------------------

    async def start_retry(
        self,
        original: Submission,
        batch_id: str,
        product_ids: list[str],
        next_poll: float,
        now: float,
        owed: Sequence[Owed] = (),
    ) -> int | None:
        """"Retry failed": the failed products are being analysed again as `batch_id`. A new
        submission tracks that batch (its `retry_of`: the album's first submission, whose
        photos and numbers it keeps) and answers the original photos; the original's button
        was used up before the call (Ledger.claim_retry). None when a retry of it exists
        already (a second press changes nothing)."""  # fmt: skip
        async with self.db.transaction() as tx:
            if await tx.one("SELECT 1 FROM submissions WHERE retry_of = ?", (original.id,)):
                return None
            await tx.execute(
                "UPDATE submissions SET retried_at = COALESCE(retried_at, ?) WHERE id = ?",
                (now, original.id),
            )
            await owe(tx, owed, now)
            return await tx.insert(
                "INSERT INTO submissions (chat_id, thread_id, message_id, user_id, user_name,"
                " collection_ref, collection_id, collection_name, manual_fields, caption_seen,"
                " remove_background, language, idempotency_key, state, batch_id, submitted_at,"
                " next_action_at, created_at, updated_at, retry_of, product_ids)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    original.chat_id,
                    original.thread_id,
                    original.message_id,
                    original.user_id,
                    original.user_name,
                    original.collection_ref,
                    original.collection_id,
                    original.collection_name,
                    json.dumps(original.manual_fields),
                    int(original.remove_background),
                    original.language,
                    str(uuid.uuid4()),
                    State.SUBMITTED.value,
                    batch_id,
                    now,
                    next_poll,
                    now,
                    now,
                    original.retry_of or original.id,  # a retry of a retry: the album's own
                    json.dumps(product_ids),
                ),
            )

    # After a restart -----------------------------------------------------------------------

    async def recover(self, now: float, reconcile_at: float) -> dict[str, int]:
        """At start: whatever was mid-send when the process died.

        `submitting` becomes `reconciling` (createAndAnalyze may have been processed: the
        bot looks its photos up at `reconcile_at`). What the dead process owed its chats is
        in the outbox and goes out as usual."""
        async with self.db.transaction() as tx:
            reconciling = await move_all(
                tx,
                "reconcile",
                now,
                last_error="interrupted while sending to Resell Scan",
                next_action_at=reconcile_at,
                reconcile_checks=0,
            )
            counts = await tx.all(
                "SELECT state, COUNT(*) FROM submissions WHERE state IN (?, ?, ?) GROUP BY state",
                (State.RECEIVED.value, State.SUBMITTED.value, State.COMPLETED.value),
            )
        out = {"reconciling": reconciling}
        out.update({row[0]: row[1] for row in counts})
        return out

    # Reads ---------------------------------------------------------------------------------

    async def get(self, sub_id: int) -> Submission | None:
        async with self.db.reading() as tx:
            row = await tx.one("SELECT * FROM submissions WHERE id = ?", (sub_id,))
        return Submission.from_row(row) if row else None

    async def by_batch(self, batch_id: str) -> Submission | None:
        async with self.db.reading() as tx:
            row = await tx.one("SELECT * FROM submissions WHERE batch_id = ?", (batch_id,))
        return Submission.from_row(row) if row else None

    async def find_batch(self, chat_id: int, batch_ref: str) -> Submission | None:
        """A chat's submission by full batch id or its first characters."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM submissions WHERE chat_id = ? AND batch_id LIKE ? || '%'"
                " ESCAPE '\\' LIMIT 2",
                (chat_id, batch_ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")),
            )
        return Submission.from_row(rows[0]) if len(rows) == 1 else None

    async def due(
        self, now: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[Submission]:
        """Submissions due by `now`, the earliest first; `exclude`: those being handled."""
        skip = ", ".join("?" for _ in exclude)
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM submissions WHERE next_action_at IS NOT NULL AND next_action_at <= ?"  # noqa: S608 (placeholders only)
                + (f" AND id NOT IN ({skip})" if exclude else "")
                + " ORDER BY next_action_at LIMIT ?",
                (now, *exclude, limit),
            )
        return [Submission.from_row(r) for r in rows]

    async def next_due_at(self) -> float | None:
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT MIN(next_action_at) FROM submissions WHERE next_action_at IS NOT NULL"
            )
        return float(row[0]) if row and row[0] is not None else None

    async def for_chat(
        self, chat_id: int, *, open_limit: int = 20, finished_limit: int = 5
    ) -> tuple[list[Submission], list[Submission]]:
        # Open: still moving, or waiting for the user (an uncertain upload not yet resolved is
        # open too: its message points to /status). Completed ones have their results (the
        # reply may be on its way): finished, for the user.
        open_states = (
            State.RECEIVED,
            State.SUBMITTING,
            State.SUBMITTED,
            State.RECONCILING,
            State.UNCERTAIN,
        )
        finished_states = (
            State.COMPLETED,
            State.NOTIFIED,
            State.FAILED,
            State.EXPIRED,
            State.REJECTED,
        )
        async with self.db.reading() as tx:
            open_rows = await tx.all(
                "SELECT * FROM submissions WHERE chat_id = ? AND state IN (?, ?, ?, ?, ?)"
                " ORDER BY id DESC LIMIT ?",
                (chat_id, *(s.value for s in open_states), open_limit),
            )
            done_rows = await tx.all(
                "SELECT * FROM submissions WHERE chat_id = ? AND state IN (?, ?, ?, ?, ?)"
                " AND batch_id IS NOT NULL ORDER BY COALESCE(completed_at, updated_at) DESC"
                " LIMIT ?",
                (chat_id, *(s.value for s in finished_states), finished_limit),
            )
        return (
            [Submission.from_row(r) for r in open_rows],
            [Submission.from_row(r) for r in done_rows],
        )

    async def count_by_state(self) -> dict[str, int]:
        async with self.db.reading() as tx:
            rows = await tx.all("SELECT state, COUNT(*) FROM submissions GROUP BY state")
        return {row[0]: row[1] for row in rows}


async def _chat_waits_already(tx: Tx, sub_id: int, error: str) -> bool:
    """Whether another upload of the submission's chat waits for the cause `error` names
    (the part before its colon): Resell Scan refused it before processing, and it is not
    sent yet."""
    cause = error.partition(":")[0]
    row = await tx.one(
        "SELECT 1 FROM submissions s JOIN submissions o ON o.chat_id = s.chat_id"
        " WHERE s.id = ? AND o.id != s.id AND o.state IN (?, ?)"
        " AND o.rate_limited_since IS NOT NULL AND substr(o.last_error, 1, ?) = ? LIMIT 1",
        (sub_id, State.RECEIVED.value, State.SUBMITTING.value, len(cause) + 1, cause + ":"),
    )
    return row is not None
