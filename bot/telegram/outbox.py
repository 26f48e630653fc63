"""The tracker's chat on Telegram (`bot.chat.Chat`): texts and keyboards from render.py, every
message and edit through the send scheduler (Telegram's flood limits), the live board in groups,
results combined where one-by-one would wait, and Telegram's errors turned into the port's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError

from bot import export
from bot.chat import (
    ChatError,
    ChatGone,
    Outgoing,
    PhotoUnavailable,
    Refused,
    RetryLater,
    Role,
)
from bot.config import Settings
from bot.intake import Catalog, coerce_fields
from bot.resellscan import BatchStatus, Collection, ResellScanError
from bot.telegram import render
from bot.telegram.board import Boards
from bot.telegram.callbacks import CallbackCodec, Pick, PickerPage, Resubmit
from bot.telegram.scheduler import Priority, SendScheduler, retry_after_seconds
from bot.telegram.texts import t
from storage import State, Store, Submission

log = logging.getLogger(__name__)

T = TypeVar("T")


async def translated(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Telegram call, its errors as the port's."""
    try:
        return await call()
    except RetryAfter as exc:
        raise RetryLater(retry_after_seconds(exc), str(exc)) from exc
    except Forbidden as exc:
        raise ChatGone(str(exc)) from exc
    except ChatMigrated as exc:  # a group became a supergroup: this id takes no messages
        raise ChatGone(f"migrated to {exc.new_chat_id}") from exc
    except BadRequest as exc:
        raise Refused(str(exc)) from exc
    except TelegramError as exc:
        raise ChatError(str(exc)) from exc


def photo_problem(exc: TelegramError) -> str:
    """Which text explains a photo we could not fetch from Telegram."""
    text = str(exc).lower()
    if "too big" in text or "too large" in text:
        return "photo_too_big"
    return "photo_unavailable"


