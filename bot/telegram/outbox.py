"""The chat port on Telegram (`bot.chat.Chat`): texts and keyboards from render.py, one Bot API
call per method, Telegram's errors turned into the port's. Which row goes when, within
Telegram's flood limits, is bot/telegram/delivery.py's business; what a row's outcome changes
is bot/outbox.py's.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyParameters,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot import export
from bot.chat import (
    BoardShown,
    ChatError,
    ChatGone,
    ChatMoved,
    Outgoing,
    PhotoUnavailable,
    Refused,
    RetryLater,
    Role,
    TopicGone,
)
from bot.config import Settings
from bot.intake import Catalog, coerce_fields
from bot.resellscan import BatchStatus, Collection, ResellScanError
from bot.telegram import render, topics
from bot.telegram.board import Boards
from bot.telegram.callbacks import CallbackCodec, Pick, PickerPage, Resubmit
from bot.telegram.texts import t
from storage import State, Store, Submission
from storage.outbox import Kind, OutboxRow, Owed, Priority

log = logging.getLogger(__name__)

# Failures that never reached Resell Scan's processing: "Send again" may send them.
RESENDABLE = frozenset({"api_outage", "api_rate_limited"})

T = TypeVar("T")

CAPTION_LIMIT = 1024  # Telegram's limit for a document's or photo's caption
# A send to one message thread, the thread (None: the chat's general topic), the text and
# whether it replies to its message.
Send = Callable[[int | None, str, bool], Awaitable[Message]]


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 deprecates the float form of `retry_after`
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def translated(call: Callable[[], Awaitable[T]]) -> T:
    """Run a Telegram call, its errors as the port's."""
    try:
        return await call()
    except RetryAfter as exc:
        raise RetryLater(retry_after_seconds(exc), str(exc)) from exc
    except Forbidden as exc:
        raise ChatGone(str(exc)) from exc
    except ChatMigrated as exc:  # a group became a supergroup: it goes on under the new id
        raise ChatMoved(int(exc.new_chat_id), str(exc)) from exc
    except BadRequest as exc:
        if topics.is_topic_gone(str(exc)):
            raise TopicGone(str(exc)) from exc
        if "chat not found" in str(exc).lower():  # deleted, or the bot was never in it
            raise ChatGone(str(exc)) from exc
        raise Refused(str(exc)) from exc
    except TelegramError as exc:
        raise ChatError(str(exc)) from exc


def text_row(
    chat_id: int,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    reply_to: int | None = None,
    thread_id: int | None = None,
    priority: Priority = Priority.REPLY,
    document: bytes | None = None,
    filename: str | None = None,
    photo: bool = False,
    submission_id: int | None = None,
    record: str | None = None,
    digest: bool = False,
) -> Owed:
    """A message rendered now and owed to the outbox (a TEXT row, see `TelegramChat.post`):
    text, or a document or photo with `text` as its caption. `record` names the column of
    `submission_id` that keeps the sent message's id; `digest` marks a daily digest's message
    (tried only so often where the chat is gone: bot/outbox.py)."""
    payload: dict[str, Any] = {"text": text}
    if markup is not None:
        payload["markup"] = markup.to_dict()
    if filename is not None:
        payload["filename"] = filename
    if photo:
        payload["photo"] = True
    if record is not None:
        payload["record"] = record
    if digest:
        payload["digest"] = True
    return Owed(
        chat_id,
        Kind.TEXT,
        priority,
        thread_id=thread_id,
        reply_to=reply_to,
        submission_id=submission_id,
        payload=payload,
        document=document,
    )


def edit_row(
    chat_id: int,
    message_id: int,
    text: str | None,
    markup: InlineKeyboardMarkup | None,
    *,
    priority: Priority = Priority.REPLY,
) -> Owed:
    """A new text and/or keyboard for a message the bot sent; a newer edit of the same
    message replaces one still waiting."""
    payload: dict[str, Any] = {"message_id": message_id}
    if text is not None:
        payload["text"] = text
    if markup is not None:
        payload["markup"] = markup.to_dict()
    return Owed(
        chat_id,
        Kind.EDIT,
        priority,
        key=f"edit:{chat_id}:{message_id}",
        replace=True,
        payload=payload,
    )


