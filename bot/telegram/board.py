"""The live board: one message per group chat (per forum topic) listing its open analyses.

A team at a market sends dozens of albums in minutes into one group, where Telegram allows
about 20 messages a minute. An "analysing" message per album, its edits and its results would
blow through that; the board replaces the per-album messages with one message edited in place:
sender, collection and progress of the oldest open analyses (at most render.BOARD_LINES, the
rest counted, so it always fits one message). A private chat shows one too while several
albums are analysed at once (bot/outbox.py folds their "analysing" messages into it).

Refreshes are outbox rows (`storage.outbox.board_row`), at most one per BOARD_INTERVAL_SECONDS
per board, at the lowest priority, coalesced, behind results; the board is rendered when its
row is delivered, so it shows what is open then. When nothing is open any more the board is
deleted (deleting is not a message).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot.telegram import render
from storage import Store

log = logging.getLogger(__name__)


class Boards:
    def __init__(
        self,
        *,
        store: Store,
        bot: Bot,
        language: Callable[[int], Any],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bot = bot
        self.language = language  # chat id -> awaitable language code
        self.wall = wall

    @staticmethod
    def applies(chat_id: int) -> bool:
        """Groups, supergroups and channels (negative ids) always have one; private chats
        only while several albums are analysed at once."""
        return chat_id < 0

    async def refresh(self, chat_id: int, thread: int) -> int:
        """Show the open analyses of this chat and topic, or remove the board; how many
        messages that counted against the limits (a send or an edit: 1)."""
        open_, total = await self.store.board_items(chat_id, thread or None, render.BOARD_LINES)
        message_id, shown = await self.store.board(chat_id, thread)
        if not open_:
            if message_id is not None:
                await self.store.set_board(chat_id, thread, None, None)
                with contextlib.suppress(TelegramError):
                    await self.bot.delete_message(chat_id, message_id)
            return 0
        lang = await self.language(chat_id)
        counts = await self.store.photo_counts([s.id for s in open_])
        text = render.board_text(lang, open_, counts, self.wall(), total=total)
        if text == shown:
            return 0
        now = self.wall()
        if message_id is None:
            sent = await self.bot.send_message(chat_id, text, message_thread_id=thread or None)
            await self.store.set_board(chat_id, thread, sent.message_id, text, now)
            return 1
        try:
            await self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
        except BadRequest as exc:
            if "not modified" in str(exc).lower():
                return 0
            if "not found" in str(exc).lower():  # someone deleted it: a new one next time
                await self.store.set_board(chat_id, thread, None, None)
                return 0
            raise
        await self.store.set_board(chat_id, thread, message_id, text, now)
        return 1
