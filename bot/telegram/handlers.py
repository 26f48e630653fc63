"""python-telegram-bot handlers. They orchestrate only: texts and keyboards come from render.py,
parsing from intake.py, state from storage; slow work is left to the tracker.

Commands in captions are invisible to CommandHandler, so photos and image documents (with or
without a `/scan` caption) go through one MessageHandler.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from telegram import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeDefault,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import report
from bot.chat import Outgoing, analysing_message_wanted
from bot.config import GroupMode, Settings, zone_named
from bot.images import HEIC_EXTENSIONS, heic_supported, is_heic
from bot.intake import (
    CaptionError,
    Catalog,
    NotForUs,
    ScanRequest,
    coerce_fields,
    example_caption,
    parse_caption,
)
from bot.outbox import follow_migration, stale_allowlist_entry
from bot.paid import CapReached
from bot.resellscan import BatchStatus, Collection, ResellScanError
from bot.telegram import callbacks, render
from bot.telegram.callbacks import CallbackCodec
from bot.telegram.inbox import retry_transient
from bot.telegram.outbox import RESENDABLE, TelegramChat, edit_row, reply_row, text_row
from bot.telegram.team import Team
from bot.telegram.texts import COMMANDS, LANGUAGES, Html, language_for, t
from bot.telegram.topics import topic_name_of
from bot.tracker import RetryUsed, Tracker
from storage import CaptionInfo, ChatSettings, NewPhoto, Problem, State, Store, Submission
from storage.outbox import Owed, Priority

log = logging.getLogger(__name__)

MAX_TELEGRAM_DOWNLOAD = 20 * 1024 * 1024
REFUSE_EVERY_SECONDS = 3600.0  # one "not allowed" answer per stranger and hour
FOREIGN_ALBUMS = 1000  # albums captioned for another bot, remembered
DEFAULT_DIGEST_TIME = "20:00"  # the digest button turns it on at this local time
CLEAR_WORDS = frozenset({"none", "-", "off", "clear", "keine", "aus"})  # `/use none`
# Rejections a corrected caption (or a reply with fields) can fix.
FIXABLE_PROBLEMS = frozenset({"fields", "unknown_collection", "caption", "api_validation"})
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", *HEIC_EXTENSIONS)


@dataclass
class Services:
    settings: Settings
    store: Store
    catalog: Catalog
    tracker: Tracker
    chat: TelegramChat
    callbacks: CallbackCodec
    team: Team
    clock: Callable[[], float] = time.time


B = TypeVar("B", bound=callbacks.Button)
COLLECTION_BUTTONS: dict[str, Callable[[str], callbacks.Button]] = {
    "use": callbacks.UseCollection,
    "scan": callbacks.ScanInto,
    "fields": callbacks.FieldsOf,
    "batch": callbacks.BatchInto,
}


@dataclass(frozen=True)
class Press(Generic[B]):
    """A button press that decoded, with the submission it names (rights checked)."""

    update: Update
    lang: str
    button: B
    message: Message | None
    sub: Submission | None


def digest_time(text: str) -> str | None:
    """A time of day as the digest stores it ("HH:MM"), from 21:00, 21.30, 9:05 or 21."""
    match = re.fullmatch(r"(\d{1,2})(?:[:.h](\d{2}))?", text.strip().lower())
    if not match:
        return None
    hours, minutes = int(match[1]), int(match[2] or 0)
    if hours > 23 or minutes > 59:
        return None
    return f"{hours:02d}:{minutes:02d}"


def without_button(markup: InlineKeyboardMarkup, data: str | None) -> InlineKeyboardMarkup:
    """A keyboard as it is, less the button that carries `data` (and rows left empty)."""
    rows = [[b for b in row if b.callback_data != data] for row in markup.inline_keyboard]
    return InlineKeyboardMarkup([row for row in rows if row])


class Handlers:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._admitted_as_successor: set[int] = set()  # logged once per process
        # Albums whose caption addresses another bot: none of their photos is ours. Kept in
        # memory (an album's photos come within seconds), the newest FOREIGN_ALBUMS of them.
        self._foreign_albums: OrderedDict[tuple[int, str], None] = OrderedDict()

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        fresh, edited = filters.UpdateType.MESSAGE, filters.UpdateType.EDITED_MESSAGE
        media = filters.PHOTO | filters.Document.ALL
        app.add_handler(TypeHandler(Update, self.arrival), group=-2)
        app.add_handler(TypeHandler(Update, self.gate), group=-1)
        app.add_handler(MessageHandler(fresh & media, self.on_media))
        app.add_handler(MessageHandler(edited & media, self.on_edit))
        for name in COMMANDS:
            app.add_handler(CommandHandler(name, getattr(self, f"cmd_{name}"), filters=fresh))
        app.add_handler(
            MessageHandler(fresh & filters.TEXT & filters.REPLY & ~filters.COMMAND, self.on_reply)
        )
        for kind, act in self.buttons():
            app.add_handler(CallbackQueryHandler(self.button(kind, act), pattern=kind.pattern()))
        app.add_handler(CallbackQueryHandler(self.on_stale_button))
        app.add_error_handler(self.on_error)

    # Helpers -------------------------------------------------------------------------------

    async def lang(self, update: Update) -> str:
        chat = update.effective_chat
        user = update.effective_user
        stored = (await self.s.store.chat(chat.id)).language if chat else None
        return language_for(
            stored,
            user.language_code if user else None,
            self.s.settings.default_language,
            group=chat is not None and chat.type != ChatType.PRIVATE,
        )

    async def reply(
        self, message: Message, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> None:
        """Answer a user's message: owed to the outbox, which sends it within Telegram's
        limits (the handler does not wait for it)."""
        await self.owe(reply_row(message, text, markup))

    async def owe(self, *rows: Owed) -> None:
        await self.s.store.owe(*rows, now=self.s.clock())

    async def for_sub(self, sub: Submission, out: Outgoing) -> Owed:
        """A message about a submission, as a reply to its photos in their topic; to nothing
        where the photos were sent in the group this chat was upgraded from (their message
        ids are that group's: the same number here is another message)."""
        markup = out.markup if isinstance(out.markup, InlineKeyboardMarkup) else None
        elsewhere = await self.s.store.made_elsewhere(sub.id, sub.chat_id)
        return text_row(
            sub.chat_id,
            out.text,
            markup,
            reply_to=None if elsewhere else sub.message_id,
            thread_id=sub.thread_id,
            document=out.document[1] if out.document else None,
            filename=out.document[0] if out.document else None,
        )

    async def allowed(self, update: Update) -> bool:
        settings = self.s.settings
        if settings.allow_all_users:
            return True
        user, chat = update.effective_user, update.effective_chat
        if (user and user.id in settings.allowed_user_ids) or (
            chat and chat.id in settings.allowed_chat_ids
        ):
            return True
        if chat is None or chat.id > 0:
            return False
        # A group upgraded to a supergroup: its old id on the allowlist admits the new one.
        for old in await self.s.store.predecessors(chat.id):
            if old in settings.allowed_chat_ids:
                if chat.id not in self._admitted_as_successor:
                    self._admitted_as_successor.add(chat.id)
                    log.warning("%s", stale_allowlist_entry(old, chat.id))
                return True
        return False

    async def is_admin(self, update: Update) -> bool:
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or chat.type == ChatType.PRIVATE:
            return True
        try:
            member = await chat.get_member(user.id)
        except TelegramError:
            return False
        return member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)

    async def may_change_settings(self, update: Update) -> bool:
        chat = update.effective_chat
        if chat is None:
            return False
        settings = await self.s.store.chat(chat.id)
        return not settings.admin_only or await self.is_admin(update)

    # Arrival and gate ----------------------------------------------------------------------

    async def arrival(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Before the gate, for every update: a chat that speaks is there (its digest, if it
        had stopped for a chat that was gone, is owed again), and a group upgraded to a
        supergroup is followed to its new id (Telegram's service message in the old chat
        carries `migrate_to_chat_id`, the one in the new chat `migrate_from_chat_id`)."""
        chat, message = update.effective_chat, update.effective_message
        if chat is None:
            return
        now = self.s.clock()
        try:
            if await self.s.store.chat_spoke(chat.id, now):
                log.info("chat %s speaks again: it takes messages and digests", chat.id)
        except Exception as exc:  # not worth failing the update for: the next one tries
            log.warning("could not mark chat %s as speaking: %r", chat.id, exc)
        if message is None or update.message is None:
            return
        old, new = None, None
        if message.migrate_to_chat_id:
            old, new = chat.id, int(message.migrate_to_chat_id)
        elif message.migrate_from_chat_id:
            old, new = int(message.migrate_from_chat_id), chat.id
        if old is None or new is None:
            return
        await follow_migration(
            self.s.store, old, new, now, allowed_chat_ids=self.s.settings.allowed_chat_ids
        )
        self.s.tracker.wake()  # questions the group left unanswered are asked again
        raise ApplicationHandlerStop  # a service message: nothing else to do

    async def gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Default deny: only allowlisted users or chats reach the other handlers. (Redelivered
        updates never get here: the inbox stores each update_id once.) A forum topic's name
        is remembered from the messages that show it (results for a topic deleted later name
        it in the general topic)."""
        message, chat = update.effective_message, update.effective_chat
        if await self.allowed(update):
            topic = topic_name_of(message) if message is not None and chat else None
            if topic is not None and chat is not None:
                await self.s.store.remember_topic(chat.id, topic[0], topic[1])
            return
        lang = await self.lang(update)
        user = update.effective_user
        text = t(
            lang,
            "unauthorized",
            user_id=user.id if user else "?",
            chat_id=chat.id if chat else "?",
        )
        if update.callback_query:
            await update.callback_query.answer(t(lang, "not_allowed_button"))
        elif message and chat:
            # Tell a private sender (photo or command) and a group member who used a
            # command; stay quiet on other group traffic.
            is_command = (message.text or "").startswith("/")
            is_media = bool(message.photo or message.document)
            if user and (is_command or (is_media and chat.type == ChatType.PRIVATE)):
                # At most once an hour per sender, at the lowest priority: a stranger
                # cannot make the bot spend its budget (or memory) on refusals.
                await self.s.store.refuse_once(
                    user.id,
                    reply_row(message, text, priority=Priority.OPTIONAL),
                    self.s.clock(),
                    every=REFUSE_EVERY_SECONDS,
                )
        log.info(
            "refused update from user %s in chat %s",
            user.id if user else None,
            chat.id if chat else None,
        )
        raise ApplicationHandlerStop

    # Photos and image files ----------------------------------------------------------------

    async def on_media(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        chat = update.effective_chat
        if message is None or user is None or chat is None:
            return
        chat_settings = await self.s.store.chat(chat.id)
        lang = language_for(
            chat_settings.language,
            user.language_code,
            self.s.settings.default_language,
            group=chat.type != ChatType.PRIVATE,
        )
        if message.photo:
            size = message.photo[-1]
            file_id, unique_id, file_size = size.file_id, size.file_unique_id, size.file_size
            mime, file_name = "image/jpeg", None
        else:
            document = message.document
            assert document is not None
            name = document.file_name or "file"
            mime = document.mime_type or ""
            if not (mime.startswith("image/") or name.lower().endswith(IMAGE_EXTENSIONS)):
                await self.reply(message, t(lang, "not_an_image", name=name))
                return
            if (document.file_size or 0) > MAX_TELEGRAM_DOWNLOAD:
                await self.reply(message, t(lang, "file_too_large", name=name))
                return
            if is_heic(mime, name) and not heic_supported():
                await self.reply(message, t(lang, "heic_unsupported", name=name))
                return
            file_id, unique_id, file_size = (
                document.file_id,
                document.file_unique_id,
                document.file_size,
            )
            file_name = name
        caption: CaptionInfo | None = None
        problem: Problem | None = None
        album = (chat.id, message.media_group_id) if message.media_group_id else None
        if album is not None and album in self._foreign_albums:
            return  # a photo of an album captioned for another bot
        try:
            request = parse_caption(message.caption, context.bot.username)
        except NotForUs:
            log.debug("photo addressed to another bot", extra={"chat_id": chat.id})
            if album is not None:  # the whole album is not ours, photos before this one too
                self._foreign_albums[album] = None
                while len(self._foreign_albums) > FOREIGN_ALBUMS:
                    self._foreign_albums.popitem(last=False)
                gathering = await self.s.store.album_gathering(*album)
                if gathering is not None:
                    await self.s.store.drop(gathering, self.s.clock())
            return
        except CaptionError as exc:
            request = None
            problem = Problem("caption", {"reason": exc.code, "reason_params": exc.params})
        if request is not None:
            caption = CaptionInfo(request.collection_ref, request.fields)
        result = await self.s.store.add_photo(
            NewPhoto(
                chat_id=chat.id,
                message_id=message.message_id,
                user_id=user.id,
                user_name=user.full_name,
                file_id=file_id,
                file_unique_id=unique_id,
                thread_id=message.message_thread_id if message.is_topic_message else None,
                media_group_id=message.media_group_id,
                file_size=file_size,
                mime_type=mime,
                file_name=file_name,
            ),
            caption=caption,
            problem=problem,
            language=lang,
            remove_background=chat_settings.remove_background,
            album_window=self.s.settings.album_window_seconds,
            album_max_wait=self.s.settings.album_max_wait_seconds,
            now=self.s.clock(),
        )
        log.debug("photo stored", extra={"chat_id": chat.id, "submission_id": result.submission_id})
        if result.late:
            await self.reply(message, t(lang, "late_photo"))
        elif result.caption_ignored:
            sub = await self.s.store.get(result.submission_id)
            await self.reply(
                message, t(lang, "caption_ignored", applied=render.caption_of(sub) if sub else "")
            )
        elif result.late_batch:
            sub = await self.s.store.get(result.submission_id)
            await self.reply(
                message,
                t(
                    lang,
                    "late_batch",
                    collection=(sub.collection_name if sub else None) or "?",
                    minutes=int(self.s.settings.pending_scan_seconds // 60) or 1,
                ),
            )
        if not result.duplicate:
            self.s.tracker.wake()

    async def on_edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo's caption was edited: applied if the photos were not sent yet (gathering,
        waiting for a collection or for fields, or rejected for their caption)."""
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        sub = await self.s.store.by_photo(chat.id, message.message_id)
        if sub is None:
            return  # a photo we never took (for another bot, refused, or before the bot)
        try:
            request = parse_caption(message.caption, context.bot.username)
        except NotForUs:
            return
        except CaptionError as exc:
            reason = t(lang, f"caption_{exc.code}", **exc.params)
            await self.reply(message, t(lang, "caption_problem", reason=Html(reason)))
            return
        if request is None:
            return
        await self._revise(message, lang, sub, request.collection_ref, request.fields, True)

    async def on_reply(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A reply to the bot's rejection or question with `field=value …` fixes it."""
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None or message.reply_to_message is None:
            return
        sub = await self.s.store.by_prompt(chat.id, message.reply_to_message.message_id)
        if sub is None:
            return
        lang = await self.lang(update)
        if not await self._owns(update, sub):  # as for buttons: the sender, or an admin
            await self.reply(message, t(lang, "reply_not_yours", sender=sub.user_name))
            return
        try:
            request = parse_caption(message.text, context.bot.username)
        except (CaptionError, NotForUs):
            request = None
        if request is None or not request.fields or request.collection_ref:
            await self.reply(message, t(lang, "reply_fields_usage"))
            return
        await self._revise(message, lang, sub, None, request.fields, False)

    async def _revise(
        self,
        message: Message,
        lang: str,
        sub: Submission,
        collection_ref: str | None,
        fields: dict[str, str],
        replace: bool,
    ) -> None:
        fixable = sub.state is State.RECEIVED or (
            sub.state is State.REJECTED
            and sub.problem is not None
            and sub.problem.code in FIXABLE_PROBLEMS
        )
        revised = (
            await self.s.store.revise(
                sub.id,
                self.s.clock(),
                collection_ref=collection_ref,
                manual_fields=fields,
                replace_fields=replace,
            )
            if fixable
            else None
        )
        if revised is None:
            await self.reply(message, t(lang, "edit_too_late"))
            return
        self.s.tracker.wake()
        await self.reply(message, t(lang, "edit_applied", what=render.caption_of(revised)))

    # Commands ------------------------------------------------------------------------------

    async def cmd_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        user = update.effective_user
        settings = await self.s.store.chat(chat.id)
        if (
            chat.type != ChatType.PRIVATE
            and settings.language is None
            and user is not None
            and user.language_code
            and await self.is_admin(update)
        ):
            # A group speaks one language: the first admin's, unless /settings says otherwise.
            spoken = language_for(None, user.language_code, self.s.settings.default_language)
            await self.s.store.update_chat(chat.id, self.s.clock(), language=spoken)
        lang = await self.lang(update)
        await self.reply(message, t(lang, "start"))
        if chat.type in (ChatType.GROUP, ChatType.SUPERGROUP):
            me = await context.bot.get_me()
            if not me.can_read_all_group_messages:
                try:
                    member = await chat.get_member(me.id)
                    admin = member.status in (
                        ChatMemberStatus.ADMINISTRATOR,
                        ChatMemberStatus.OWNER,
                    )
                except TelegramError:
                    admin = False
                if not admin:
                    await self.reply(message, t(lang, "privacy_warning"))

    async def cmd_help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message:
            await self.reply(update.effective_message, t(await self.lang(update), "help"))

    async def cmd_scan(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """`/scan <collection> [field=value …]` as text: the sender's next photos go there."""
        found = await self._scan_command(update, context, "scan", "scan_usage")
        if found is not None:
            request, collection, lang = found
            await self._remember_scan(update, lang, request, collection.id, collection.name)

    async def cmd_batch(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """`/batch <collection> [field=value …]`: collect the sender's next photos and albums
        (one product each) into one analysis, sent on /done or after PENDING_SCAN_SECONDS."""
        found = await self._scan_command(update, context, "batch", "batch_usage")
        if found is not None:
            request, collection, lang = found
            if await self._batch_fields_refused(update, lang, collection, request.fields):
                return
            await self._open_batch(update, lang, collection.id, collection.name, request.fields)

    async def _batch_fields_refused(
        self, update: Update, lang: str, collection: Collection, fields: dict[str, str]
    ) -> bool:
        """A /batch's fields are checked when it opens, not at /done: wrong ones are refused
        now, with a working example. (None given for a collection that requires some: the
        user is asked at /done, as for a plain photo.)"""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return True
        try:
            definitions = await self.s.catalog.fields(collection.id)
        except ResellScanError:
            return False  # checked at /done, when Resell Scan answers again
        values, problems = coerce_fields(fields, definitions, self.s.settings.max_price)
        if not problems or (not fields and all(p.code == "missing" for p in problems)):
            return False
        example = example_caption(collection.name, definitions, values, lang)
        text = render.field_problems_text(
            lang,
            user.full_name,
            collection.name,
            problems,
            example,
            header="batch_fields_problem",
        )
        await self.reply(message, text)
        return True

    async def _scan_command(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, command: str, usage: str
    ) -> tuple[ScanRequest, Any, str] | None:
        """Parse `/<command> <collection> [field=value …]` and resolve the collection; answer
        the user (caption problem, usage, unknown or ambiguous collection) and return None when
        there is nothing to do yet."""
        message = update.effective_message
        if message is None or update.effective_chat is None or update.effective_user is None:
            return None
        lang = await self.lang(update)
        text = (message.text or "").replace(f"/{command}", "/scan", 1)
        try:
            request = parse_caption(text, context.bot.username)
        except NotForUs:
            return None
        except CaptionError as exc:
            reason = t(lang, f"caption_{exc.code}", **exc.params)
            await self.reply(message, t(lang, "caption_problem", reason=Html(reason)))
            return None
        if request is None or not request.collection_ref:
            await self.reply(message, t(lang, usage))
            return None
        collection = await self._resolve_or_answer(message, lang, request.collection_ref, command)
        if collection is None:
            return None
        return request, collection, lang

    async def _open_batch(
        self, update: Update, lang: str, collection_id: str, name: str, fields: dict[str, str]
    ) -> None:
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or chat is None or user is None:
            return
        now = self.s.clock()
        chat_settings = await self.s.store.chat(chat.id)
        previous = await self.s.store.open_batch_of(chat.id, user.id)
        await self.s.store.open_batch(
            chat_id=chat.id,
            thread_id=message.message_thread_id if message.is_topic_message else None,
            message_id=message.message_id,
            user_id=user.id,
            user_name=user.full_name,
            collection_id=collection_id,
            collection_name=name,
            manual_fields=fields,
            language=lang,
            remove_background=chat_settings.remove_background,
            deadline=now + self.s.settings.pending_scan_seconds,
            now=now,
        )
        self.s.tracker.wake()
        if previous is not None:  # a new /batch sends the open one first: say so
            photos = len(await self.s.store.photos(previous.id))
            await self.reply(
                message,
                t(
                    lang,
                    "batch_replaced",
                    collection=previous.collection_name or "?",
                    photos=render.count_text(lang, photos, "photos_one", "photos_many"),
                ),
            )
        shown = " ".join(f"{k}={v}" for k, v in fields.items())
        await self.reply(
            message,
            t(
                lang,
                "batch_open",
                collection=name,
                fields=Html(f" <code>{html.escape(shown)}</code>") if shown else "",
                minutes=int(self.s.settings.pending_scan_seconds // 60) or 1,
            ),
        )

    async def cmd_done(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or chat is None or user is None:
            return
        lang = await self.lang(update)
        sub = await self.s.store.close_batch(chat.id, user.id, self.s.clock())
        if sub is None:
            await self.reply(message, t(lang, "batch_none"))
            return
        self.s.tracker.wake()
        count = len({p.product_key for p in await self.s.store.photos(sub.id)})
        await self.reply(
            message,
            t(
                lang,
                "batch_closed",
                collection=sub.collection_name or "?",
                products=render.count_text(lang, count, "products_one", "products_many"),
            ),
        )

    async def _remember_scan(
        self, update: Update, lang: str, request: ScanRequest, collection_id: str, name: str
    ) -> None:
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or chat is None or user is None:
            return
        settings = self.s.settings
        await self.s.store.set_pending_scan(
            chat.id,
            user.id,
            CaptionInfo(collection_id, request.fields),
            self.s.clock() + settings.pending_scan_seconds,
        )
        fields = "".join(f" {k}={v}" for k, v in request.fields.items())
        await self.reply(
            message,
            t(
                lang,
                "scan_pending",
                collection=name,
                fields=Html(
                    t(
                        lang,
                        "scan_pending_fields",
                        fields=Html(f"<code>{html.escape(fields.strip())}</code>"),
                    )
                )
                if fields
                else "",
                minutes=int(settings.pending_scan_seconds // 60) or 1,
            ),
        )

    async def _resolve_or_answer(self, message: Message, lang: str, ref: str, purpose: str) -> Any:
        """The collection `ref` names; otherwise answers (unknown, or buttons when ambiguous)."""
        try:
            resolution = await self.s.catalog.resolve(ref)
        except ResellScanError as exc:
            await self.reply(message, t(lang, "collections_unavailable", message=str(exc)))
            return None
        if resolution.match is not None:
            return resolution.match
        if resolution.candidates:
            await self.reply(
                message,
                t(lang, "pick_ambiguous", ref=ref),
                render.choice_keyboard(
                    resolution.candidates, lambda c: COLLECTION_BUTTONS[purpose](c.id).data()
                ),
            )
            return None
        await self.reply(message, t(lang, "unknown_collection", ref=ref))
        return None

    async def cmd_collections(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        lang = await self.lang(update)
        search = " ".join(context.args or []).strip() or None
        try:
            items = await self.s.catalog.search(search)
        except ResellScanError as exc:
            await self.reply(message, t(lang, "collections_unavailable", message=str(exc)))
            return
        text, markup = render.collections_page(lang, items, 1, search)
        await self.reply(message, text, markup)

    async def cmd_use(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None:
            return
        lang = await self.lang(update)
        ref = " ".join(context.args or []).strip().strip('"“”„')
        if not ref:
            await self.reply(message, t(lang, "use_usage"))
            return
        if not await self.may_change_settings(update):
            await self.reply(message, t(lang, "admins_only"))
            return
        if ref.lower() in CLEAR_WORDS and update.effective_chat is not None:
            await self.s.store.update_chat(
                update.effective_chat.id,
                self.s.clock(),
                default_collection_id=None,
                default_collection_name=None,
            )
            await self.reply(message, t(lang, "default_cleared"))
            return
        collection = await self._resolve_or_answer(message, lang, ref, "use")
        if collection is not None:
            await self._set_default(update, lang, collection.id, collection.name, message)

    async def _set_default(
        self, update: Update, lang: str, collection_id: str, name: str, message: Message
    ) -> None:
        chat = update.effective_chat
        assert chat is not None
        await self.s.store.update_chat(
            chat.id,
            self.s.clock(),
            default_collection_id=collection_id,
            default_collection_name=name,
        )
        text = t(lang, "default_set", collection=name)
        try:
            fields = await self.s.catalog.fields(collection_id)
            text += "\n\n" + render.field_list_text(
                lang, name, fields, example_caption(name, fields, lang=lang)
            )
        except ResellScanError as exc:
            log.info("fields unavailable: %s", exc)
        await self.reply(message, text)

    async def cmd_fields(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        ref = " ".join(context.args or []).strip().strip('"“”„')
        if ref:
            collection = await self._resolve_or_answer(message, lang, ref, "fields")
            if collection is None:
                return
            collection_id, name = collection.id, collection.name
        else:
            settings = await self.s.store.chat(chat.id)
            if not settings.default_collection_id:
                await self.reply(message, t(lang, "fields_usage"))
                return
            collection_id = settings.default_collection_id
            name = settings.default_collection_name or collection_id
        await self._send_fields(message, lang, collection_id, name)

    async def _send_fields(
        self, message: Message, lang: str, collection_id: str, name: str
    ) -> None:
        try:
            fields = await self.s.catalog.fields(collection_id)
        except ResellScanError as exc:
            await self.reply(message, t(lang, "collections_unavailable", message=str(exc)))
            return
        await self.reply(
            message,
            render.field_list_text(lang, name, fields, example_caption(name, fields, lang=lang)),
        )

    async def cmd_status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        now = self.s.clock()
        if context.args:
            sub = await self.s.store.find_batch(chat.id, context.args[0])
            if sub is None:
                await self.reply(message, t(lang, "batch_not_found", batch=context.args[0]))
                return
            photos = len(await self.s.store.photos(sub.id))
            await self.reply(message, render.status_detail(lang, sub, photos, now))
            return
        open_, recent = await self.s.store.for_chat(chat.id)
        counts = await self.s.store.photo_counts([s.id for s in open_ if s.collecting])
        waiting = await self.s.store.waiting_results(chat.id)
        await self.reply(message, render.status_text(lang, open_, recent, now, counts, waiting))

    async def cmd_results(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        if not context.args:
            await self.reply(message, t(lang, "results_usage"))
            return
        sub = await self.s.store.find_batch(chat.id, context.args[0])
        if sub is None:
            await self.reply(message, t(lang, "batch_not_found", batch=context.args[0]))
            return
        if sub.results is None:
            await self.reply(
                message,
                t(
                    lang,
                    "results_not_ready",
                    batch=render.short_batch(sub.batch_id),
                    state=render.state_text(lang, sub),
                ),
            )
            return
        want_csv = len(context.args) > 1 and context.args[1].lower() == "csv"
        await self._show_results(message, lang, sub, want_csv=want_csv)

    async def _show_results(
        self, message: Message, lang: str, sub: Submission, *, want_csv: bool
    ) -> None:
        """A finished submission's results again, with their buttons (and the CSV)."""
        status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
        photos = len(await self.s.store.photos(sub.retry_of or sub.id))
        if status.products:
            parts = render.render_results(lang, sub, status, photos, now=self.s.clock())
        else:
            parts = [render.unreadable_text(lang, sub)]
        markup = render.results_keyboard(lang, sub, status, self.s.callbacks)
        for index, part in enumerate(parts):
            await self.reply(message, part, markup if index == len(parts) - 1 else None)
        if want_csv or status.counts()[0] > self.s.settings.csv_threshold:
            await self.owe(await self.for_sub(sub, await self.s.chat.csv_for(sub, status)))

    async def cmd_find(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        text, markup = await self.s.team.find_view(chat.id, lang, " ".join(context.args or []))
        await self.reply(message, text, markup)

    async def cmd_report(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        try:
            out = await self.s.team.report(chat.id, lang, " ".join(context.args or []))
        except report.PeriodError as exc:
            await self.reply(message, report.period_error_text(lang, exc))
            return
        await self.s.team.send_report(
            chat.id,
            lang,
            out,
            reply_to=message.message_id,
            thread_id=message.message_thread_id if message.is_topic_message else None,
        )

    async def cmd_settings(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        lang = await self.lang(update)
        if context.args:
            await self._set_by_text(update, message, lang, list(context.args))
            return
        await self.reply(message, *(await self._settings_view(chat.id, lang)))

    async def _set_by_text(
        self, update: Update, message: Message, lang: str, args: list[str]
    ) -> None:
        """`/settings digest 21:00|off` and `/settings timezone Europe/Berlin`."""
        chat = update.effective_chat
        assert chat is not None
        what, value = args[0].lower(), " ".join(args[1:]).strip()
        if what not in ("digest", "timezone", "zeitzone"):
            await self.reply(message, t(lang, "settings_usage"))
            return
        if not await self.may_change_settings(update):
            await self.reply(message, t(lang, "admins_only"))
            return
        now = self.s.clock()
        if what == "digest":
            if value.lower() in CLEAR_WORDS:
                await self.s.store.update_chat(chat.id, now, digest_time=None)
            else:
                at = digest_time(value)
                if at is None:
                    await self.reply(message, t(lang, "digest_usage"))
                    return
                await self._turn_digest_on(chat.id, at)
        else:
            zone = zone_named(value) if value else None
            if zone is None:
                await self.reply(message, t(lang, "timezone_usage", zone=value))
                return
            await self.s.store.update_chat(chat.id, now, timezone=zone)
        await self.reply(message, *(await self._settings_view(chat.id, lang)))

    async def _turn_digest_on(self, chat_id: int, at: str) -> None:
        """Digests start with the next due time: a digest turned on at 22:00 for 21:00 is
        first sent tomorrow, not at once for today (the day is recorded as sent). Moving the
        time of a digest already sent today never sends today's again."""
        now = self.s.clock()
        settings = await self.s.store.chat(chat_id)
        zone = settings.timezone or self.s.settings.default_timezone
        zone_info, _ = report.zone(zone)
        past = report.digest_due(None, now, zone, at)
        last = (
            past or (datetime.fromtimestamp(now, zone_info).date() - timedelta(days=1)).isoformat()
        )
        if settings.digest_last_day is not None and settings.digest_last_day > last:
            last = settings.digest_last_day
        await self.s.store.update_chat(chat_id, now, digest_time=at, digest_last_day=last)

    async def _settings_view(self, chat_id: int, lang: str) -> tuple[str, InlineKeyboardMarkup]:
        settings = await self.s.store.chat(chat_id)
        text = t(
            lang,
            "settings",
            collection=settings.default_collection_name or t(lang, "settings_none"),
            background=t(lang, "settings_on" if settings.remove_background else "settings_off"),
            language={"en": "English", "de": "Deutsch"}[lang],
            who=t(lang, "settings_admins" if settings.admin_only else "settings_everyone"),
            analysing=t(lang, "settings_on" if self._analysing(settings) else "settings_off"),
            reactions=t(
                lang,
                "settings_reactions_refused"
                if settings.reactions_refused(self.s.clock())
                else "settings_reactions",
            ),
            guard=t(lang, "settings_on" if settings.duplicate_guard else "settings_off"),
            digest=settings.digest_time or t(lang, "settings_off"),
            zone=settings.timezone or self.s.settings.default_timezone,
        )
        return text, render.settings_keyboard(lang, settings, self._analysing(settings))

    def _analysing(self, settings: ChatSettings) -> bool:
        in_groups = self.s.settings.group_mode is GroupMode.PER_ALBUM
        return analysing_message_wanted(settings, in_groups=in_groups)

    async def cmd_cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or chat is None or user is None:
            return
        lang = await self.lang(update)
        held = await self.s.store.held_questions(chat.id, user.id)
        count = await self.s.store.cancel_waiting(chat.id, user.id, self.s.clock())
        for question in held:  # the duplicate guard's questions lose their buttons
            await self.owe(edit_row(chat.id, question, t(lang, "duplicate_cancelled"), None))
        pending = await self.s.store.clear_pending_scan(chat.id, user.id)
        if count:
            await self.reply(message, t(lang, "cancelled", count=count))
        if pending:
            await self.reply(message, t(lang, "cancelled_scan"))
        if not count and not pending:
            await self.reply(message, t(lang, "nothing_to_cancel"))

    # Buttons -------------------------------------------------------------------------------

    def button(
        self, kind: type[B], act: Callable[[Press[B]], Awaitable[bool | None]]
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        """The handler of one kind of button: decode (a stale, forged or other chat's button
        changes nothing), check the presser's rights on the submission it names (here, in
        one place), act; the press is answered unless `act` answered it (returned True)."""

        async def run(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            query, chat = update.callback_query, update.effective_chat
            if query is None or chat is None:
                return
            lang = await self.lang(update)
            record = self.s.callbacks.decode(query.data, chat.id)
            if not isinstance(record, kind):
                await query.answer(t(lang, "stale_button"), show_alert=True)
                return
            sub = None
            if isinstance(record, callbacks.OnSubmission):
                sub = await self.s.store.get(record.sub_id)
                if sub is None or sub.chat_id != chat.id:
                    await query.answer(t(lang, "stale_button"), show_alert=True)
                    return
                if not await self._may_press(update, record, sub):  # say who may
                    await query.answer(
                        t(lang, "button_not_yours", sender=sub.user_name), show_alert=True
                    )
                    return
            message = query.message if isinstance(query.message, Message) else None
            if not await act(Press(update, lang, record, message, sub)):
                await query.answer()

        return run

    async def _may_press(
        self, update: Update, record: callbacks.OnSubmission, sub: Submission
    ) -> bool:
        """Buttons that show a submission (CSV, listing, picker pages) work for anyone in its
        chat; those that act on it for its sender or the chat's admins."""
        chat = update.effective_chat
        if chat is None or sub.chat_id != chat.id:
            return False
        if isinstance(record, callbacks.Csv | callbacks.Listing | callbacks.PickerPage):
            return True
        return await self._owns(update, sub)

    def buttons(self) -> list[tuple[type[Any], Callable[[Press[Any]], Awaitable[bool | None]]]]:
        return [
            (callbacks.Pick, self.on_pick),
            (callbacks.PickerPage, self.on_picker_page),
            (callbacks.CollectionsPage, self.on_collections_page),
            (callbacks.UseCollection, self.on_collection_button),
            (callbacks.ScanInto, self.on_collection_button),
            (callbacks.FieldsOf, self.on_collection_button),
            (callbacks.BatchInto, self.on_collection_button),
            (callbacks.Setting, self.on_setting),
            (callbacks.Resubmit, self.on_resubmit),
            (callbacks.Csv, self.on_csv),
            (callbacks.RetryFailed, self.on_retry),
            (callbacks.Listing, self.on_listing),
            (callbacks.Duplicate, self.on_duplicate),
            (callbacks.FindPage, self.on_find_page),
            (callbacks.FindShow, self.on_find_show),
            (callbacks.ReportCsv, self.on_report_csv),
        ]

    async def on_stale_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Data no kind of button matches (an older version's, or not ours)."""
        if update.callback_query is not None:
            lang = await self.lang(update)
            await update.callback_query.answer(t(lang, "stale_button"), show_alert=True)

    async def on_pick(self, press: Press[callbacks.Pick]) -> None:
        assert press.sub is not None
        await self._picked(press, press.sub, press.button.collection_id)

    async def on_picker_page(self, press: Press[callbacks.PickerPage]) -> None:
        if press.message is None:
            return
        chat_id, sub_id = press.message.chat_id, press.button.sub_id
        search = press.button.search
        items = await self.s.catalog.search(search or None)
        _, markup = render.collections_page(
            press.lang,
            items,
            press.button.page,
            search or None,
            button=lambda c: self.s.callbacks.encode(callbacks.Pick(sub_id, c.id), chat_id=chat_id),
            nav=lambda page, q: self.s.callbacks.encode(
                callbacks.PickerPage(sub_id, page, q), chat_id=chat_id
            ),
        )
        await self._edit(press.message, press.message.text_html or "", markup)

    async def on_collections_page(self, press: Press[callbacks.CollectionsPage]) -> None:
        if press.message is None:
            return
        search = press.button.search
        items = await self.s.catalog.search(search or None)
        text, markup = render.collections_page(press.lang, items, press.button.page, search or None)
        await self._edit(press.message, text, markup)

    async def on_collection_button(
        self,
        press: Press[
            callbacks.UseCollection | callbacks.ScanInto | callbacks.FieldsOf | callbacks.BatchInto
        ],
    ) -> bool:
        update, lang, message = press.update, press.lang, press.message
        query = update.callback_query
        assert query is not None
        collection = await self.s.catalog.by_id(press.button.collection_id)
        if collection is None:
            await query.answer(t(lang, "unknown_collection", ref=press.button.collection_id))
            return True
        if message is None:
            return False
        if isinstance(press.button, callbacks.UseCollection):
            if not await self.may_change_settings(update):
                await query.answer(t(lang, "admins_only"), show_alert=True)
                return True
            await self._set_default(update, lang, collection.id, collection.name, message)
        elif isinstance(press.button, callbacks.FieldsOf):
            await self._send_fields(message, lang, collection.id, collection.name)
        elif isinstance(press.button, callbacks.BatchInto):
            await self._open_batch(update, lang, collection.id, collection.name, {})
        else:
            request = ScanRequest(collection.id, {})
            await self._remember_scan(update, lang, request, collection.id, collection.name)
        return False

    async def on_setting(self, press: Press[callbacks.Setting]) -> bool:
        if press.message is None:
            return False
        return await self._toggle(press.update, press.lang, press.button.what, press.message)

    async def on_resubmit(self, press: Press[callbacks.Resubmit]) -> bool:
        assert press.sub is not None
        await self._resubmit(press, press.sub)
        return True

    async def on_csv(self, press: Press[callbacks.Csv]) -> None:
        assert press.sub is not None
        sub = press.sub
        if sub.results is not None:
            status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
            await self.owe(await self.for_sub(sub, await self.s.chat.csv_for(sub, status)))

    async def on_retry(self, press: Press[callbacks.RetryFailed]) -> bool:
        assert press.sub is not None
        await self._retry_failed(press, press.sub)
        return True

    async def on_listing(self, press: Press[callbacks.Listing]) -> None:
        assert press.sub is not None
        sub = press.sub
        if sub.results is None:
            return
        status = BatchStatus.read(sub.results, batch_id=sub.batch_id)
        for text in render.listing_messages(sub.language, sub, status, press.button.index):
            await self.owe(await self.for_sub(sub, Outgoing(text)))

    async def on_duplicate(self, press: Press[callbacks.Duplicate]) -> bool:
        assert press.sub is not None
        await self._duplicate_choice(press, press.sub)
        return True

    async def on_find_page(self, press: Press[callbacks.FindPage]) -> None:
        if press.message is None:
            return
        text, markup = await self.s.team.find_page(
            press.message.chat_id, press.lang, press.button.query, press.button.offset
        )
        await self._edit(press.message, text, markup)

    async def on_find_show(self, press: Press[callbacks.FindShow]) -> None:
        await self._show_found(press.update, press.lang, press.button.row_id)

    async def on_report_csv(self, press: Press[callbacks.ReportCsv]) -> bool:
        chat, query = press.update.effective_chat, press.update.callback_query
        assert chat is not None
        assert query is not None
        try:
            name, data = await self.s.team.report_csv(chat.id, press.lang, press.button.period)
        except report.PeriodError:
            await query.answer(t(press.lang, "stale_button"), show_alert=True)
            return True
        await self._send_document(chat.id, press.message, name, data)
        return False

    async def _show_found(self, update: Update, lang: str, row_id: int) -> None:
        """A /find hit in a chat without message links: reply to its results message."""
        chat = update.effective_chat
        assert chat is not None
        row = await self.s.team.history_row(chat.id, row_id)
        if row is None or row.message_id is None:
            return
        title = row.title or row.brand or t(lang, "find_untitled")
        # Owed like every message: if the results message was deleted meanwhile, this one
        # goes out without the reply (the text names the product).
        await self.owe(
            text_row(
                chat.id,
                t(lang, "find_here", title=title),
                reply_to=row.message_id,
                thread_id=row.thread_id,
            )
        )

    async def _send_document(
        self, chat_id: int, message: Message | None, name: str, data: bytes
    ) -> None:
        await self.owe(
            text_row(
                chat_id,
                "",
                reply_to=message.message_id if message is not None else None,
                thread_id=message.message_thread_id
                if message is not None and message.is_topic_message
                else None,
                document=data,
                filename=name,
            )
        )

    async def _retry_failed(self, press: Press[callbacks.RetryFailed], sub: Submission) -> None:
        """🔁 Retry failed: POST /products/analyze with exactly the failed product ids, tracked
        like any batch; one reply answers the original photos. The button is used up."""
        query, lang = press.update.callback_query, press.lang
        assert query is not None
        if sub.results is None:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return
        failed = BatchStatus.read(sub.results).failed_product_ids()
        if sub.retried_at is not None or not failed or not sub.collection_id:
            await query.answer(t(lang, "retry_used"))
            return
        try:
            started = await self.s.tracker.retry_failed(sub, failed)
        except RetryUsed:  # pressed twice at once: the other press goes out
            await query.answer(t(lang, "retry_used"))
            return
        except CapReached:
            await query.answer(t(lang, "retry_capped"), show_alert=True)
            return
        except ResellScanError as exc:
            await query.answer(
                t(lang, "retry_failed_start", message=str(exc)[:150]), show_alert=True
            )
            return
        now = self.s.clock()
        # In the album's language, as its results (the chat's may have changed since).
        notice = t(sub.language, "retry_started", count=len(failed))
        owed = [await self.for_sub(sub, Outgoing(notice))]
        message = press.message
        if message is not None and message.reply_markup is not None:
            # The same keyboard without the used button: in a combined reply the other
            # members' rows stay as they are.
            keyboard = without_button(message.reply_markup, query.data)
            owed.insert(0, edit_row(message.chat_id, message.message_id, None, keyboard))
        retry = await self.s.store.start_retry(
            sub, started.batch_id, failed, now + self.s.settings.poll_initial_seconds, now, owed
        )
        await query.answer()
        if retry is None:  # pressed twice at once: the other press won
            return
        self.s.tracker.wake()

    async def _duplicate_choice(self, press: Press[callbacks.Duplicate], sub: Submission) -> None:
        """Duplicate guard: show the earlier results (and drop these photos), or analyse."""
        query, lang, message = press.update.callback_query, press.lang, press.message
        assert query is not None
        if sub.duplicate_of is None or sub.state is not State.RECEIVED:
            await query.answer(t(lang, "stale_button"), show_alert=True)
            return
        await query.answer()
        if press.button.choice == "again":
            if await self.s.store.pass_guard(sub.id, self.s.clock()):
                self.s.tracker.wake()
            if message is not None:  # the question says what was chosen, without buttons
                await self._edit(message, t(lang, "duplicate_chose_again"), None)
            return
        earlier = await self.s.store.get(sub.duplicate_of)
        await self.s.store.drop(sub.id, self.s.clock())
        running = earlier is None or earlier.results is None  # its results come in its reply
        if message is not None:
            chosen = "duplicate_chose_wait" if running else "duplicate_chose_show"
            await self._edit(message, t(lang, chosen), None)
        if earlier is not None and not running and message is not None:
            await self._show_results(message, lang, earlier, want_csv=False)

    async def _owns(self, update: Update, sub: Submission) -> bool:
        """The pressing user may act on this submission: it is in this chat, and they sent
        the photos or are an admin of the chat."""
        chat, user = update.effective_chat, update.effective_user
        if chat is None or user is None or sub.chat_id != chat.id:
            return False
        if sub.user_id == user.id:
            return True
        return chat.type != ChatType.PRIVATE and await self.is_admin(update)

    async def _resubmit(self, press: Press[callbacks.Resubmit], sub: Submission) -> None:
        query, lang, message = press.update.callback_query, press.lang, press.message
        assert query is not None
        resendable = sub.state is State.UNCERTAIN or (
            sub.state is State.FAILED and sub.problem is not None and sub.problem.code in RESENDABLE
        )
        if not resendable or not await self.s.store.resubmit(sub.id, self.s.clock()):
            await query.answer(t(lang, "stale_button"))
            return
        self.s.tracker.wake()
        await query.answer()
        if message is not None:
            await self._edit(message, t(lang, "resubmitted"), None)

    async def _picked(
        self, press: Press[callbacks.Pick], sub: Submission, collection_id: str
    ) -> None:
        update, lang, message = press.update, press.lang, press.message
        collection = await self.s.catalog.by_id(collection_id)
        if collection is None:
            if update.callback_query is not None:
                await update.callback_query.answer(t(lang, "stale_button"), show_alert=True)
            return
        if sub.state is not State.RECEIVED or not await self.s.store.choose_collection(
            sub.id, collection.id, collection.name, self.s.clock()
        ):
            if message is not None:
                await self._edit(message, t(lang, "pick_gone"), None)
            return
        self.s.tracker.wake()
        if message is not None:
            photos = len(await self.s.store.photos(sub.id))
            await self._edit(
                message,
                t(
                    lang,
                    "picked",
                    collection=collection.name,
                    sender=sub.user_name,
                    photos=render.count_text(lang, photos, "photos_one", "photos_many"),
                ),
                None,
            )

    async def _toggle(self, update: Update, lang: str, what: str, message: Message) -> bool:
        """A settings button; True when it answered the press itself."""
        chat = update.effective_chat
        assert chat is not None
        if not await self.may_change_settings(update) or (
            what == "admin" and not await self.is_admin(update)
        ):
            if update.callback_query:
                await update.callback_query.answer(t(lang, "admins_only"), show_alert=True)
            return True
        current = await self.s.store.chat(chat.id)
        now = self.s.clock()
        if what == "rb":
            await self.s.store.update_chat(
                chat.id, now, remove_background=not current.remove_background
            )
        elif what == "admin":
            await self.s.store.update_chat(chat.id, now, admin_only=not current.admin_only)
        elif what == "lang":
            lang = "en" if lang == "de" else "de"
            await self.s.store.update_chat(chat.id, now, language=lang)
        elif what == "am":
            shown = self._analysing(current)
            await self.s.store.update_chat(chat.id, now, analysing_message=not shown)
        elif what == "dg":
            await self.s.store.update_chat(
                chat.id, now, duplicate_guard=not current.duplicate_guard
            )
        elif what == "dig":
            if current.digest_time:
                await self.s.store.update_chat(chat.id, now, digest_time=None)
            else:
                await self._turn_digest_on(chat.id, DEFAULT_DIGEST_TIME)
        elif what == "nodef":
            await self.s.store.update_chat(
                chat.id, now, default_collection_id=None, default_collection_name=None
            )
        text, markup = await self._settings_view(chat.id, lang)
        await self._edit(message, text, markup)
        return False

    async def _edit(self, message: Message, text: str, markup: InlineKeyboardMarkup | None) -> None:
        """A new text and keyboard for a message the bot sent (a newer edit replaces one
        still waiting)."""
        await self.owe(edit_row(message.chat_id, message.message_id, text, markup))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A handler failed. A transient failure (SQLite busy, a network error) is handled
        again by the inbox (bot/telegram/inbox.py) and the user is told nothing yet; else
        the user hears that something went wrong. Either way no later handler group runs
        for this update (a failing gate must not let it through)."""
        error = context.error
        if retry_transient(error):
            log.warning("handler failed on something that passes (%r); trying again", error)
            raise ApplicationHandlerStop
        log.error("handler failed: %r", error, exc_info=error)
        if isinstance(update, Update) and update.effective_message:
            try:
                lang = await self.lang(update)
                await self.reply(update.effective_message, t(lang, "error_generic"))
            except Exception as exc:  # the database may be what failed
                log.warning("could not tell the user that something went wrong: %r", exc)
        raise ApplicationHandlerStop


async def register_commands(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """setMyCommands in English (default) and German, for private chats and groups."""
    for lang in LANGUAGES:
        commands = [BotCommand(name, t(lang, f"cmd_{name}")) for name in COMMANDS]
        code = None if lang == "en" else lang
        for scope in (BotCommandScopeDefault(), BotCommandScopeAllGroupChats()):
            await app.bot.set_my_commands(commands, scope=scope, language_code=code)
