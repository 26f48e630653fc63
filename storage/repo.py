"""Repositories: the only SQL in the project.

Every change of a submission's state is a named transition: one conditional
`UPDATE ... WHERE id = ? AND state IN (...)` inside one transaction, whose row count says
whether this caller won. A caller that lost (a racing webhook and poller, a duplicate event,
a second claim) learns it from the return value and does nothing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Database, Tx
from storage.history import History
from storage.models import (
    MESSAGE_STATES,
    CaptionInfo,
    ChatSettings,
    NewPhoto,
    PendingScan,
    Photo,
    Problem,
    State,
    Submission,
)

R, SI, SD, C, N = State.RECEIVED, State.SUBMITTING, State.SUBMITTED, State.COMPLETED, State.NOTIFIED
RJ, F, E, U = State.REJECTED, State.FAILED, State.EXPIRED, State.UNCERTAIN
RC = State.RECONCILING

# name: (states it may start from, state it ends in). The whole state machine in one table.
TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "begin_submit": (frozenset({R}), SI),
    "submit_retry": (frozenset({SI}), R),
    "mark_submitted": (frozenset({SI}), SD),
    "reconcile": (frozenset({SI}), RC),  # the answer was lost: look our photos up
    "reconcile_resend": (frozenset({RC}), R),  # not there: the request never took effect
    "attach": (frozenset({RC}), SD),  # there: its batch is known (webhook) or started anew
    "ask": (frozenset({RC}), U),  # the API cannot tell: the user decides, with the facts
    "reject": (frozenset({R, SI}), RJ),
    "revise": (frozenset({RJ}), R),  # the user fixed a rejected caption (edit or reply)
    "complete": (frozenset({SD}), C),
    "fail": (frozenset({R, SI, SD, RC}), F),
    "expire": (frozenset({SD}), E),
    "resubmit": (frozenset({U}), R),
    "mark_notified": (frozenset({C}), N),
}


PHOTO_BATCH = 64  # photos per group-commit transaction
LATE_BATCH_SECONDS = 20.0  # a photo this soon after a /batch closed starts the next one


@dataclass(frozen=True)
class _PhotoRequest:
    photo: NewPhoto
    caption: CaptionInfo | None
    problem: Problem | None
    language: str
    remove_background: bool
    album_window: float
    album_max_wait: float
    now: float


@dataclass(frozen=True)
class AddResult:
    submission_id: int
    created: bool  # this photo opened a new submission
    duplicate: bool  # this exact message was stored before (redelivered update)
    late: bool  # an album member that arrived after its album was submitted
    late_batch: bool = False  # came just after the user's /batch closed: opened the next one
    caption_ignored: bool = False  # its album already had another caption, which applies


@dataclass(frozen=True)
class Counts:
    """A batch's summary as the caller read it from Resell Scan (storage reads no payloads)."""

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
class WebhookOutcome:
    kind: str  # "applied", "duplicate", "unknown_batch", "already_done"
    submission_id: int | None = None