class TelegramChat:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        catalog: Catalog,
        bot: Bot,
        callbacks: CallbackCodec,
        scheduler: SendScheduler | None = None,
        boards: Boards | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.bot = bot
        self.callbacks = callbacks
        self.scheduler = scheduler or SendScheduler()
        self.boards = boards
        self.clock = clock
        self._jobs: set[asyncio.Future[None]] = set()
        self._combining: dict[tuple[int, int], list[tuple[Submission, asyncio.Future[int]]]] = {}
        self._combine_jobs: set[tuple[int, int]] = set()  # (chat, topic) with a job queued

    # Photos and reactions ------------------------------------------------------------------

    async def download(self, file_id: str) -> bytes:
        """A photo's bytes from Telegram (the file URL carries the bot token: it stays here)."""
        try:
            file = await self.bot.get_file(file_id)
            return bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            raise PhotoUnavailable(photo_problem(exc), str(exc), final=True) from exc
        except TelegramError as exc:
            raise PhotoUnavailable(photo_problem(exc), str(exc), final=False) from exc

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        await translated(lambda: self.bot.set_message_reaction(chat_id, message_id, reaction=emoji))

    # The board -----------------------------------------------------------------------------

    def shows_board(self, chat_id: int) -> bool:
        return self.boards is not None and self.boards.applies(chat_id)

    def board_changed(self, sub: Submission) -> None:
        if self.boards is not None:
            self.boards.touch(sub.chat_id, sub.thread_id)

    # Messages ------------------------------------------------------------------------------

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        lang = sub.language
        if sub.state is State.COMPLETED:
            status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
            if not status.products:
                return [Outgoing(render.unreadable_text(lang, sub))]
            photos = len(await self.store.photos(sub.retry_of or sub.id))
            texts = render.render_results(lang, sub, status, photos, now=self.clock())
            markup = render.results_keyboard(lang, sub, status, self.callbacks)
            last = len(texts) - 1
            parts = [
                Outgoing(text, markup, role=Role.RESULTS) if index == last else Outgoing(text)
                for index, text in enumerate(texts)
            ]
            if status.counts()[0] > self.settings.csv_threshold:
                parts.append(await self.csv_for(sub, status))
            return parts
        if sub.state is State.UNCERTAIN:
            resend: InlineKeyboardMarkup | None = None
            if not (sub.problem and sub.problem.params.get("found")):
                # Sending again cannot duplicate what was not found; found products are not
                # re-created (the user starts their analysis in the dashboard).
                button = InlineKeyboardButton(
                    t(lang, "resubmit_button"),
                    callback_data=self.callbacks.encode(Resubmit(sub.id), chat_id=sub.chat_id),
                )
                resend = InlineKeyboardMarkup([[button]])
            return [Outgoing(render.uncertain_text(lang, sub), resend, role=Role.PROMPT)]
        if sub.state is State.EXPIRED:
            minutes = int(self.settings.poll_deadline_seconds // 60) or 1
            text = t(
                lang,
                "expired",
                sender=sub.user_name,
                batch=render.short_batch(sub.batch_id),
                minutes=minutes,
            )
            return [Outgoing(text, role=Role.PROMPT)]
        return [Outgoing(render.problem_text(lang, sub, sub.problem), role=Role.PROMPT)]

    async def csv_for(self, sub: Submission, status: BatchStatus) -> Outgoing:
        """The results as a spreadsheet (bot/export.py), with the manual fields as they were
        sent (typed: numbers as numbers, for margins)."""
        fields: dict[str, Any] = sub.manual_fields
        if sub.collection_id:
            with contextlib.suppress(ResellScanError):
                typed, _ = coerce_fields(fields, await self.catalog.fields(sub.collection_id))
                fields = {**fields, **typed}
        name = f"resell-scan-{render.short_batch(sub.batch_id)}.csv"
        return Outgoing(
            t(sub.language, "results_csv_caption", count=status.counts()[0]),
            document=(name, export.results_csv(status, manual_fields=fields, lang=sub.language)),
        )

    def analysing(self, sub: Submission, products: int) -> Outgoing:
        return Outgoing(render.analysing_text(sub.language, sub, products, None))

    async def collection_question(
        self,
        sub: Submission,
        photos: int,
        candidates: list[Collection] | None,
        ref: str,
        collections: list[Collection],
    ) -> Outgoing:
        lang = sub.language

        def pick(collection: Collection) -> str:
            return self.callbacks.encode(Pick(sub.id, collection.id), chat_id=sub.chat_id)

        if candidates:
            return Outgoing(
                t(lang, "pick_ambiguous", ref=ref), render.choice_keyboard(candidates, pick)
            )
        text = t(
            lang,
            "pick_collection",
            sender=sub.user_name,
            photos=render.count_text(lang, photos, "photos_one", "photos_many"),
        )
        _, markup = render.collections_page(
            lang,
            collections,
            1,
            None,
            button=pick,
            nav=lambda page, q: self.callbacks.encode(
                PickerPage(sub.id, page, q), chat_id=sub.chat_id
            ),
        )
        return Outgoing(text, markup)

    def duplicate_question(self, sub: Submission, earlier: Submission) -> Outgoing:
        text, markup = render.duplicate_question(sub.language, sub, earlier, self.callbacks)
        return Outgoing(text, markup)

    def fields_question(self, sub: Submission, missing: list[str], example: str) -> Outgoing:
        text = t(
            sub.language,
            "fields_wanted",
            sender=sub.user_name,
            collection=sub.collection_name or "?",
            fields=" ".join(f"{key}=…" for key in missing),
            example=example,
        )
        return Outgoing(text, role=Role.PROMPT)

    async def send(self, sub: Submission, out: Outgoing) -> int:
        """Reply to the original photo message, in its forum topic."""
        reply = ReplyParameters(message_id=sub.message_id, allow_sending_without_reply=True)
        markup = out.markup if isinstance(out.markup, InlineKeyboardMarkup) else None

        async def call() -> Message:
            if out.document is not None:
                name, content = out.document
                return await self.bot.send_document(
                    chat_id=sub.chat_id,
                    document=content,
                    filename=name,
                    caption=out.text,
                    message_thread_id=sub.thread_id,
                    reply_parameters=reply,
                )
            return await self.bot.send_message(
                chat_id=sub.chat_id,
                text=out.text,
                message_thread_id=sub.thread_id,
                reply_parameters=reply,
                reply_markup=markup,
            )

        async def scheduled() -> Message:
            return await self.scheduler.submit(sub.chat_id, call, priority=Priority.RESULT)

        message = await translated(scheduled)
        return message.message_id

    # Combined results ----------------------------------------------------------------------

    async def combined(self, sub: Submission, messages: list[Outgoing]) -> int | None:
        """In a group, results that would have to wait for the chat's budget are combined
        into one reply with the others finishing meanwhile (single results still reply to
        their photos). Only results that fit one message, without a CSV, are combined."""
        if sub.state is not State.COMPLETED or sub.parts_sent or len(messages) != 1:
            return None
        if not self.shows_board(sub.chat_id):
            return None
        key = (sub.chat_id, sub.thread_id or 0)  # one combined reply per forum topic
        if key not in self._combining and self.scheduler.wait_for(sub.chat_id) <= 0:
            return None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._combining.setdefault(key, []).append((sub, future))
        if key not in self._combine_jobs:
            self._combine_jobs.add(key)
            self._spawn(self._send_combined(key))
        return await future

    async def _send_combined(self, key: tuple[int, int]) -> None:
        """One job in the chat's queue (one per topic at a time); when it runs, the results
        waiting by then go out in one message, as many as fit. What it took is chosen once: a
        send Telegram refuses with 429 is retried by the scheduler with the same message. Every
        result it took gets the outcome (the message id, or the error, so its notification is
        retried); whatever waits still gets the next job."""
        chat_id, thread = key
        chosen: list[tuple[Submission, asyncio.Future[int]]] = []
        content: tuple[str, Any, ReplyParameters | None] | None = None

        async def call() -> Message:
            nonlocal content
            if content is None:
                waiting = self._combining.get(key, [])
                items = []
                for sub, _ in waiting:
                    status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
                    photos = len(await self.store.photos(sub.retry_of or sub.id))
                    items.append((sub, status, photos))
                lang = waiting[0][0].language
                count = render.combined_fit(lang, items, self.callbacks, now=self.clock())
                chosen.extend(waiting[:count])
                if waiting[count:]:
                    self._combining[key] = waiting[count:]
                else:
                    self._combining.pop(key, None)
                content = self._combined_content(items[:count])
            text, markup, reply = content
            return await self.bot.send_message(
                chat_id=chat_id,
                text=text,
                message_thread_id=thread or None,
                reply_markup=markup,
                reply_parameters=reply,
            )

        async def scheduled() -> Message:
            return await self.scheduler.submit(chat_id, call, priority=Priority.RESULT)

        try:
            message = await translated(scheduled)
        except BaseException as exc:
            # Nothing chosen yet (the queue closed): everything waiting shares the failure.
            failed = chosen or self._combining.pop(key, [])
            for _, future in failed:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
        else:
            for _, future in chosen:
                if not future.done():
                    future.set_result(message.message_id)
        finally:
            if self._combining.get(key):
                self._spawn(self._send_combined(key))
            else:
                self._combine_jobs.discard(key)

    def _combined_content(
        self, items: list[render.CombinedItem]
    ) -> tuple[str, Any, ReplyParameters | None]:
        first, status, photos = items[0]
        if len(items) == 1:
            texts = render.render_results(first.language, first, status, photos, now=self.clock())
            if len(texts) == 1:
                # Alone after all: an ordinary results reply to its photos.
                reply = ReplyParameters(first.message_id, allow_sending_without_reply=True)
                markup = render.results_keyboard(first.language, first, status, self.callbacks)
                return texts[0], markup, reply
        text, markup = render.combined_results(
            first.language, items, self.callbacks, now=self.clock()
        )
        return text, markup, None

    # Progress edits ------------------------------------------------------------------------

    def show_progress(self, sub: Submission, products: int, percent: float | None) -> None:
        if sub.progress_message_id is None:
            return
        text = render.analysing_text(sub.language, sub, products, percent)
        self.edit_later(sub.chat_id, sub.progress_message_id, text)

    def show_done(self, sub: Submission) -> None:
        if sub.progress_message_id is None:
            return
        text = t(
            sub.language,
            "analysis_done",
            sender=sub.user_name,
            batch=render.short_batch(sub.batch_id),
        )
        self.edit_later(sub.chat_id, sub.progress_message_id, text)

    def edit_later(self, chat_id: int, message_id: int, text: str) -> None:
        """Edit a progress message when the chat's budget allows, without waiting for it; a
        newer edit of the same message replaces one still queued."""

        async def call() -> None:
            try:
                await self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
            except RetryAfter:
                raise  # the scheduler pauses the chat and sends this edit again
            except BadRequest as exc:
                if "not modified" not in str(exc).lower():
                    log.info("progress edit refused: %s", exc)
            except TelegramError as exc:
                log.info("progress edit failed: %s", exc)

        self._spawn(
            self.scheduler.submit(
                chat_id, call, priority=Priority.PROGRESS, key=f"edit:{chat_id}:{message_id}"
            )
        )

    def _spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Future[None]) -> None:
        self._jobs.discard(task)
        if not task.cancelled():
            task.exception()  # Superseded by a newer edit, or the chat's queue was closed
