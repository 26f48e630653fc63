"""Intake: how a photo comes in and which submission it joins.

Every photo is stored before anything else happens (Telegram will not send it again), in a
group commit: photos that arrive while the writer is busy share one transaction. A photo
joins, in this order:
- the submission of its album (chat, media_group_id); each member restarts the album's quiet
  window, bounded by the first member's arrival plus the maximum wait;
- its sender's /batch that is still collecting (a multi-product submission, sent on /done or
  at its deadline);
- the sender's next /batch, started for it when it comes just after one closed (phones upload
  late), with the same collection and fields;
- or a new submission, which takes the sender's pending /scan choice (a collection and fields
  chosen before the photo) unless its caption says otherwise.
A submission is created `received`; from then on only transitions change its state (a caption
problem rejects it at once, /done on an empty /batch cancels it). Also here: /batch itself
(open, stop collecting, /done), pending /scan choices, and reads of stored photos.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Database, Tx
from storage.models import CaptionInfo, NewPhoto, PendingScan, Photo, Problem, State, Submission
from storage.transitions import move

PHOTO_BATCH = 64  # photos per group-commit transaction
LATE_BATCH_SECONDS = 20.0  # a photo this soon after a /batch closed starts the next one


@dataclass(frozen=True)
class AddResult:
    submission_id: int
    created: bool  # this photo opened a new submission
    duplicate: bool  # this exact message was stored before (redelivered update)
    late: bool  # an album member that arrived after its album was submitted
    late_batch: bool = False  # came just after the user's /batch closed: opened the next one
    caption_ignored: bool = False  # its album already had another caption, which applies


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


class Intake:
    """The `photos` and `pending_scans` tables, and the submissions they open; see the
    module doc."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._photo_queue: list[tuple[_PhotoRequest, asyncio.Future[AddResult]]] = []
        self._photo_writer: asyncio.Task[None] | None = None

    # Photos --------------------------------------------------------------------------------

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

                async def write(tx: Tx, batch: list[Any] = batch) -> list[AddResult]:
                    return [await self._add_photo_tx(tx, request) for request, _ in batch]

                # One hop to the database's thread for the whole batch. Not fsynced: the
                # inbox holds each photo's update durably, not marked done before this
                # commit (a power loss hands it over again at the next start).
                results = await self.db.in_one_hop(write, durable=False)
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
            row = await _collecting(tx, photo.chat_id, photo.user_id)
            if row is None:
                row = await self._next_batch(tx, photo, now)
                late_batch = row is not None
        created = row is None
        late = False
        if row is None:
            pending = None
            if caption is None or not caption.collection_ref:
                pending = await _pending_scan(tx, photo.chat_id, photo.user_id, now)
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
                    State.RECEIVED.value,
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
            elif row["state"] == State.RECEIVED.value and row["next_action_at"] is not None:
                gather_until = min(now + album_window, row["gather_deadline"] or now)
                await tx.execute(
                    "UPDATE submissions SET next_action_at = MAX(next_action_at, ?),"
                    " message_id = MIN(message_id, ?), updated_at = ? WHERE id = ?",
                    (gather_until, photo.message_id, now, sub_id),
                )
            elif row["state"] == State.RECEIVED.value:
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
                    State.RECEIVED.value,
                ),
            )
            if problem is not None:
                await move(tx, sub_id, "reject", now, problem=problem.dumps(), next_action_at=now)
        return AddResult(
            sub_id,
            created=created,
            duplicate=False,
            late=late,
            late_batch=late_batch,
            caption_ignored=caption_ignored,
        )

    async def _next_batch(self, tx: Tx, photo: NewPhoto, now: float) -> sqlite3.Row | None:
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
        sub_id = await _insert_batch(
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

    async def photos(self, sub_id: int) -> list[Photo]:
        async with self.db.reading() as tx:
            rows = await tx.all(
                "SELECT * FROM photos WHERE submission_id = ? ORDER BY message_id", (sub_id,)
            )
        return [Photo.from_row(r) for r in rows]

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

    async def photo_by_media_key(self, media_key: str) -> tuple[Photo, State] | None:
        """The photo behind a media URL, and the state of its submission (one read: Resell
        Scan fetches every photo of every upload through this)."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT p.*, s.state AS submission_state FROM photos p"
                " JOIN submissions s ON s.id = p.submission_id WHERE p.media_key = ?",
                (media_key,),
            )
        if row is None:
            return None
        *photo, state = row  # the photo's columns, then its submission's state
        return Photo(**dict(zip(row.keys()[:-1], photo, strict=True))), State(state)

    async def album_gathering(self, chat_id: int, media_group_id: str) -> int | None:
        """The submission still gathering this album's photos (received, nothing sent)."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT id FROM submissions WHERE chat_id = ? AND media_group_id = ? AND state = ?",
                (chat_id, media_group_id, State.RECEIVED.value),
            )
        return int(row[0]) if row else None

    async def by_photo(self, chat_id: int, message_id: int) -> Submission | None:
        """The submission a photo message joined."""
        async with self.db.reading() as tx:
            row = await tx.one(
                "SELECT s.* FROM photos p JOIN submissions s ON s.id = p.submission_id"
                " WHERE p.chat_id = ? AND p.message_id = ?",
                (chat_id, message_id),
            )
        return Submission.from_row(row) if row else None

    # /batch ... /done ----------------------------------------------------------------------

    async def open_batch_of(self, chat_id: int, user_id: int) -> Submission | None:
        """This user's /batch that is still collecting, if any."""
        async with self.db.reading() as tx:
            row = await _collecting(tx, chat_id, user_id)
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
                (now, now, chat_id, user_id, State.RECEIVED.value),
            )
            return await _insert_batch(
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
        """/done: the open batch becomes due now. None when there is none (or it is empty:
        then it is cancelled, with no message owed)."""
        async with self.db.transaction() as tx:
            row = await _collecting(tx, chat_id, user_id)
            if row is None:
                return None
            photos = await tx.one(
                "SELECT COUNT(*) FROM photos WHERE submission_id = ?", (row["id"],)
            )
            if not photos or not photos[0]:
                await move(
                    tx,
                    row["id"],
                    "cancel",
                    now,
                    collecting=0,
                    next_action_at=None,
                    notified_at=now,
                    problem=Problem("cancelled").dumps(),
                )
                return None
            await tx.execute(
                "UPDATE submissions SET collecting = 0, batch_closed_at = ?, next_action_at = ?,"
                " updated_at = ? WHERE id = ?",
                (now, now, now, row["id"]),
            )
        return Submission.from_row(row)

    # Pending /scan choices -----------------------------------------------------------------

    async def set_pending_scan(
        self, chat_id: int, user_id: int, caption: CaptionInfo, expires_at: float
    ) -> None:
        """/scan: the collection and fields for this user's next photo, until `expires_at`."""
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


async def _collecting(tx: Tx, chat_id: int, user_id: int) -> sqlite3.Row | None:
    """The user's /batch that is still collecting."""
    return await tx.one(
        "SELECT * FROM submissions WHERE chat_id = ? AND user_id = ? AND collecting = 1"
        " AND state = ?",
        (chat_id, user_id, State.RECEIVED.value),
    )


async def _pending_scan(tx: Tx, chat_id: int, user_id: int, now: float) -> PendingScan | None:
    row = await tx.one(
        "SELECT * FROM pending_scans WHERE chat_id = ? AND user_id = ? AND expires_at > ?",
        (chat_id, user_id, now),
    )
    if row is None:
        return None
    return PendingScan(row["collection_ref"], json.loads(row["manual_fields"]), row["expires_at"])


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
    """A /batch submission, collecting until `deadline`."""
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
            State.RECEIVED.value,
            deadline,
            deadline,
            now,
            now,
        ),
    )
    assert sub_id is not None
    return sub_id
