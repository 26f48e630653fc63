"""Delivering the outbox's rows (storage/outbox.py), one at a time, without Telegram.

`Deliverer.deliver(row)` does what one row asks through the chat port (bot/chat.py), then
records the outcome in the same transaction that deletes the row: the message ids a
submission keeps, the parts of a notification sent, `notified`, and what follows (the
reaction saying how it ended, the "done" edit, the board). It decides what is no longer
worth sending when the row's turn comes: an "analysing" message whose results are owed
already, a reaction the chat does not allow, a question already answered.

It never waits for the chat's budget: the caller (bot/telegram/delivery.py) chooses which row
goes when, within Telegram's limits, and learns from the returned `Delivered` how many
messages counted, whether the row has more parts, and whether the chat must pause.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from bot.chat import Chat, ChatError, ChatGone, ChatMoved, Refused, RetryLater, Role
from bot.metrics import Metrics
from bot.resellscan import BatchStatus
from bot.results import history_rows, message_link
from storage import MESSAGE_STATES, Photo, State, Store, Submission
from storage.outbox import Kind, OutboxRow, Owed, Priority, board_row

log = logging.getLogger(__name__)

REACTION_SEEN = "👀"
REACTION_DONE = "👌"
REACTION_REFUSED = "👎"
REACTION_UNSURE = "🤔"

MAX_TEXT_ATTEMPTS = 5  # a reply that keeps failing (not a 429) is dropped after this
MAX_BACKOFF = 300.0
GONE_RETRY_SECONDS = 600.0  # a chat that blocked the bot is tried again this much later
# A daily digest to a chat that is gone is tried this often (each try a row's send); then no
# digest is owed to it until the chat speaks again (storage.chats `chat_spoke`).
MAX_DIGEST_TRIES = 3


def stale_allowlist_entry(old: int, new: int, *, new_listed: bool = False) -> str:
    """What the operator is told when ALLOWED_CHAT_IDS names a group that Telegram upgraded to
    a supergroup: when the bot follows the upgrade, at every start, and by `check`."""
    if new_listed:
        return (
            f"ALLOWED_CHAT_IDS lists {old}, which Telegram upgraded to supergroup {new} (listed"
            f" too): remove {old} from the setting"
        )
    return (
        f"ALLOWED_CHAT_IDS lists {old}, which Telegram upgraded to supergroup {new}: it admits"
        f" the new id meanwhile; replace {old} with {new} in the setting"
    )


async def follow_migration(
    store: Store,
    old: int,
    new: int,
    now: float,
    *,
    allowed_chat_ids: Collection[int] | None = None,
) -> None:
    """A group was upgraded to a supergroup (a service message, or Telegram's answer to a
    send): its analyses, settings, history and owed messages move to the new id, and the old
    id on the allowlist admits the new one. The operator is told to update the setting."""
    moved = await store.migrate_chat(old, new, now)
    log.log(
        logging.WARNING if any(moved.values()) else logging.INFO,
        "group %s was upgraded to supergroup %s: moved %s",
        old,
        new,
        ", ".join(f"{n} {what}" for what, n in moved.items() if n) or "nothing",
        extra={"chat_id": new},
    )
    if allowed_chat_ids is None:  # not known here (the deliverer): said conditionally
        log.warning(
            "if ALLOWED_CHAT_IDS lists %s, which Telegram upgraded to %s: it admits the new"
            " id meanwhile; replace %s with %s in the setting",
            old,
            new,
            old,
            new,
        )
    elif old in allowed_chat_ids:
        log.warning("%s", stale_allowlist_entry(old, new, new_listed=new in allowed_chat_ids))


def outcome_reaction(sub: Submission) -> str | None:
    """The reaction that says how a submission ended (all from Telegram's allowed set)."""
    if sub.state in (State.COMPLETED, State.NOTIFIED):
        ok = BatchStatus.read(sub.results).counts()[1] if sub.results is not None else 1
        return REACTION_DONE if ok else REACTION_REFUSED
    if sub.state is State.UNCERTAIN:
        return REACTION_UNSURE
    if sub.problem is not None and sub.problem.code == "cancelled":
        return None
    return REACTION_REFUSED


def sub_row(
    sub: Submission,
    kind: Kind,
    priority: Priority,
    key: str,
    *,
    reply: bool = True,
    replace: bool = False,
    payload: dict[str, Any] | None = None,
) -> Owed:
    """A row about a submission, in its forum topic (replying to its first photo)."""
    return Owed(
        sub.chat_id,
        kind,
        priority,
        thread_id=sub.thread_id,
        reply_to=sub.message_id if reply else None,
        submission_id=sub.id,
        key=key,
        replace=replace,
        payload=payload or {},
    )


def reaction_row(sub: Submission, emoji: str) -> Owed:
    """The bot's reaction on a submission's first photo; a newer one replaces one waiting."""
    key = f"react:{sub.chat_id}:{sub.message_id}"
    return sub_row(sub, Kind.REACT, Priority.OPTIONAL, key, replace=True, payload={"emoji": emoji})


def progress_row(sub: Submission) -> Owed:
    """An edit of the analysing message, rendered when sent (the newest state by then)."""
    return sub_row(sub, Kind.PROGRESS, Priority.OPTIONAL, f"progress:{sub.id}", reply=False)


def analysing_row(sub: Submission, products: int) -> Owed:
    key = f"analysing:{sub.id}"
    return sub_row(sub, Kind.ANALYSING, Priority.OPTIONAL, key, payload={"products": products})


def question_row(sub: Submission, question: str, **params: object) -> Owed:
    """A question the submission waits on (collection, duplicate, fields)."""
    key = f"question:{sub.id}:{question}"
    payload = {"question": question, **params}
    return sub_row(sub, Kind.QUESTION, Priority.RESULT, key, payload=payload)


def products_of(photos: list[Photo]) -> list[list[Photo]]:
    """One product per album or single photo, in the order they were sent."""
    groups: dict[str, list[Photo]] = {}
    for photo in sorted(photos, key=lambda p: p.message_id):
        groups.setdefault(photo.product_key, []).append(photo)
    return list(groups.values())


# The results history ---------------------------------------------------------------------

HISTORY_PER_ROUND = 32  # submissions kept per call of keep_owed_history


async def keep_history(store: Store, sub_id: int, now: float) -> Submission | None:
    """The analysed products of a finished submission into the results history (/find,
    /report, the digest), settling what it owed (storage/history.py); idempotent. The link
    to the results message is there when that was sent already. Returns the submission."""
    sub = await store.get(sub_id)
    if sub is None or sub.state not in (State.COMPLETED, State.NOTIFIED):
        await store.history.keep(sub_id, [])
        return sub
    status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
    photos = [] if sub.retry_of else products_of(await store.photos(sub.id))
    photo_ids: list[str | None] = [group[0].file_id for group in photos]
    await store.history.keep(
        sub.id, history_rows(sub, status, photo_ids, sub.results_message_id, now)
    )
    return sub


async def keep_owed_history(store: Store, now: float, limit: int = HISTORY_PER_ROUND) -> int:
    """Keep the rows of up to `limit` submissions whose results are known (owed in the
    transaction that completed them), whether or not their results were delivered; returns
    how many were looked at. A failure of the database leaves the debt for the next call;
    any other (results no code can read) is logged and the debt settled without rows."""
    owed = await store.history.owed(limit)
    for sub_id in owed:
        try:
            await keep_history(store, sub_id, now)
        except sqlite3.Error:
            raise
        except Exception:
            log.exception("keeping the history failed", extra={"submission_id": sub_id})
            await store.history.keep(sub_id, [])
    return len(owed)


@dataclass(frozen=True)
class Delivered:
    """What delivering a row did: `sent` messages counted against Telegram's limits; `more`:
    the row has more to send (the next part of long results); `pause`: the chat must wait
    that long (a 429), the row stays."""

    sent: int = 0
    more: bool = False
    pause: float | None = None


class Deliverer:
    def __init__(
        self,
        *,
        store: Store,
        chat: Chat,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.chat = chat
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()

    async def deliver(self, row: OutboxRow) -> Delivered:
        """Do what the row asks; the chat port's errors become the row's fate."""
        try:
            done = await self._deliver(row)
            if done.sent and not (await self.store.chat(row.chat_id)).reachable:
                # It had blocked the bot and is back: nothing else would tell.
                await self.store.chat_reachable_again(row.chat_id, self.clock())
            return done
        except RetryLater as exc:
            self.metrics.telegram_sends.labels(outcome="retry_after").inc()
            return Delivered(pause=exc.seconds)
        except ChatMoved as exc:
            self.metrics.telegram_sends.labels(outcome="migrated").inc()
            await follow_migration(self.store, row.chat_id, exc.new_chat_id, self.clock())
            return Delivered()  # the row is the new id's now, its loop is woken
        except ChatGone as exc:
            self.metrics.telegram_sends.labels(outcome="forbidden").inc()
            log.warning("chat %s unreachable: %s", row.chat_id, exc)
            await self.store.update_chat(row.chat_id, self.clock(), reachable=False)
            if row.payload.get("digest"):
                tries = await self.store.digest_failed(row.chat_id, self.clock())
                if tries >= MAX_DIGEST_TRIES:
                    log.warning(
                        "digest for chat %s dropped after %d tries: the chat is gone; its"
                        " digest resumes when it speaks again",
                        row.chat_id,
                        tries,
                    )
                    await self.store.delivered(row, self.clock())
            return Delivered(pause=GONE_RETRY_SECONDS)
        except Refused as exc:
            self.metrics.telegram_sends.labels(outcome="bad_request").inc()
            return await self._refused(row, exc)
        except ChatError as exc:
            self.metrics.telegram_sends.labels(outcome="error").inc()
            return await self._failed(row, exc)
        except Exception as exc:
            # Our own fault (rendering, a text key, the database): the row waits with a
            # backoff, so it is neither lost nor retried in a tight loop.
            log.exception(
                "delivering %s failed", row.kind.value, extra={"submission_id": row.submission_id}
            )
            await self.store.retry_row(row, self.clock() + self._backoff(row), f"internal: {exc!r}")
            return Delivered()

    async def _deliver(self, row: OutboxRow) -> Delivered:
        if row.kind is Kind.NOTIFY:
            return await self._notify(row)
        if row.kind is Kind.QUESTION:
            return await self._question(row)
        if row.kind is Kind.ANALYSING:
            return await self._analysing(row)
        if row.kind is Kind.PROGRESS:
            sub = await self._sub(row)
            if sub is None or sub.progress_message_id is None:
                return await self._drop(row)
            await self.chat.edit_progress(sub)
            await self.store.delivered(row, self.clock())
            return Delivered(sent=1)
        if row.kind is Kind.REACT:
            return await self._react(row)
        if row.kind is Kind.BOARD:
            shown = await self.chat.refresh_board(row.chat_id, row.thread_id or 0)
            if shown.again_at is not None:  # waits for the board's budget
                await self.store.postpone(row, shown.again_at)
            else:
                await self.store.delivered(row, self.clock())
            return Delivered(sent=shown.sent)
        # TEXT and EDIT: rendered by whoever owed them.
        message_id = await self.chat.post(row)
        record = None
        field = row.payload.get("record")
        if isinstance(field, str) and message_id is not None:
            record = {field: message_id}
        await self.store.delivered(row, self.clock(), record=record)
        self.metrics.telegram_sends.labels(outcome="ok").inc()
        return Delivered(sent=1)

    async def _sub(self, row: OutboxRow) -> Submission | None:
        return await self.store.get(row.submission_id) if row.submission_id else None

    async def _drop(self, row: OutboxRow) -> Delivered:
        await self.store.delivered(row, self.clock())
        return Delivered()

    # Notifications -------------------------------------------------------------------------

    async def _notify(self, row: OutboxRow) -> Delivered:
        """The next part of what the submission's state owes; at the last part, notified."""
        sub = await self._sub(row)
        if sub is None or sub.notified_at is not None or not _owes_message(sub):
            return await self._drop(row)  # answered otherwise meanwhile (revised, resubmitted)
        messages = await self.chat.messages_for(sub)
        index = sub.parts_sent
        if index < len(messages):
            out = messages[index]
            message_id = await self.chat.send(sub, out)
            record = _record_for(out.role, message_id)
            if index + 1 < len(messages):
                await self.store.part_sent(row, index + 1, record)
                return Delivered(sent=1, more=True)
            await self._notified(row, sub, record or {}, parts=index + 1)
            return Delivered(sent=1)
        await self._notified(row, sub, {}, parts=index)
        return Delivered()

    async def predates_move(self, sub: Submission) -> bool:
        """Made in a group since upgraded to a supergroup: its message ids are the old
        chat's (a reaction, a reply or a link would hit another message in the new one)."""
        return await self.store.made_elsewhere(sub.id, sub.chat_id)

    async def combinable(self, row: OutboxRow) -> bool:
        """Results that fit one message (no CSV, nothing sent yet) may share a reply (not
        those from before a group upgrade: the combined reply links their photos)."""
        if row.kind is not Kind.NOTIFY:
            return False
        sub = await self._sub(row)
        if sub is None or sub.state is not State.COMPLETED or sub.parts_sent:
            return False
        if await self.predates_move(sub):
            return False
        if sub.notified_at is not None:
            return False
        return len(await self.chat.messages_for(sub)) == 1

    async def deliver_combined(self, rows: list[OutboxRow]) -> Delivered:
        """Several results in one reply (as many as fit, from the first); the rest wait."""
        subs = [s for s in [await self._sub(r) for r in rows] if s is not None]
        if len(subs) != len(rows):
            return await self.deliver(rows[0])
        try:
            message_id, taken = await self.chat.send_combined(subs)
        except ChatError:
            return await self.deliver(rows[0])  # the usual way, with its error handling
        for row, sub in zip(rows[:taken], subs[:taken], strict=True):
            await self._notified(row, sub, {"results_message_id": message_id}, parts=1)
        return Delivered(sent=1)

    async def _album_reaction(self, sub: Submission) -> str | None:
        """How the album ended: a retry whose products failed again leaves 👌 on an album
        whose other products were analysed (its reaction shows the album, not the retry)."""
        emoji = outcome_reaction(sub)
        if emoji == REACTION_REFUSED and sub.retry_of is not None and sub.results is not None:
            root = await self.store.get(sub.retry_of)
            if root is not None and root.results and BatchStatus.read(root.results).counts()[1]:
                return REACTION_DONE
        return emoji

    async def _notified(
        self, row: OutboxRow, sub: Submission, record: dict[str, object], *, parts: int
    ) -> None:
        now = self.clock()
        then: list[Owed] = []
        emoji = await self._album_reaction(sub)
        if emoji is not None and emoji != sub.reaction:
            then.append(reaction_row(sub, emoji))
        if sub.progress_message_id is not None:
            then.append(progress_row(sub))
        if not await self.store.notified(row, now, record=record, parts=parts, then=then):
            return
        self.metrics.telegram_sends.labels(outcome="ok").inc()
        await self.store.owe_board(sub.chat_id, sub.thread_id, now)
        if sub.state is State.COMPLETED:
            await self._keep_history(sub.id)
            if sub.completed_at is not None:
                self.metrics.completion_to_reply.observe(max(0.0, now - sub.completed_at))
            log.info(
                "results sent",
                extra={"submission_id": sub.id, "chat_id": sub.chat_id, "batch_id": sub.batch_id},
            )

    async def _keep_history(self, sub_id: int) -> None:
        """The submission's analysed products in the results history (kept already, as a
        rule, when its results became known: `keep_owed_history`), now pointing at the
        results message. Idempotent: a repeated notification adds nothing."""
        sub = await keep_history(self.store, sub_id, self.clock())
        if sub is not None and sub.results_message_id is not None:
            link = message_link(sub.chat_id, sub.thread_id, sub.results_message_id)
            await self.store.history.link(sub.id, link, sub.results_message_id)

    # Questions, analysing messages, reactions ----------------------------------------------

    async def _question(self, row: OutboxRow) -> Delivered:
        sub = await self._sub(row)
        if sub is None or sub.state is not State.RECEIVED:
            return await self._drop(row)  # answered, cancelled or sent meanwhile
        out = await self.chat.question(sub, row.payload)
        message_id = await self.chat.send(sub, out)
        await self.store.delivered(row, self.clock(), record=_record_for(out.role, message_id))
        return Delivered(sent=1)

    async def _analysing(self, row: OutboxRow) -> Delivered:
        """Only while the analysis runs, and in a private chat with several at once, one
        status message (the chat's board) instead of one per album."""
        sub = await self._sub(row)
        if sub is None or sub.state is not State.SUBMITTED or sub.progress_message_id:
            return await self._drop(row)  # its results are owed (or sent) already
        if row.chat_id > 0:
            waiting = await self.store.outbox_count(row.chat_id, Kind.ANALYSING)
            board, _ = await self.store.board(row.chat_id, 0)
            if waiting > 1 or board is not None:
                await self.store.drop_rows(row.chat_id, Kind.ANALYSING, row.thread_id)
                await self.store.owe(board_row(row.chat_id, None), now=self.clock())
                return Delivered()
        products = int(row.payload.get("products", 1))
        message_id = await self.chat.send(sub, self.chat.analysing(sub, products))
        await self.store.delivered(row, self.clock(), record={"progress_message_id": message_id})
        return Delivered(sent=1)

    async def _react(self, row: OutboxRow) -> Delivered:
        emoji = str(row.payload.get("emoji", ""))
        settings = await self.store.chat(row.chat_id)
        sub = await self._sub(row)
        if settings.reactions_refused(self.clock()) or row.reply_to is None or not emoji:
            return await self._drop(row)
        if sub is not None and (sub.reaction == emoji or await self.predates_move(sub)):
            return await self._drop(row)
        try:
            await self.chat.react(row.chat_id, row.reply_to, emoji)
        except Refused as exc:
            log.info("reactions refused in chat %s: %s", row.chat_id, exc)
            if "reaction" in str(exc).lower():  # tried again after a while (ChatSettings)
                now = self.clock()
                await self.store.update_chat(
                    row.chat_id, now, reactions=False, reactions_refused_at=now
                )
            return await self._drop(row)
        if settings.reactions is not True:
            await self.store.update_chat(
                row.chat_id, self.clock(), reactions=True, reactions_refused_at=None
            )
        await self.store.delivered(row, self.clock(), record={"reaction": emoji})
        return Delivered()  # reactions do not count against the message limits

    # Failures ------------------------------------------------------------------------------

    async def _refused(self, row: OutboxRow, exc: Refused) -> Delivered:
        """Telegram will never take this: a notification is recorded as undeliverable (so it
        is not owed forever), anything else is dropped."""
        if row.kind is Kind.NOTIFY:
            sub = await self._sub(row)
            log.error(
                "message refused by Telegram: %s",
                exc,
                extra={"submission_id": row.submission_id, "chat_id": row.chat_id},
            )
            if sub is not None:
                await self.store.notified(row, self.clock(), error=f"refused: {exc}")
                return Delivered()
        else:
            log.info("%s for chat %s refused: %s", row.kind.value, row.chat_id, exc)
        return await self._drop(row)

    async def _failed(self, row: OutboxRow, exc: ChatError) -> Delivered:
        """A failure that may pass: try the row again later (optional output is dropped, and
        a reply that keeps failing too)."""
        # A board is tried again like a reply: dropping its refresh could leave it saying
        # "being analysed" when nothing is (a delete that failed).
        optional = row.priority is Priority.OPTIONAL and row.kind is not Kind.BOARD
        if optional or (row.kind is not Kind.NOTIFY and row.attempts + 1 >= MAX_TEXT_ATTEMPTS):
            log.info("%s for chat %s not sent: %s", row.kind.value, row.chat_id, exc)
            return await self._drop(row)
        wait = self._backoff(row)
        log.warning(
            "send failed, retry in %.1fs: %s",
            wait,
            exc,
            extra={"submission_id": row.submission_id, "chat_id": row.chat_id},
        )
        await self.store.retry_row(row, self.clock() + wait, str(exc))
        return Delivered()

    def _backoff(self, row: OutboxRow) -> float:
        ceiling = min(MAX_BACKOFF, 2.0 * 2 ** max(0, row.attempts))
        return self.rng.uniform(ceiling / 2, ceiling)


def _owes_message(sub: Submission) -> bool:
    return sub.state in MESSAGE_STATES


def _record_for(role: Role, message_id: int) -> dict[str, object] | None:
    if role is Role.RESULTS:
        return {"results_message_id": message_id}
    if role is Role.PROMPT:
        return {"prompt_message_id": message_id}
    return None