def reply_row(
    message: Message,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    priority: Priority = Priority.REPLY,
) -> Owed:
    """An answer to a user's message, in its forum topic."""
    return text_row(
        message.chat_id,
        text,
        markup,
        reply_to=message.message_id,
        thread_id=message.message_thread_id if message.is_topic_message else None,
        priority=priority,
    )


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
        boards: Boards | None = None,
        group_boards: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.bot = bot
        self.callbacks = callbacks
        self.boards = boards
        self.group_boards = group_boards  # GROUP_MODE=board: groups list analyses on a board
        self.clock = clock
        self.gone_topics = topics.GoneTopics()

    # Photos and reactions ------------------------------------------------------------------

    async def download(self, file_id: str) -> bytes:
        """A photo's bytes from Telegram (the file URL carries the bot token: it stays here).
        Only a 400 is final (a file too big for bots, a file id Telegram does not know);
        anything else may pass, so the tracker tries again, a bounded number of times: a 5xx,
        a timeout or a network error, a 404 or 403 on the download (a file path Telegram no
        longer serves: the next getFile gives a new one), a 429 (with the wait it asked for),
        and a getFile that names no file path."""
        try:
            file = await self.bot.get_file(file_id)
            if not file.file_path:  # PTB's download would raise a RuntimeError
                raise PhotoUnavailable("photo_unavailable", "no file_path", final=False)
            return bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            raise PhotoUnavailable(photo_problem(exc), str(exc), final=True) from exc
        except RetryAfter as exc:
            raise PhotoUnavailable(
                "photo_unavailable", str(exc), final=False, retry_after=retry_after_seconds(exc)
            ) from exc
        except TelegramError as exc:
            raise PhotoUnavailable(photo_problem(exc), str(exc), final=False) from exc

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        await translated(lambda: self.bot.set_message_reaction(chat_id, message_id, reaction=emoji))

    # The board ---------------------------------------------------------------------------

    def shows_board(self, chat_id: int) -> bool:
        """Groups list their open analyses on a live board (GROUP_MODE=board)."""
        return self.group_boards and self.boards is not None and self.boards.applies(chat_id)

    async def refresh_board(self, chat_id: int, thread: int) -> BoardShown:
        boards = self.boards
        if boards is None or (thread and self.gone_topics.gone(chat_id, thread, self.clock())):
            return BoardShown()  # a deleted or closed topic shows no board
        try:
            return await translated(lambda: boards.refresh(chat_id, thread))
        except TopicGone:
            self.gone_topics.mark(chat_id, thread, self.clock())
            return BoardShown()

    # Where a message goes ------------------------------------------------------------------

    async def predates_move(self, sub: Submission) -> bool:
        """The submission was made in a group since upgraded to a supergroup: its message
        ids are the old chat's (nothing in the new chat may reply to or react on them)."""
        return await self.store.made_elsewhere(sub.id, sub.chat_id)

    async def to_topic(
        self,
        chat_id: int,
        thread: int | None,
        send: Send,
        text: str,
        *,
        lang: str,
        sender: str | None = None,
        caption: bool = False,
    ) -> Message:
        """Send into the forum topic `thread`; where it is deleted or closed, into the general
        topic, with a line naming the sender and the topic (and replying to nothing: the
        message replied to is in that topic)."""
        if thread is None:
            try:
                return await translated(lambda: send(None, text, True))
            except TopicGone as exc:  # the general topic itself is closed
                raise Refused(str(exc)) from exc
        if not self.gone_topics.gone(chat_id, thread, self.clock()):
            try:
                return await translated(lambda: send(thread, text, True))
            except TopicGone as exc:
                self.gone_topics.mark(chat_id, thread, self.clock())
                log.warning(
                    "topic %s of chat %s is deleted or closed (%s): its messages go to the"
                    " general topic",
                    thread,
                    chat_id,
                    exc,
                )
        name = await self.store.topic_name(chat_id, thread)
        line = topics.note(lang, thread, name, sender)
        moved = f"{line}\n\n{text}" if text else line
        if caption and len(moved) > CAPTION_LIMIT:
            moved = text
        try:
            return await translated(lambda: send(None, moved, False))
        except TopicGone as exc:
            raise Refused(str(exc)) from exc

    # Messages ------------------------------------------------------------------------------

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        lang = sub.language
        if sub.state is State.COMPLETED:
            status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
            if not status.products:
                return [Outgoing(render.unreadable_text(lang, sub))]
            photos = len(await self.store.photos(sub.retry_of or sub.id))
            numbers = await self._numbers(sub)
            texts = render.render_results(
                lang, sub, status, photos, now=self.clock(), numbers=numbers
            )
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
        if sub.state is State.FAILED and sub.problem and sub.problem.code in RESENDABLE:
            button = InlineKeyboardButton(
                t(lang, "resubmit_button"),
                callback_data=self.callbacks.encode(Resubmit(sub.id), chat_id=sub.chat_id),
            )
            text = render.problem_text(lang, sub, sub.problem)
            return [Outgoing(text, InlineKeyboardMarkup([[button]]), role=Role.PROMPT)]
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
            t(
                sub.language,
                "results_csv_caption",
                products=render.count_text(
                    sub.language, status.counts()[0], "products_one", "products_many"
                ),
            ),
            document=(name, export.results_csv(status, manual_fields=fields, lang=sub.language)),
        )

    def analysing(self, sub: Submission, products: int) -> Outgoing:
        return Outgoing(render.analysing_text(sub.language, sub, products, None))

    async def question(self, sub: Submission, payload: dict[str, Any]) -> Outgoing:
        kind = payload.get("question")
        if kind == "unreachable":  # a notice: an outage keeps the photos waiting
            return Outgoing(t(sub.language, "unreachable_waiting", sender=sub.user_name))
        if kind == "duplicate":
            earlier = await self.store.get(int(payload["earlier"]))
            if earlier is not None:
                return self.duplicate_question(sub, earlier)
            kind = "collection"  # the earlier analysis is gone: ask as if it were new
        if kind == "fields":
            return self.fields_question(sub, list(payload["missing"]), str(payload["example"]))
        candidates = [
            Collection(id=str(c["id"]), name=str(c["name"])) for c in payload.get("candidates", [])
        ]
        collections: list[Collection] = []
        if not candidates:
            try:
                collections = await self.catalog.collections()
            except ResellScanError as exc:
                raise ChatError(f"collections unavailable: {exc}") from exc
        photos = int(payload.get("photos") or len(await self.store.photos(sub.id)))
        return await self.collection_question(
            sub, photos, candidates, str(payload.get("ref", "")), collections
        )

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
        return Outgoing(text, markup, role=Role.PROMPT)  # its id kept: /cancel edits it

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
        """Reply to the original photo message, in its forum topic (see `to_topic`); a
        submission from before its group became a supergroup replies to nothing."""
        reply: ReplyParameters | None = None
        if not await self.predates_move(sub):
            reply = ReplyParameters(message_id=sub.message_id, allow_sending_without_reply=True)
        markup = out.markup if isinstance(out.markup, InlineKeyboardMarkup) else None

        async def call(thread: int | None, text: str, replying: bool) -> Message:
            if out.document is not None:
                name, content = out.document
                return await self.bot.send_document(
                    chat_id=sub.chat_id,
                    document=content,
                    filename=name,
                    caption=text,
                    message_thread_id=thread,
                    reply_parameters=reply if replying else None,
                )
            return await self.bot.send_message(
                chat_id=sub.chat_id,
                text=text,
                message_thread_id=thread,
                reply_parameters=reply if replying else None,
                reply_markup=markup,
            )

        message = await self.to_topic(
            sub.chat_id,
            sub.thread_id,
            call,
            out.text,
            lang=sub.language,
            sender=sub.user_name,
            caption=out.document is not None,
        )
        return message.message_id

    # Combined results ----------------------------------------------------------------------

    async def _numbers(self, sub: Submission) -> dict[str, int] | None:
        """A retry's products keep the numbers they had in the original album's results."""
        if sub.retry_of is None:
            return None
        root = await self.store.get(sub.retry_of)
        if root is None or root.results is None:
            return None
        products = BatchStatus.read(root.results).products
        return {p.product_id: i for i, p in enumerate(products, start=1) if p.product_id}

    async def send_combined(self, subs: list[Submission]) -> tuple[int, int]:
        """One reply with the results of as many of `subs` as fit (a group at its message
        limit); a single one is an ordinary results reply to its photos."""
        items = []
        for sub in subs:
            status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
            photos = len(await self.store.photos(sub.retry_of or sub.id))
            items.append((sub, status, photos))
        first = subs[0]
        count = render.combined_fit(first.language, items, self.callbacks, now=self.clock())
        text, markup, reply = self._combined_content(items[:count])

        def call(thread: int | None, content: str, replying: bool) -> Awaitable[Message]:
            return self.bot.send_message(
                chat_id=first.chat_id,
                text=content,
                message_thread_id=thread,
                reply_markup=markup,
                reply_parameters=reply if replying else None,
            )

        message = await self.to_topic(
            first.chat_id, first.thread_id, call, text, lang=first.language
        )
        return message.message_id, count

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

    async def edit_progress(self, sub: Submission) -> None:
        """The analysing message as the submission stands now: its progress, or done."""
        if sub.progress_message_id is None:
            return
        if sub.state in (State.SUBMITTED, State.RECONCILING):
            products = max(1, sub.total_products or 1)
            text = render.analysing_text(sub.language, sub, products, sub.progress)
        else:
            text = t(
                sub.language,
                "analysis_done",
                sender=sub.user_name,
                batch=render.short_batch(sub.batch_id),
            )
        message_id = sub.progress_message_id
        try:
            await translated(
                lambda: self.bot.edit_message_text(text, chat_id=sub.chat_id, message_id=message_id)
            )
        except Refused as exc:
            if "not modified" not in str(exc).lower():
                raise

    # Messages rendered when owed -----------------------------------------------------------

    async def post(self, row: OutboxRow) -> int | None:
        """A TEXT row: a message (`text`, `markup`), a document (`document` bytes with
        `filename`, `text` as caption) or a photo (`photo: true`), replying to `reply_to` in
        `thread_id`; an EDIT row: a new `text` and/or keyboard for `message_id`."""
        payload = row.payload
        markup = (
            InlineKeyboardMarkup.de_json(payload["markup"], self.bot)
            if payload.get("markup")
            else None
        )
        if row.kind is Kind.EDIT:
            message_id = int(payload["message_id"])
            text = payload.get("text")

            async def edit() -> Any:
                if isinstance(text, str):
                    return await self.bot.edit_message_text(
                        text, chat_id=row.chat_id, message_id=message_id, reply_markup=markup
                    )
                return await self.bot.edit_message_reply_markup(
                    chat_id=row.chat_id, message_id=message_id, reply_markup=markup
                )

            try:
                await translated(edit)
            except Refused as exc:
                if "not modified" not in str(exc).lower():
                    raise
            return None
        reply = (
            ReplyParameters(row.reply_to, allow_sending_without_reply=True)
            if row.reply_to is not None
            else None
        )
        text = str(payload.get("text", ""))
        document = row.document

        async def call(thread: int | None, content: str, replying: bool) -> Message:
            common: dict[str, Any] = {
                "message_thread_id": thread,
                "reply_parameters": reply if replying else None,
                "reply_markup": markup,
            }
            if document is None:
                return await self.bot.send_message(row.chat_id, content, **common)
            name = str(payload.get("filename", "file"))
            media = InputFile(document, filename=name)
            send = self.bot.send_photo if payload.get("photo") else self.bot.send_document
            return await send(row.chat_id, media, caption=content or None, **common)

        lang = (await self.store.chat(row.chat_id)).language or self.settings.default_language
        message = await self.to_topic(
            row.chat_id, row.thread_id, call, text, lang=lang, caption=document is not None
        )
        return message.message_id
