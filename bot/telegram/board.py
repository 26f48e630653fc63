"""The live board: one message per group chat (per forum topic) listing its open analyses.

A team at a market sends dozens of albums in minutes into one group, where Telegram allows
about 20 messages a minute. An "analysing" message per album, its edits and its results would
blow through that; the board replaces the per-album messages with one message edited in place:
sender, collection and progress of the oldest open analyses (at most render.BOARD_LINES, the
rest counted, so it always fits one message). A private chat shows one too while several
albums are analysed at once (bot/outbox.py folds their "analysing" messages into it).

Refreshes are outbox rows (`storage.outbox.board_row`), one per board, at the lowest
priority, coalesced, behind results; the board is rendered when its row is delivered, so it
shows what is open then. Each board has a budget of its own, one edit per
BOARD_INTERVAL_SECONDS: a change of state of what it shows (an album sent, analysed,
answered) may spend up to BOARD_BURST edits at once, so a short burst of albums is seen to
move; progress and ages wait until the budget is whole. A refresh the budget does not allow
yet says when it may go (`BoardShown.again_at`) and its row waits until then.

When nothing is open any more the board is deleted (deleting is not a message); a delete
that fails for a while (a 429, a network error) keeps the board and is tried again, and one
Telegram refuses (too old) turns the board into "nothing being analysed". A board Telegram
will not edit any more (deleted, or "message can't be edited") is forgotten and a fresh one
sent in its place.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from bot.chat import BoardShown
from bot.telegram import render
from bot.telegram.texts import t
from storage import Store

log = logging.getLogger(__name__)

BOARD_BURST = 3  # edits a change of state may spend at once; then one per interval
# Telegram allows about one message a second in a chat: changes of state that come faster
# are shown together, not spend the burst in a moment.
BOARD_MIN_GAP = 1.0

Key = tuple[int, int]  # chat id, forum topic (0: none)


@dataclass
class _Shown:
    """What the bot remembers of a board it sent or edited (in memory: after a start, every
    board has its whole budget)."""

    spent_until: float  # until when its edits used its budget (each edit: one interval)
    edited_at: float
    states: dict[int, str] = field(default_factory=dict)  # its lines' states (board_state)


class Boards:
    def __init__(
        self,
        *,
        store: Store,
        bot: Bot,
        language: Callable[[int], Any],
        interval: float = 10.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bot = bot
        self.language = language  # chat id -> awaitable language code
        self.interval = interval
        self.wall = wall
        self._shown: dict[Key, _Shown] = {}

    @staticmethod
    def applies(chat_id: int) -> bool:
        """Groups, supergroups and channels (negative ids) always have one; private chats
        only while several albums are analysed at once."""
        return chat_id < 0

    async def refresh(self, chat_id: int, thread: int) -> BoardShown:
        """Show the open analyses of this chat and topic, or remove the board. Telegram's
        errors other than those handled here go to the caller (a 429 pauses the chat and the
        refresh is tried again after it)."""
        key = (chat_id, thread)
        open_, total = await self.store.board_items(chat_id, thread or None, render.BOARD_LINES)
        message_id, shown = await self.store.board(chat_id, thread)
        if not open_:
            if message_id is None:
                return BoardShown()
            return await self._remove(chat_id, thread, message_id)
        lang = await self.language(chat_id)
        # A retry has no photos of its own: it counts its album's (it said "0 photos").
        albums = {s.id: s.retry_of or s.id for s in open_}
        counts = await self.store.photo_counts(sorted(set(albums.values())))
        photos = {sub_id: counts.get(album, 0) for sub_id, album in albums.items()}
        now = self.wall()
        text = render.board_text(lang, open_, photos, now, total=total)
        if text == shown:
            return BoardShown()
        states = {s.id: render.board_state(s) for s in open_}
        wait = self._wait(key, now, urgent=message_id is None or self._changed(key, states))
        if wait > 0:
            return BoardShown(again_at=now + wait)
        if message_id is not None:
            try:
                await self.bot.edit_message_text(text, chat_id=chat_id, message_id=message_id)
            except BadRequest as exc:
                error = str(exc).lower()
                if "not modified" in error:
                    await self.store.set_board(chat_id, thread, message_id, text, now)
                    return BoardShown()
                if "not found" not in error and "can't be edited" not in error:
                    raise
                # Deleted by someone, or frozen: forget it and show a fresh one below.
                log.info("board of chat %s not editable (%s): sending a fresh one", chat_id, exc)
                await self.store.set_board(chat_id, thread, None, None)
                if "not found" not in error:
                    with contextlib.suppress(TelegramError):
                        await self.bot.delete_message(chat_id, message_id)
                message_id = None
        if message_id is None:
            sent = await self.bot.send_message(chat_id, text, message_thread_id=thread or None)
            message_id = sent.message_id
        await self.store.set_board(chat_id, thread, message_id, text, now)
        before = self._shown.get(key)
        spent = max(before.spent_until, now) if before else now
        self._shown[key] = _Shown(spent + self.interval, now, states)
        return BoardShown(sent=1)

    async def _remove(self, chat_id: int, thread: int, message_id: int) -> BoardShown:
        """Nothing is open: delete the board. It is forgotten only once it is gone, or once
        Telegram refuses for good (a message too old to delete: it then says that nothing
        is being analysed); a 429 or a network error goes to the caller, which tries again."""
        sent = 0
        try:
            await self.bot.delete_message(chat_id, message_id)
        except BadRequest as exc:
            if "not found" not in str(exc).lower():
                log.info("board of chat %s not deleted (%s): marked done", chat_id, exc)
                done = t(await self.language(chat_id), "board_done")
                with contextlib.suppress(TelegramError):
                    await self.bot.edit_message_text(done, chat_id=chat_id, message_id=message_id)
                    sent = 1
        await self.store.set_board(chat_id, thread, None, None)
        shown = self._shown.get((chat_id, thread))
        if shown is not None:
            shown.states = {}  # its budget stays spent: the next board starts from it
        now = self.wall()
        for whole in [k for k, b in self._shown.items() if not b.states and b.spent_until <= now]:
            del self._shown[whole]  # no board, budget whole again: nothing to keep
        return BoardShown(sent=sent)

    def _changed(self, key: Key, states: dict[int, str]) -> bool:
        """Whether an analysis the board showed changed state or finished (new ones coming
        in, progress and ages are not changes of state). Unknown (after a start): changed."""
        shown = self._shown.get(key)
        if shown is None:
            return True
        return any(states.get(i) != state for i, state in shown.states.items())

    def _wait(self, key: Key, now: float, *, urgent: bool) -> float:
        """Seconds until the board's budget allows an edit: a change of state may spend a
        burst (edits at least BOARD_MIN_GAP apart), anything else waits until the budget is
        whole."""
        shown = self._shown.get(key)
        if shown is None:
            return 0.0
        if not urgent:
            return max(0.0, shown.spent_until - now)
        allowed = max(
            shown.spent_until - (BOARD_BURST - 1) * self.interval,
            shown.edited_at + min(BOARD_MIN_GAP, self.interval),
        )
        return max(0.0, allowed - now)
