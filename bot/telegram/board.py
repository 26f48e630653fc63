"""The live board: one message per group chat (per forum topic) listing its open analyses.

A team at a market sends dozens of albums in minutes into one group, where Telegram allows
about 20 messages a minute. An "analysing" message per album, its edits and its results would
blow through that; the board replaces the per-album messages with one message edited in place:
sender, collection and progress of every open analysis. Edits are throttled (at most one per
BOARD_INTERVAL seconds, and only on a real change) and queued at the lowest priority, coalesced,
behind results. When nothing is open any more the board is deleted (deleting is not a message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot.telegram import render
from bot.telegram.scheduler import Priority, SendScheduler, Superseded
from storage import Store

log = logging.getLogger(__name__)

BOARD_INTERVAL = 10.0  # seconds between two edits of one board (6 a minute at most)


class Boards:
    def __init__(
        self,
        *,
        store: Store,
        bot: Bot,
        scheduler: SendScheduler,
        language: Callable[[int], Any],
        interval: float = BOARD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bot = bot
        self.scheduler = scheduler
        self.language = language  # chat id -> awaitable language code
        self.interval = interval
        self.clock = clock
        self.wall = wall
        self._pending: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._last: dict[tuple[int, int], float] = {}
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}

    @staticmethod
    def applies(chat_id: int) -> bool:
        """Groups, supergroups and channels (negative ids); private chats keep their
        per-album message."""
        return chat_id < 0

    def touch(self, chat_id: int, thread_id: int | None) -> None:
        """Something on this board changed: refresh it soon (at most once per interval)."""
        if not self.applies(chat_id):
            return
        key = (chat_id, thread_id or 0)
        task = self._pending.get(key)
        if task is not None and not task.done():
            return
        self._pending[key] = asyncio.create_task(self._refresh_later(key), name=f"board-{key}")

    async def _refresh_later(self, key: tuple[int, int]) -> None:
        wait = self._last.get(key, -1e9) + self.interval - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)
        self._pending.pop(key, None)
        try:
            await self.refresh(*key)
        except Exception:
            log.exception("board refresh failed for chat %s", key[0])

    async def refresh(self, chat_id: int, thread: int) -> None:
        """Show the open analyses of this chat and topic, or remove the board."""
        key = (chat_id, thread)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self._last[key] = self.clock()
            open_ = await self.store.board_items(chat_id, thread or None)
            message_id, shown = await self.store.board(chat_id, thread)
            if not open_:
                if message_id is not None:
                    await self.store.set_board(chat_id, thread, None, None)
                    with contextlib.suppress(TelegramError):
                        await self.bot.delete_message(chat_id, message_id)
                return
            lang = await self.language(chat_id)
            counts = await self.store.photo_counts([s.id for s in open_])
            text = render.board_text(lang, open_, counts, self.wall())
            if text == shown:
                return
            if message_id is None:
                sent = await self.scheduler.submit(
                    chat_id,
                    lambda: self.bot.send_message(
                        chat_id,
                        text,
                        message_thread_id=thread or None,
                    ),
                    priority=Priority.REPLY,
                )
                await self.store.set_board(chat_id, thread, sent.message_id, text)
                return
            board_message = message_id

            async def edit() -> str | None:
                # Rendered when the chat's queue gets to it (results go first, so this may be
                # seconds later): the board shows what is open then, not when it was queued.
                items = await self.store.board_items(chat_id, thread or None)
                if not items:
                    return None  # the refresh after the last result removes the board
                counts = await self.store.photo_counts([s.id for s in items])
                now_text = render.board_text(lang, items, counts, self.wall())
                if now_text != shown:
                    await self.bot.edit_message_text(
                        now_text, chat_id=chat_id, message_id=board_message
                    )
                return now_text

            try:
                edited = await self.scheduler.submit(
                    chat_id, edit, priority=Priority.PROGRESS, key=f"board:{chat_id}:{thread}"
                )
            except Superseded:
                return
            except BadRequest as exc:
                if "not modified" in str(exc).lower():
                    return
                if "not found" in str(exc).lower():  # someone deleted it: a new one next time
                    await self.store.set_board(chat_id, thread, None, None)
                    self.touch(chat_id, thread)
                    return
                raise
            if edited is not None:
                await self.store.set_board(chat_id, thread, board_message, edited)

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        await asyncio.gather(*self._pending.values(), return_exceptions=True)