class Store:
    """All repositories over one Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.history = History(db)
        self._photo_queue: list[tuple[_PhotoRequest, asyncio.Future[AddResult]]] = []
        self._photo_writer: asyncio.Task[None] | None = None
        # Chat settings change only through update_chat in this process: cache them, since
        # every photo reads them.
        self._chats: dict[int, ChatSettings] = {}

    # Chats ---------------------------------------------------------------------------------

    async def chat(self, chat_id: int) -> ChatSettings:
        cached = self._chats.get(chat_id)
        if cached is not None:
            return cached
        async with self.db.reading() as tx:
            row = await tx.one("SELECT * FROM chats WHERE chat_id = ?", (chat_id,))
        settings = ChatSettings.from_row(row) if row else ChatSettings(chat_id=chat_id)
        self._chats[chat_id] = settings
        return settings

    async def update_chat(self, chat_id: int, now: float, **values: Any) -> ChatSettings:
        allowed = {
            "default_collection_id",
            "default_collection_name",
            "remove_background",
            "language",
            "admin_only",
            "reachable",
            "analysing_message",
            "reactions",
            "duplicate_guard",
            "digest_time",
            "timezone",
            "digest_last_day",
        }
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"unknown chat settings: {sorted(unknown)}")
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO chats (chat_id, updated_at) VALUES (?, ?) "
                "ON CONFLICT (chat_id) DO NOTHING",
                (chat_id, now),
            )
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                await tx.execute(
                    f"UPDATE chats SET {sets}, updated_at = ? WHERE chat_id = ?",  # noqa: S608 (names from the allowlist above)
                    (*values.values(), now, chat_id),
                )
            row = await tx.one("SELECT * FROM chats WHERE chat_id = ?", (chat_id,))
        assert row is not None
        settings = ChatSettings.from_row(row)
        self._chats[chat_id] = settings
        return settings

    async def digest_chats(self) -> list[ChatSettings]:
        """Chats with a daily digest turned on that the bot can still reach."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM chats WHERE digest_time IS NOT NULL AND reachable = 1"
                " ORDER BY chat_id"
            )
        return [ChatSettings.from_row(row) for row in rows]

    # Pending /scan choices -----------------------------------------------------------------

    async def set_pending_scan(
        self, chat_id: int, user_id: int, caption: CaptionInfo, expires_at: float
    ) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO pending_scans VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat_id, user_id) "
                "DO UPDATE SET collection_ref = excluded.collection_ref, "
                "manual_fields = excluded.manual_fields, expires_at = excluded.expires_at",
                (
                    chat_id,
                    user_id,
                    caption.collection_ref or "",
                    json.dumps(caption.manual_fields),
                    expires_at,
                ),
            )

    async def clear_pending_scan(self, chat_id: int, user_id: int) -> bool:
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "DELETE FROM pending_scans WHERE chat_id = ? AND user_id = ?", (chat_id, user_id)
            )
        return n > 0

    @staticmethod
    async def _pending_scan(tx: Tx, chat_id: int, user_id: int, now: float) -> PendingScan | None:
        row = await tx.one(
            "SELECT * FROM pending_scans WHERE chat_id = ? AND user_id = ? AND expires_at > ?",
            (chat_id, user_id, now),
        )
        if row is None:
            return None
        return PendingScan(
            row["collection_ref"], json.loads(row["manual_fields"]), row["expires_at"]
        )

    # Intake --------------------------------------------------------------------------------

    async def add_photo(
        self,
        photo: NewPhoto,
        *,
        caption: CaptionInfo | None,
        problem: Problem | None,
        language: str,
        remove_background: bool,
        album_window: float,
        album_max_wait: float,
        now: float,
    ) -> AddResult:
        """Store one photo (single or album member) before anything else happens; returns once
        its transaction has committed.

        Album members join the submission of their (chat, media_group_id); each member restarts
        the quiet window, bounded by the first member's arrival plus `album_max_wait`.

        Group commit: photos that arrive while the writer is busy are stored together in one
        transaction (one fsync for many photos, which is what a burst of albums needs). If that
        transaction fails, each of its photos is retried alone, so one bad photo fails alone."""
        request = _PhotoRequest(
            photo, caption, problem, language, remove_background, album_window, album_max_wait, now
        )
        future: asyncio.Future[AddResult] = asyncio.get_running_loop().create_future()
        self._photo_queue.append((request, future))
        if self._photo_writer is None or self._photo_writer.done():
            self._photo_writer = asyncio.create_task(self._write_photos(), name="photo-writer")
        return await future

    async def _write_photos(self) -> None:
        while self._photo_queue:
            batch = self._photo_queue[:PHOTO_BATCH]
            del self._photo_queue[:PHOTO_BATCH]
            try:
                results = []
                async with self.db.transaction() as tx:
                    for request, _ in batch:
                        results.append(await self._add_photo_tx(tx, request))
            except Exception:
                for request, future in batch:
                    try:
                        async with self.db.transaction() as tx:
                            result = await self._add_photo_tx(tx, request)
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _add_photo_tx(self, tx: Tx, request: _PhotoRequest) -> AddResult:
        photo, caption, problem = request.photo, request.caption, request.problem
        now, album_window, album_max_wait = (
            request.now,
            request.album_window,
            request.album_max_wait,
        )
        language, remove_background = request.language, request.remove_background
        seen = await tx.one(
            "SELECT submission_id FROM photos WHERE chat_id = ? AND message_id = ?",
            (photo.chat_id, photo.message_id),
        )
        if seen is not None:
            return AddResult(seen[0], created=False, duplicate=True, late=False)
        row = None
        if photo.media_group_id:
            row = await tx.one(
                "SELECT * FROM submissions WHERE chat_id = ? AND media_group_id = ?",
                (photo.chat_id, photo.media_group_id),
            )
        late_batch = False
        if row is None and caption is None and problem is None:
            row = await tx.one(
                "SELECT * FROM submissions WHERE chat_id = ? AND user_id = ? AND collecting = 1"
                " AND state = ?",
                (photo.chat_id, photo.user_id, R.value),
            )
            if row is None:
                row = await self._next_batch(tx, photo, now)
                late_batch = row is not None
        created = row is None
        late = False
        if row is None:
            pending = None
            if caption is None or not caption.collection_ref:
                pending = await self._pending_scan(tx, photo.chat_id, photo.user_id, now)
            ref = pending.collection_ref if pending else None
            fields = pending.manual_fields if pending else {}
            if caption is not None:
                ref, fields = caption.collection_ref or ref, caption.manual_fields
            window = album_window if photo.media_group_id else 0.0
            sub_id = await tx.insert(
                "INSERT INTO submissions (chat_id, thread_id, message_id, user_id, user_name,"
                " media_group_id, collection_ref, manual_fields, caption_seen, remove_background,"
                " language, idempotency_key, state, next_action_at, gather_deadline, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    photo.chat_id,
                    photo.thread_id,
                    photo.message_id,
                    photo.user_id,
                    photo.user_name,
                    photo.media_group_id,
                    ref,
                    json.dumps(fields),
                    int(caption is not None),
                    int(remove_background),
                    language,
                    str(uuid.uuid4()),
                    R.value,
                    now + window,
                    now + album_max_wait,
                    now,
                    now,
                ),
            )
            assert sub_id is not None
        else:
            sub_id = int(row["id"])
            if row["collecting"]:
                pass  # an open /batch: submitted on /done or at its deadline
            elif row["state"] == R.value and row["next_action_at"] is not None:
                gather_until = min(now + album_window, row["gather_deadline"] or now)
                await tx.execute(
                    "UPDATE submissions SET next_action_at = MAX(next_action_at, ?),"
                    " message_id = MIN(message_id, ?), updated_at = ? WHERE id = ?",
                    (gather_until, photo.message_id, now, sub_id),
                )
            elif row["state"] == R.value:
                await tx.execute(
                    "UPDATE submissions SET message_id = MIN(message_id, ?) WHERE id = ?",
                    (photo.message_id, sub_id),
                )
            else:
                late = True
        await tx.execute(
            "INSERT INTO photos (submission_id, chat_id, message_id, product_key, file_id,"
            " file_unique_id, file_size, mime_type, file_name, media_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sub_id,
                photo.chat_id,
                photo.message_id,
                photo.media_group_id or str(photo.message_id),
                photo.file_id,
                photo.file_unique_id,
                photo.file_size,
                photo.mime_type,
                photo.file_name,
                secrets.token_urlsafe(16),
            ),
        )
        caption_ignored = False
        if not late and ((caption is not None and not created) or problem is not None):
            if caption is not None and row is not None and row["caption_seen"]:
                # A second caption in one album: the first applies; the sender is told.
                caption_ignored = (caption.collection_ref, caption.manual_fields) != (
                    row["collection_ref"],
                    json.loads(row["manual_fields"] or "{}"),
                )
            await tx.execute(
                "UPDATE submissions SET collection_ref = COALESCE(?, collection_ref),"
                " manual_fields = ?, caption_seen = 1, updated_at = ?"
                " WHERE id = ? AND caption_seen = 0 AND state = ?",
                (
                    caption.collection_ref if caption else None,
                    json.dumps(caption.manual_fields if caption else {}),
                    now,
                    sub_id,
                    R.value,
                ),
            )
            if problem is not None:
                await self._move(
                    tx, sub_id, "reject", now, problem=problem.dumps(), next_action_at=now
                )
        return AddResult(
            sub_id,
            created=created,
            duplicate=False,
            late=late,
            late_batch=late_batch,
            caption_ignored=caption_ignored,
        )

    async def _next_batch(self, tx: Tx, photo: NewPhoto, now: float) -> Any:
        """A photo just after this user's /batch stopped collecting (on /done or at its
        deadline; phones upload late): it starts the next batch in the same collection with
        the same fields, instead of being sent somewhere else or lost."""
        closed = await tx.one(
            "SELECT * FROM submissions WHERE chat_id = ? AND user_id = ?"
            " AND batch_closed_at > ? ORDER BY batch_closed_at DESC LIMIT 1",
            (photo.chat_id, photo.user_id, now - LATE_BATCH_SECONDS),
        )
        if closed is None:  # (album members joined their album above)
            return None
        duration = max(60.0, float(closed["gather_deadline"] or now) - float(closed["created_at"]))
        sub_id = await self._insert_batch(
            tx,
            chat_id=photo.chat_id,
            thread_id=photo.thread_id,
            message_id=photo.message_id,
            user_id=photo.user_id,
            user_name=photo.user_name,
            collection_id=closed["collection_id"],
            collection_name=closed["collection_name"],
            manual_fields=json.loads(closed["manual_fields"] or "{}"),
            language=closed["language"],
            remove_background=bool(closed["remove_background"]),
            deadline=now + duration,
            now=now,
        )
        return await tx.one("SELECT * FROM submissions WHERE id = ?", (sub_id,))

    async def open_batch_of(self, chat_id: int, user_id: int) -> Submission | None:
        """This user's /batch that is still collecting, if any."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT * FROM submissions WHERE chat_id = ? AND user_id = ? AND collecting = 1"
                " AND state = ?",
                (chat_id, user_id, R.value),
            )
        return Submission.from_row(row) if row else None

    async def open_batch(
        self,
        *,
        chat_id: int,
        thread_id: int | None,
        message_id: int,
        user_id: int,
        user_name: str,
        collection_id: str,
        collection_name: str,
        manual_fields: dict[str, Any],
        language: str,
        remove_background: bool,
        deadline: float,
        now: float,
    ) -> int:
        """Start collecting this user's next photos into one multi-product submission (each
        album or single photo is one product). An earlier open batch is closed and sent."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE submissions SET collecting = 0, batch_closed_at = ?, next_action_at = ?"
                " WHERE chat_id = ? AND user_id = ? AND collecting = 1 AND state = ?",
                (now, now, chat_id, user_id, R.value),
            )
            return await self._insert_batch(
                tx,
                chat_id=chat_id,
                thread_id=thread_id,
                message_id=message_id,
                user_id=user_id,
                user_name=user_name,
                collection_id=collection_id,
                collection_name=collection_name,
                manual_fields=manual_fields,
                language=language,
                remove_background=remove_background,
                deadline=deadline,
                now=now,
            )

    @staticmethod
    async def _insert_batch(
        tx: Tx,
        *,
        chat_id: int,
        thread_id: int | None,
        message_id: int,
        user_id: int,
        user_name: str,
        collection_id: str,
        collection_name: str,
        manual_fields: dict[str, Any],
        language: str,
        remove_background: bool,
        deadline: float,
        now: float,
    ) -> int:
        sub_id = await tx.insert(
            "INSERT INTO submissions (chat_id, thread_id, message_id, user_id, user_name,"
            " collection_ref, collection_id, collection_name, manual_fields, caption_seen,"
            " remove_background, language, idempotency_key, state, next_action_at,"
            " gather_deadline, created_at, updated_at, collecting)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            (
                chat_id,
                thread_id,
                message_id,
                user_id,
                user_name,
                collection_id,
                collection_id,
                collection_name,
                json.dumps(manual_fields),
                int(remove_background),
                language,
                str(uuid.uuid4()),
                R.value,
                deadline,
                deadline,
                now,
                now,
            ),
        )
        assert sub_id is not None
        return sub_id

    async def stop_collecting(self, sub_id: int, now: float) -> bool:
        """A /batch reached its deadline: no photo joins it any more (one that comes now
        starts the next batch), before its photos are read for sending."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET collecting = 0, batch_closed_at = ? WHERE id = ?"
                " AND collecting = 1",
                (now, sub_id),
            )
        return n == 1

    async def close_batch(self, chat_id: int, user_id: int, now: float) -> Submission | None:
        """/done: the open batch becomes due now. None when there is none (or it is empty)."""
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT * FROM submissions WHERE chat_id = ? AND user_id = ? AND collecting = 1"
                " AND state = ?",
                (chat_id, user_id, R.value),
            )
            if row is None:
                return None
            photos = await tx.one(
                "SELECT COUNT(*) FROM photos WHERE submission_id = ?", (row["id"],)
            )
            if not photos or not photos[0]:
                await tx.execute(
                    "UPDATE submissions SET state = ?, collecting = 0, next_action_at = NULL,"
                    " notified_at = ?, problem = ? WHERE id = ?",
                    (RJ.value, now, Problem("cancelled").dumps(), row["id"]),
                )
                return None
            await tx.execute(
                "UPDATE submissions SET collecting = 0, batch_closed_at = ?, next_action_at = ?,"
                " updated_at = ? WHERE id = ?",
                (now, now, now, row["id"]),
            )
        return Submission.from_row(row)

    async def choose_collection(
        self, sub_id: int, collection_id: str, collection_name: str, now: float
    ) -> bool:
        """Set the collection of a received submission (resolved, or picked by a button) and
        make it due now."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET collection_id = ?, collection_name = ?, next_action_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (collection_id, collection_name, now, now, sub_id, R.value),
            )
        return n == 1

    async def await_choice(self, sub_id: int, now: float) -> bool:
        """A received submission waits for the user to pick a collection: not due any more."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET next_action_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (now, sub_id, R.value),
            )
        return n == 1

    async def cancel_waiting(self, chat_id: int, user_id: int, now: float) -> int:
        """/cancel: drop this user's submissions that were not sent yet. No message is owed."""
        async with self.db.transaction() as tx:
            return await tx.execute(
                "UPDATE submissions SET state = ?, problem = ?, next_action_at = NULL,"
                " collecting = 0, notified_at = ?, updated_at = ?"
                " WHERE chat_id = ? AND user_id = ? AND state = ?",
                (RJ.value, Problem("cancelled").dumps(), now, now, chat_id, user_id, R.value),
            )

    # Transitions ---------------------------------------------------------------------------

    @staticmethod
    async def _move(tx: Tx, sub_id: int, name: str, now: float, **values: Any) -> bool:
        sources, target = TRANSITIONS[name]
        sets, bound = _assignments(values)
        marks = ", ".join("?" for _ in sources)
        n = await tx.execute(
            f"UPDATE submissions SET state = ?, updated_at = ?{sets}"  # noqa: S608 (column names are ours)
            f" WHERE id = ? AND state IN ({marks})",
            (target.value, now, *bound, sub_id, *(s.value for s in sources)),
        )
        return n == 1

    @staticmethod
    async def _move_all(tx: Tx, name: str, now: float, **values: Any) -> int:
        """The transition `name` for every submission in one of its source states."""
        sources, target = TRANSITIONS[name]
        sets, bound = _assignments(values)
        marks = ", ".join("?" for _ in sources)
        return await tx.execute(
            f"UPDATE submissions SET state = ?, updated_at = ?{sets}"  # noqa: S608 (column names are ours)
            f" WHERE state IN ({marks})",
            (target.value, now, *bound, *(s.value for s in sources)),
        )

    async def transition(self, sub_id: int, name: str, now: float, **values: Any) -> bool:
        async with self.db.transaction() as tx:
            return await self._move(tx, sub_id, name, now, **values)

    async def begin_submit(self, sub_id: int, now: float) -> bool:
        async with self.db.transaction() as tx:
            return await self._move(
                tx,
                sub_id,
                "begin_submit",
                now,
                attempts=_raw("attempts + 1"),
                next_action_at=None,
                collecting=0,
                requested_at=now,  # stored before the POST: reconciling looks from here
            )

    async def submit_retry(
        self, sub_id: int, error: str, retry_at: float, now: float, *, rate_limited: bool = False
    ) -> bool:
        """The request provably never reached Resell Scan: back to received, due later. A
        429 is a refusal, not a failure: it does not count as an attempt, and the time the
        refusals began is kept (the submission waits within a long deadline)."""
        if rate_limited:
            return await self.transition(
                sub_id,
                "submit_retry",
                now,
                last_error=error,
                next_action_at=retry_at,
                attempts=_raw("MAX(0, attempts - 1)"),
                rate_limited_since=_raw(f"COALESCE(rate_limited_since, {float(now)!r})"),
            )
        return await self.transition(
            sub_id,
            "submit_retry",
            now,
            last_error=error,
            next_action_at=retry_at,
            rate_limited_since=None,
        )

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
                (check_at, now, sub_id, RC.value),
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
                (json.dumps(product_ids), wait_until, wait_until or now, now, sub_id, RC.value),
            )
            if n != 1:
                return None
            rows = await tx.all(
                "SELECT event_id, batch_id, product_ids, results, summary FROM webhook_events"
                " WHERE applied = 0 AND product_ids IS NOT NULL ORDER BY received_at"
            )
            for row in rows:
                if set(json.loads(row["product_ids"])) & set(product_ids) and row["batch_id"]:
                    return await self._attach_event(tx, sub_id, row, now)
        return None

    async def _attach_event(self, tx: Tx, sub_id: int, event: Any, now: float) -> WebhookOutcome:
        """A completion for our products under a batch id we never got: adopt the batch id
        and apply the completion, in the caller's transaction."""
        await self._move(tx, sub_id, "attach", now, batch_id=event["batch_id"], submitted_at=now)
        await tx.execute(
            "UPDATE webhook_events SET applied = 1 WHERE event_id = ?", (event["event_id"],)
        )
        won = await self._complete(
            tx, sub_id, Counts.loads(event["summary"]), event["results"], "webhook", now
        )
        return WebhookOutcome("attached" if won else "already_done", sub_id)

    async def attach_batch(
        self, sub_id: int, batch_id: str, next_poll_at: float, now: float
    ) -> bool:
        """The products found by reconciling are being analysed as `batch_id` (started with
        POST /products/analyze): track it like any other batch."""
        return await self._submitted(sub_id, "attach", batch_id, next_poll_at, now)

    async def ask_user(self, sub_id: int, problem: Problem, now: float) -> bool:
        """The lookup itself failed: the user decides, told what was and was not found."""
        return await self.transition(
            sub_id, "ask", now, problem=problem.dumps(), next_action_at=now
        )

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

    async def resubmit(self, sub_id: int, now: float) -> bool:
        """The user chose to send an uncertain submission again (same idempotency key)."""
        return await self.transition(
            sub_id,
            "resubmit",
            now,
            next_action_at=now,
            notify_claimed_at=None,
            notified_at=None,
            problem=None,
            parts_sent=0,
            notify_attempts=0,
        )

    async def mark_submitted(
        self, sub_id: int, batch_id: str, next_poll_at: float, now: float
    ) -> bool:
        """Store the batch id. If a webhook for this batch arrived first, apply it now.
        Returns True when that made the submission completed at once."""
        return await self._submitted(sub_id, "mark_submitted", batch_id, next_poll_at, now)

    async def _submitted(
        self, sub_id: int, transition: str, batch_id: str, next_poll_at: float, now: float
    ) -> bool:
        async with self.db.transaction() as tx:
            moved = await self._move(
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
            early = await tx.one(
                "SELECT event_id, results, summary FROM webhook_events"
                " WHERE batch_id = ? AND applied = 0 ORDER BY received_at LIMIT 1",
                (batch_id,),
            )
            if early is None:
                return False
            done = await self._complete(
                tx, sub_id, Counts.loads(early["summary"]), early["results"], "webhook", now
            )
            await tx.execute(
                "UPDATE webhook_events SET applied = 1 WHERE event_id = ?", (early["event_id"],)
            )
            return done

    async def defer(self, sub_id: int, at: float | None, error: str | None = None) -> bool:
        """Look at an open submission again at `at` (None: only when something wakes it)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET next_action_at = ?, last_error = COALESCE(?, last_error)"
                " WHERE id = ? AND notified_at IS NULL",
                (at, error, sub_id),
            )
        return n == 1

    async def set_progress_message(self, sub_id: int, message_id: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE submissions SET progress_message_id = ? WHERE id = ?", (message_id, sub_id)
            )

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
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET raw_status = ?, total_products = ?,"
                " successful_products = ?, failed_products = ?, progress = ?,"
                " poll_count = poll_count + 1, unreadable_count = 0, next_action_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (raw_status, *counts, progress, next_poll_at, now, sub_id, SD.value),
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
                (next_poll_at, error[:300], now, sub_id, SD.value),
            )
        return n == 1

    async def note_progress_shown(self, sub_id: int, progress: float, now: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE submissions SET progress_shown = ?, progress_edited_at = ? WHERE id = ?",
                (progress, now, sub_id),
            )

    @staticmethod
    async def _complete(
        tx: Tx, sub_id: int, counts: Counts, results: str, source: str, now: float
    ) -> bool:
        return await Store._move(
            tx,
            sub_id,
            "complete",
            now,
            raw_status=counts.status,
            total_products=counts.total,
            successful_products=counts.successful,
            failed_products=counts.failed,
            progress=100.0,
            results=results,
            completed_at=now,
            completed_by=source,
            next_action_at=now,
        )

    async def complete(
        self, sub_id: int, results: Any, counts: Counts, source: str, now: float
    ) -> bool:
        """submitted -> completed with the results as Resell Scan sent them (any JSON) and the
        counts the caller read from them; False if someone else completed it first."""
        async with self.db.transaction() as tx:
            return await self._complete(tx, sub_id, counts, json.dumps(results), source, now)

    async def apply_webhook(
        self,
        event_id: str,
        event: str,
        batch_id: str | None,
        raw: str,
        *,
        results: Any,
        counts: Counts,
        now: float,
        product_ids: Sequence[str] = (),
    ) -> WebhookOutcome:
        """Store the event (its raw body, whatever its shape) and apply its completion in one
        transaction.

        A duplicate id changes nothing. An event for a batch we do not know yet is kept and
        applied when `mark_submitted` stores that batch id; `results` is the part of the body
        that describes the batch, `counts` what the caller read from it."""
        async with self.db.transaction() as tx:
            inserted = await tx.execute(
                "INSERT INTO webhook_events (event_id, event, batch_id, payload, received_at,"
                " results, summary, product_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (
                    event_id,
                    event,
                    batch_id,
                    raw,
                    now,
                    json.dumps(results),
                    counts.dumps(),
                    json.dumps(list(product_ids)) if product_ids else None,
                ),
            )
            if not inserted:
                return WebhookOutcome("duplicate")
            if batch_id is None:
                return WebhookOutcome("unknown_batch")
            row = await tx.one("SELECT id FROM submissions WHERE batch_id = ?", (batch_id,))
            if row is None and product_ids:
                # A batch we never got the id of: ours if it carries the products we found
                # while reconciling an ambiguous upload.
                wanted = set(product_ids)
                for candidate in await tx.all(
                    "SELECT id, product_ids FROM submissions WHERE state = ?"
                    " AND product_ids IS NOT NULL",
                    (RC.value,),
                ):
                    if wanted & set(json.loads(candidate["product_ids"])):
                        event_row = {
                            "event_id": event_id,
                            "batch_id": batch_id,
                            "results": json.dumps(results),
                            "summary": counts.dumps(),
                        }
                        return await self._attach_event(tx, candidate["id"], event_row, now)
            if row is None:
                return WebhookOutcome("unknown_batch")
            await tx.execute(
                "UPDATE webhook_events SET applied = 1 WHERE event_id = ?", (event_id,)
            )
            won = await self._complete(tx, row["id"], counts, json.dumps(results), "webhook", now)
            return WebhookOutcome("applied" if won else "already_done", row["id"])

    # Notification claim --------------------------------------------------------------------

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
                "UPDATE submissions SET notify_claimed_at = NULL, notify_attempts ="
                " notify_attempts + 1, last_error = ?, next_action_at = ?, updated_at = ?"
                " WHERE id = ? AND notify_claimed_at IS NOT NULL AND notified_at IS NULL",
                (error, retry_at, now, sub_id),
            )
        return n == 1

    async def mark_notified(self, sub_id: int, now: float, error: str | None = None) -> bool:
        """The message was sent (or cannot ever be: `error` says why). completed -> notified."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET notified_at = ?, next_action_at = NULL, updated_at = ?,"
                " last_error = COALESCE(?, last_error),"
                " state = CASE state WHEN ? THEN ? ELSE state END"
                " WHERE id = ? AND notify_claimed_at IS NOT NULL AND notified_at IS NULL",
                (now, now, error, C.value, N.value, sub_id),
            )
        return n == 1

    # Acting on results, fixing submissions --------------------------------------------------

    async def note_message(self, sub_id: int, **ids: int | str | None) -> None:
        """Remember a message the bot sent for this submission (results_message_id,
        prompt_message_id) or the reaction it set (reaction)."""
        allowed = {"results_message_id", "prompt_message_id", "reaction", "progress_message_id"}
        if set(ids) - allowed:
            raise ValueError(f"unknown message fields: {sorted(set(ids) - allowed)}")
        sets = ", ".join(f"{k} = ?" for k in ids)
        async with self.db.transaction() as tx:
            await tx.execute(
                f"UPDATE submissions SET {sets} WHERE id = ?",  # noqa: S608 (names from the allowlist above)
                (*ids.values(), sub_id),
            )

    async def by_prompt(self, chat_id: int, message_id: int) -> Submission | None:
        """The submission a bot message (a rejection or a question) was about."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT * FROM submissions WHERE chat_id = ? AND prompt_message_id = ?",
                (chat_id, message_id),
            )
        return Submission.from_row(row) if row else None

    async def by_photo(self, chat_id: int, message_id: int) -> Submission | None:
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT s.* FROM photos p JOIN submissions s ON s.id = p.submission_id"
                " WHERE p.chat_id = ? AND p.message_id = ?",
                (chat_id, message_id),
            )
        return Submission.from_row(row) if row else None

    async def previous_analysis(self, sub: Submission) -> Submission | None:
        """The latest earlier submission in this chat that analysed every one of this one's
        photos (by Telegram's file_unique_id); None when any photo is new."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT p.file_unique_id, MAX(s.id) AS earlier FROM photos p"
                " JOIN photos q ON q.chat_id = p.chat_id AND q.file_unique_id = p.file_unique_id"
                " JOIN submissions s ON s.id = q.submission_id"
                " WHERE p.submission_id = ? AND q.submission_id != ? AND s.state = ?"
                " AND s.batch_id IS NOT NULL GROUP BY p.file_unique_id",
                (sub.id, sub.id, N.value),
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

    async def hold_duplicate(self, sub_id: int, earlier: int, now: float) -> bool:
        """Nothing is uploaded until the user chooses (show the old results, or analyse)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET duplicate_of = ?, next_action_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (earlier, now, sub_id, R.value),
            )
        return n == 1

    async def pass_guard(self, sub_id: int, now: float) -> bool:
        """ "Analyse again": the duplicate is sent after all."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET guard_passed = 1, next_action_at = ?, updated_at = ?"
                " WHERE id = ? AND state = ? AND duplicate_of IS NOT NULL AND guard_passed = 0",
                (now, now, sub_id, R.value),
            )
        return n == 1

    async def drop(self, sub_id: int, now: float) -> bool:
        """The user let a waiting submission go (nothing sent, no message owed)."""
        return await self.transition(
            sub_id,
            "reject",
            now,
            problem=Problem("cancelled").dumps(),
            next_action_at=None,
            collecting=0,
            notified_at=now,
        )

    async def await_fields(self, sub_id: int, problem: Problem, now: float) -> bool:
        """Keep the photos and wait for the missing fields (a reply to the question)."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE submissions SET problem = ?, next_action_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = ?",
                (problem.dumps(), now, sub_id, R.value),
            )
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
            if sub.state is RJ:
                values.update(
                    next_action_at=now,
                    notify_claimed_at=None,
                    notified_at=None,
                    parts_sent=0,
                    notify_attempts=0,
                    prompt_message_id=None,
                )
                moved = await self._move(tx, sub_id, "revise", now, **values)
            elif sub.state is R and not sub.collecting:
                values["next_action_at"] = _raw(f"MAX(COALESCE(next_action_at, 0), {now!r})")
                sets, bound = _assignments(values)
                moved = (
                    await tx.execute(
                        f"UPDATE submissions SET updated_at = ?{sets}"  # noqa: S608 (our column names)
                        " WHERE id = ? AND state = ?",
                        (now, *bound, sub_id, R.value),
                    )
                    == 1
                )
            else:
                return None
            if not moved:
                return None
            fresh = await tx.one("SELECT * FROM submissions WHERE id = ?", (sub_id,))
        return Submission.from_row(fresh) if fresh else None

    async def start_retry(
        self,
        original: Submission,
        batch_id: str,
        product_ids: list[str],
        next_poll: float,
        now: float,
    ) -> int | None:
        """"Retry failed": the failed products are being analysed again as `batch_id`. A new
        submission tracks that batch and answers the original photos; the original's button
        is used up. None when it was used already (a second press changes nothing)."""  # fmt: skip
        async with self.db.transaction() as tx:
            used = await tx.execute(
                "UPDATE submissions SET retried_at = ? WHERE id = ? AND retried_at IS NULL",
                (now, original.id),
            )
            if not used:
                return None
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
                    SD.value,
                    batch_id,
                    now,
                    next_poll,
                    now,
                    now,
                    original.id,
                    json.dumps(product_ids),
                ),
            )

    # Queries -------------------------------------------------------------------------------

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

    async def photos(self, sub_id: int) -> list[Photo]:
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM photos WHERE submission_id = ? ORDER BY message_id", (sub_id,)
            )
        return [Photo.from_row(r) for r in rows]

    # The live board ----------------------------------------------------------------------------

    async def board_items(self, chat_id: int, thread_id: int | None) -> list[Submission]:
        """What a chat's (topic's) board lists: analyses not finished yet."""
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM submissions WHERE chat_id = ? AND thread_id IS ?"
                " AND (state IN (?, ?, ?, ?) OR (state = ? AND (next_action_at IS NOT NULL"
                " OR collecting = 1))) ORDER BY id LIMIT 40",
                (chat_id, thread_id, SI.value, SD.value, RC.value, C.value, R.value),
            )
        return [Submission.from_row(r) for r in rows]

    async def board(self, chat_id: int, thread: int) -> tuple[int | None, str | None]:
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT message_id, text FROM boards WHERE chat_id = ? AND thread_id = ?",
                (chat_id, thread),
            )
        return (row["message_id"], row["text"]) if row else (None, None)

    async def set_board(
        self, chat_id: int, thread: int, message_id: int | None, text: str | None
    ) -> None:
        async with self.db.transaction() as tx:
            if message_id is None:
                await tx.execute(
                    "DELETE FROM boards WHERE chat_id = ? AND thread_id = ?", (chat_id, thread)
                )
                return
            await tx.execute(
                "INSERT INTO boards (chat_id, thread_id, message_id, text) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (chat_id, thread_id) DO UPDATE SET message_id = excluded.message_id,"
                " text = excluded.text",
                (chat_id, thread, message_id, text),
            )

    async def photo_counts(self, sub_ids: Sequence[int]) -> dict[int, int]:
        if not sub_ids:
            return {}
        marks = ", ".join("?" for _ in sub_ids)
        async with self.db.reading() as tx:
            rows = await tx.all(
                f"SELECT submission_id, COUNT(*) FROM photos WHERE submission_id IN ({marks})"  # noqa: S608 (placeholders only)
                " GROUP BY submission_id",
                tuple(sub_ids),
            )
        return {row[0]: row[1] for row in rows}

    async def photo_by_media_key(self, media_key: str) -> tuple[Photo, Submission] | None:
        async with self.db.reading() as tx:
            row = await tx.one("SELECT * FROM photos WHERE media_key = ?", (media_key,))
            if row is None:
                return None
            sub = await tx.one("SELECT * FROM submissions WHERE id = ?", (row["submission_id"],))
        assert sub is not None
        return Photo.from_row(row), Submission.from_row(sub)

    async def due(self, now: float, limit: int = 100) -> list[Submission]:
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM submissions WHERE next_action_at IS NOT NULL AND next_action_at <= ?"
                " ORDER BY next_action_at LIMIT ?",
                (now, limit),
            )
        return [Submission.from_row(r) for r in rows]

    async def next_due_at(self) -> float | None:
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT MIN(next_action_at) FROM submissions WHERE next_action_at IS NOT NULL"
            )
        return float(row[0]) if row and row[0] is not None else None

    async def recover(self, now: float, reconcile_at: float) -> dict[str, int]:
        """At start: whatever was mid-send when the process died.

        `submitting` becomes `reconciling` (createAndAnalyze may have been processed: the
        bot looks its photos up at `reconcile_at`), and notification claims of the dead
        process are released."""
        async with self.db.transaction() as tx:
            reconciling = await self._move_all(
                tx,
                "reconcile",
                now,
                last_error="interrupted while sending to Resell Scan",
                next_action_at=reconcile_at,
                reconcile_checks=0,
            )
            released = await tx.execute(
                "UPDATE submissions SET notify_claimed_at = NULL, next_action_at = ?"
                " WHERE notify_claimed_at IS NOT NULL AND notified_at IS NULL",
                (now,),
            )
            counts = await tx.all(
                "SELECT state, COUNT(*) FROM submissions WHERE state IN (?, ?, ?) GROUP BY state",
                (R.value, SD.value, C.value),
            )
        out = {"reconciling": reconciling, "claims_released": released}
        out.update({row[0]: row[1] for row in counts})
        return out

    async def for_chat(
        self, chat_id: int, *, open_limit: int = 20, finished_limit: int = 5
    ) -> tuple[list[Submission], list[Submission]]:
        async with self.db.reading() as tx:
            # Open: still moving, or waiting for the user (an uncertain upload not yet
            # resolved is open too: its message points to /status). Completed ones have their
            # results (the reply may be on its way): finished, for the user.
            open_rows = await tx.all(
                "SELECT * FROM submissions WHERE chat_id = ? AND state IN (?, ?, ?, ?, ?)"
                " ORDER BY id DESC LIMIT ?",
                (chat_id, R.value, SI.value, SD.value, RC.value, U.value, open_limit),
            )
            done_rows = await tx.all(
                "SELECT * FROM submissions WHERE chat_id = ? AND state IN (?, ?, ?, ?, ?)"
                " AND batch_id IS NOT NULL ORDER BY COALESCE(completed_at, updated_at) DESC"
                " LIMIT ?",
                (chat_id, C.value, N.value, F.value, E.value, RJ.value, finished_limit),
            )
        return (
            [Submission.from_row(r) for r in open_rows],
            [Submission.from_row(r) for r in done_rows],
        )

    async def count_by_state(self) -> dict[str, int]:
        async with self.db.reading() as tx:
            rows = await tx.all("SELECT state, COUNT(*) FROM submissions GROUP BY state")
        return {row[0]: row[1] for row in rows}

    async def prune(self, *, events_before: float, unknown_before: float) -> dict[str, int]:
        """Forget applied webhook events, and events for batches we never knew (started from
        the dashboard on the same account), older than the given times."""
        async with self.db.transaction() as tx:
            events = await tx.execute(
                "DELETE FROM webhook_events WHERE received_at < ? AND applied = 1",
                (events_before,),
            )
            unknown = await tx.execute(
                "DELETE FROM webhook_events WHERE received_at < ? AND applied = 0",
                (unknown_before,),
            )
        return {"events": events, "unknown_events": unknown}

    async def unknown_events(self) -> int:
        """Webhook events kept for batches no submission has (yet)."""
        async with self.db.reading() as tx:
            row = await tx.one("SELECT COUNT(*) FROM webhook_events WHERE applied = 0")
        return int(row[0]) if row else 0


class _raw(str):
    """A SQL expression to use as a column's new value instead of a bound parameter."""

    __slots__ = ()


def _assignments(values: dict[str, Any]) -> tuple[str, list[Any]]:
    """`, col = ?` (or `= <expression>` for _raw values) for each value, and the bound ones."""
    sets = "".join(
        f", {k} = {v}" if isinstance(v, _raw) else f", {k} = ?" for k, v in values.items()
    )
    return sets, [v for v in values.values() if not isinstance(v, _raw)]
