"""Telegram updates through the durable inbox (storage/inbox.py): nothing delivered is lost.

python-telegram-bot's `Updater` confirms updates to Telegram (the next getUpdates offset) as
soon as it has queued them in memory, before any handler stored anything; a crash then loses
updates Telegram never sends again. So the bot runs its own getUpdates loop: each fetched batch
is stored raw in SQLite in one transaction, and only then is the next offset asked for. In
webhook mode the update is stored before the 200 goes back.

Stored updates are handed to PTB's `Application.process_update` in arrival order per chat
(different chats run concurrently; an album's members still gather across updates), and marked
done once their handlers ran; marks are written in groups. After a crash, undone rows are
processed again on start, which the handlers tolerate (photos are deduplicated by message,
state changes are conditional transitions).

A handler that fails on something that passes (SQLite busy past its timeout, a network error
talking to Telegram) is run again with the same update, with a backoff, up to
MAX_HANDLER_ATTEMPTS times, before the error handler tells the user that something went wrong
(`retry_transient`, which the error handler asks; the attempt rides in a context variable,
since PTB runs the error handler inside `process_update`). A done mark that cannot be written
is kept and written again (with a backoff) instead of being lost, which would hand the update
over again at the next start (a command answered twice).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from telegram import Update
from telegram.error import BadRequest, InvalidToken, NetworkError, TelegramError, TimedOut
from telegram.ext import Application

from storage import Inbox, InboxUpdate, NewUpdate

log = logging.getLogger(__name__)

ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
MAX_BACKOFF = 30.0
GET_UPDATES_READ_MARGIN = 10.0  # seconds beyond the long-poll timeout before giving up
GET_UPDATES_LIMIT = 100  # getUpdates answers at most this many (Bot API default and maximum)
MAX_HELD = 1000  # a burst longer than this is processed in parts, not held back indefinitely
# Updates handed to handlers and not finished: past this, the rest wait in SQLite (read back
# in pages as these finish), so a flood of updates costs no memory or tasks per update.
MAX_DISPATCHED = 512
MAX_HANDLER_ATTEMPTS = 4  # an update whose handler keeps failing transiently, then the message
HANDLER_RETRY_FIRST = 0.5  # seconds before the second attempt; doubled each time (jittered)
HANDLER_RETRY_MAX = 8.0
FLUSH_RETRY_FIRST = 0.2  # seconds before a failed write of done marks is tried again
FLUSH_RETRY_MAX = 10.0


def is_transient(error: BaseException) -> bool:
    """A failure that passes by itself: SQLite busy or locked (another connection held the
    database past the busy timeout), a network error or timeout talking to Telegram."""
    if isinstance(error, sqlite3.OperationalError):
        text = str(error).lower()
        return "locked" in text or "busy" in text
    return isinstance(error, TimedOut | NetworkError) and not isinstance(error, BadRequest)


@dataclass
class Attempt:
    """One run of the handlers for an update; the error handler sets `retry`."""

    number: int
    last: bool
    retry: bool = False


_ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "inbox_attempt", default=None
)


def retry_transient(error: BaseException | None) -> bool:
    """For the error handler: True if `error` is transient and the update will be handled
    again (so the user is told nothing yet); False if this was the last attempt, the error
    will not pass, or the update did not come through the inbox."""
    attempt = _ATTEMPT.get()
    if attempt is None or attempt.last or error is None or not is_transient(error):
        return False
    attempt.retry = True
    return True


def chat_of(payload: dict[str, Any]) -> int | None:
    """The chat an update belongs to (its ordering key), read from the raw JSON."""
    for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
        message = payload.get(key)
        if isinstance(message, dict):
            chat = message.get("chat")
            return chat.get("id") if isinstance(chat, dict) else None
    query = payload.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            chat_id = message["chat"].get("id")
            return chat_id if isinstance(chat_id, int) else None
        sender = query.get("from")
        return sender.get("id") if isinstance(sender, dict) else None
    return None


def forget_persistence_marks(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """PTB (22.x) marks the chat and user of every update it processes for its persistence
    and empties those sets only when it writes to a persistence; without one (this bot keeps
    its state in SQLite) they grow by every chat and user ever seen: about 100 bytes per
    stranger, 10 MB for 100,000. Empty them after each update (they are PTB's own; the
    version is locked, and tests/test_inbox_order.py checks they stay empty)."""
    if application.persistence is None:
        application._chat_ids_to_be_updated_in_persistence.clear()
        application._user_ids_to_be_updated_in_persistence.clear()


class UpdateInbox:
    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        inbox: Inbox,
        *,
        poll_timeout: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.application = application
        self.inbox = inbox
        self.poll_timeout = poll_timeout
        self.clock = clock
        self.sleep = sleep  # the backoffs between attempts (tests shorten them)
        self.rng = rng or random.Random()
        self._queues: dict[Any, collections.deque[InboxUpdate]] = {}
        self._workers: dict[Any, asyncio.Task[None]] = {}
        self._done: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._more_waiting = False  # the last getUpdates came back full: more are queued
        self._held: list[InboxUpdate] = []  # stored, waiting for the end of the burst
        self._resumed = False  # resume() has run: new updates are handled as they come
        self._early: list[InboxUpdate] = []  # stored before resume() ran
        self._quiet = asyncio.Event()  # no burst being fetched, nothing stored waits
        self._quiet.set()
        self._dispatched = 0  # handed to handlers, not finished
        self._cursor: int | None = None  # back-pressure: rows from this id on wait in SQLite
        self._left_max = 0  # the highest row id left in SQLite by back-pressure
        self._refill: asyncio.Task[None] | None = None

    def _update_quiet(self) -> None:
        if self._more_waiting or self._dispatched or self._cursor is not None:
            self._quiet.clear()
        else:
            self._quiet.set()

    async def quiet(self) -> None:
        """Return once no burst of updates is being fetched and every update stored has been
        handled (photos are in their submissions): the tracker's uploads wait for that
        (bounded), so intake keeps the processor and the database first."""
        await self._quiet.wait()

    # Intake ----------------------------------------------------------------------------------

    async def resume(self) -> int:
        """Hand over what a previous process stored but did not finish. Updates stored
        meanwhile (a Telegram webhook may deliver before this runs) are handled once: by this
        reading, or after it."""
        after, count = 0, 0
        seen: set[int] = set()
        while True:
            rows = await self.inbox.pending(after=after)
            if not rows:
                break
            self._dispatch(rows)
            seen.update(row.id for row in rows)
            count += len(rows)
            after = rows[-1].id
        self._resumed = True
        early, self._early = self._early, []
        self._dispatch([row for row in early if row.id not in seen])
        if count:
            log.info("processing %d stored updates left by the last run", count)
        return count

    async def store(
        self, payloads: Sequence[dict[str, Any]], *, hold: bool = False
    ) -> list[InboxUpdate]:
        """Commit raw updates (one transaction); the fresh ones are dispatched, or with `hold`
        kept back until the next call without it (a burst is stored first, then processed).
        Returns them."""
        batch = [
            NewUpdate(int(p["update_id"]), chat_of(p), json.dumps(p, ensure_ascii=False), p)
            for p in payloads
        ]
        fresh = await self.inbox.add(batch, self.clock())
        if not self._resumed:
            self._early.extend(fresh)  # resume() hands them over, once
            return fresh
        self._held.extend(fresh)
        if not hold or len(self._held) >= MAX_HELD:
            self._release_held()
        return fresh

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self._dispatch(held)

    def _burst_over(self) -> None:
        self._more_waiting = False
        self._release_held()
        self._update_quiet()

    def start_polling(self) -> None:
        self._stopping = False
        self._poller = asyncio.create_task(self._poll_loop(), name="getUpdates")

    async def _poll_loop(self) -> None:
        bot = self.application.bot
        backoff = 1.0
        while not self._stopping:
            try:
                await bot.delete_webhook()  # getUpdates is refused while a webhook is set
                break
            except InvalidToken:
                log.error("Telegram refused the bot token; no updates")
                return
            except TelegramError as exc:
                log.warning("deleteWebhook failed (%s); retry in %.0fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
        offset: int | None = None  # None: Telegram resends everything not yet confirmed
        backoff = 1.0
        while not self._stopping:
            try:
                updates = await self._get_updates(offset)
            except TimedOut:
                self._burst_over()
                continue
            except InvalidToken:
                log.error("Telegram refused the bot token; no more updates")
                self._burst_over()  # what was stored is still handled
                return
            except TelegramError as exc:
                self._burst_over()
                log.warning("getUpdates failed (%s); retry in %.0fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            backoff = 1.0
            self._more_waiting = len(updates) >= GET_UPDATES_LIMIT
            self._update_quiet()
            if not updates:
                self._burst_over()  # it ended exactly at a full answer
                continue
            try:
                # A full answer means more are waiting: store them all before processing any,
                # so the burst is durable (and confirmed to Telegram) as fast as it arrives.
                await self.store(updates, hold=self._more_waiting)
            except Exception:
                # Not stored: do not confirm. The same updates come again with this offset.
                log.exception("storing %d updates failed; fetching them again", len(updates))
                await asyncio.sleep(1.0)
                continue
            # Only now: the next getUpdates tells Telegram these are delivered.
            offset = max(int(u["update_id"]) for u in updates) + 1

    async def _get_updates(self, offset: int | None) -> list[dict[str, Any]]:
        """getUpdates as the JSON Telegram sent: the inbox stores it as it came, so PTB's
        parsing into `Update` objects (and back, to store them) is skipped here; each update
        is parsed once, when processed. PTB's own request for getUpdates (its long-poll read
        timeout) is used, through `Bot._post`, the one call `get_updates` makes before
        parsing (`do_api_request` would warn that `get_updates` exists)."""
        bot = self.application.bot
        # In a burst, ask without waiting: a burst that ends exactly at a full answer must not
        # sit held for a whole long poll.
        timeout = 0 if self._more_waiting else self.poll_timeout
        data: dict[str, Any] = {"timeout": timeout, "allowed_updates": ALLOWED_UPDATES}
        if offset is not None:
            data["offset"] = offset
        read_timeout = self.poll_timeout + GET_UPDATES_READ_MARGIN
        result = await bot._post("getUpdates", data, read_timeout=read_timeout)
        if not isinstance(result, list):
            raise TelegramError(f"getUpdates answered {type(result).__name__}, not a list")
        return [u for u in result if isinstance(u, dict) and "update_id" in u]

    # Processing ------------------------------------------------------------------------------

    def _dispatch(self, rows: Sequence[InboxUpdate], *, refilling: bool = False) -> None:
        """Hand rows to one worker per chat (in order within a chat), at most
        MAX_DISPATCHED at a time: the rest stay in SQLite and `_refill_later` reads them back
        in order as room frees (back-pressure)."""
        for index, row in enumerate(rows):
            if not refilling and (self._cursor is not None or self._dispatched >= MAX_DISPATCHED):
                rest = rows[index:]
                first = min(r.id for r in rest)
                self._cursor = first if self._cursor is None else min(self._cursor, first)
                self._left_max = max(self._left_max, max(r.id for r in rest))
                break
            self._dispatched += 1
            key = row.chat_id if row.chat_id is not None else ("update", row.update_id)
            self._queues.setdefault(key, collections.deque()).append(row)
            if key not in self._workers:
                self._idle.clear()
                self._workers[key] = asyncio.create_task(self._work(key), name=f"chat-{key}")
        self._update_quiet()

    async def _work(self, key: Any) -> None:
        queue = self._queues[key]
        try:
            while queue:
                row = queue.popleft()
                if not await self._handle(row):
                    # Stopping while a transient failure waits for its next attempt: this
                    # update and the chat's later ones stay undone, handled in order at the
                    # next start.
                    self._dispatched -= 1 + len(queue)
                    queue.clear()
                    break
                self._mark_done(row.id)
                self._dispatched -= 1
                if self._cursor is not None and self._dispatched <= MAX_DISPATCHED // 2:
                    self._refill_later()
                if not self._dispatched:
                    self._update_quiet()
        finally:
            del self._workers[key]
            self._queues.pop(key, None)
            if not self._workers:
                self._idle.set()
            self._update_quiet()

    async def _handle(self, row: InboxUpdate) -> bool:
        """Run the handlers for one update, again while they fail transiently (the error
        handler says so through `retry_transient`); False if it must stay undone."""
        number = 0
        while True:
            number += 1
            attempt = Attempt(number, last=number >= MAX_HANDLER_ATTEMPTS)
            token = _ATTEMPT.set(attempt)
            try:
                update = Update.de_json(row.payload, self.application.bot)
                await self.application.process_update(update)
                forget_persistence_marks(self.application)
            except Exception:
                # process_update hands handler errors to the error handler; this is only
                # an update PTB cannot even parse. Done: retrying would fail the same way.
                log.exception("update %d could not be processed", row.update_id)
                return True
            finally:
                _ATTEMPT.reset(token)
            if not attempt.retry:
                return True
            if self._stopping:
                return False
            ceiling = min(HANDLER_RETRY_MAX, HANDLER_RETRY_FIRST * 2 ** (number - 1))
            delay = self.rng.uniform(ceiling / 2, ceiling)
            log.warning(
                "update %d failed on something that passes; attempt %d of %d in %.1fs",
                row.update_id,
                number + 1,
                MAX_HANDLER_ATTEMPTS,
                delay,
            )
            await self.sleep(delay)

    def _refill_later(self) -> None:
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._refill_rows(), name="inbox-refill")

    async def _refill_rows(self) -> None:
        """Read back, in order, the updates back-pressure left in SQLite."""
        while self._cursor is not None and not self._stopping:
            room = MAX_DISPATCHED - self._dispatched
            if room <= 0:
                return  # a finishing update calls again
            cursor = self._cursor
            try:
                rows = await self.inbox.pending(after=cursor - 1, limit=room)
            except Exception:
                log.exception("reading stored updates back failed; trying again")
                await asyncio.sleep(1.0)
                continue
            if rows:
                self._cursor = rows[-1].id + 1
                self._dispatch(rows, refilling=True)
            elif self._left_max < cursor:
                self._cursor = None  # caught up: nothing was left behind since this read
                self._update_quiet()
            else:
                await asyncio.sleep(0.01)  # left behind while this read ran: read again

    def _mark_done(self, row_id: int) -> None:
        self._done.append(row_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="inbox-done")

    async def _flush(self, *, once: bool = False) -> None:
        """Group commit of done marks: whatever finished meanwhile goes in one transaction.
        A crash before this only means those updates are processed once more. A failed
        write keeps its marks and is tried again with a backoff (`once`: not again)."""
        delay = FLUSH_RETRY_FIRST
        while self._done:
            ids, self._done = self._done, []
            try:
                await self.inbox.mark_done(ids, self.clock())
            except BaseException as exc:
                self._done = ids + self._done  # kept: written with the next try
                if not isinstance(exc, Exception):
                    raise  # cancelled (stopping): stop() writes them
                log.exception("marking %d updates done failed; trying again", len(ids))
                if once:
                    return
                await self.sleep(delay)
                delay = min(FLUSH_RETRY_MAX, delay * 2)
            else:
                delay = FLUSH_RETRY_FIRST

    # Lifecycle -------------------------------------------------------------------------------

    async def stop(self, grace: float = 5.0) -> None:
        """Stop fetching; let updates being processed finish (bounded); write done marks."""
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        if self._flusher is not None:
            # A flusher retrying a failed write gets the grace too, then one last try: what
            # still fails is handled once more at the next start.
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout=grace)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._flush(once=True)
