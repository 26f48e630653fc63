"""Every message the bot sends, within Telegram's flood limits by design, not by retrying.

Telegram allows a bot about 30 messages a second overall, about one a second in one chat (short
bursts tolerated) and about 20 a minute in one group; edits count (RELIABILITY.md, the Bot API
FAQ). Past that it answers 429 and the chat's queue stalls. So each chat has a queue here,
ordered by value: results first, then other replies, then progress edits, which are coalesced
(only the newest text of a message waits). A message leaves only when the chat's and the bot's
budgets allow it; `wait_for(chat)` tells callers how long that would be, so they can combine
work instead of queueing it (several results in one reply). A 429 that still comes pauses only
that chat, for as long as Telegram said.

The accounting mirrors the emulator's model (sandbox/telegram.py `FloodLimiter`) with a small
safety margin: a token bucket per chat, a sliding 60-second window per group, a sliding
1-second window for the bot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from telegram.error import RetryAfter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)

T = TypeVar("T")


class Priority(enum.IntEnum):
    RESULT = 0  # results, refusals, questions: what the user waits for
    REPLY = 1  # answers to commands and buttons
    PROGRESS = 2  # board and progress edits: coalesced, dropped first


@dataclass(frozen=True)
class SendLimits:
    per_bot_per_second: int = 30
    per_chat_per_second: float = 1.0
    chat_burst: int = 3
    per_group_per_minute: int = 20
    group_window: float = 60.0  # the "minute" of the group limit, seconds
    margin: float = 0.1  # seconds added to every wait: clocks and latency differ a little

    @classmethod
    def unlimited(cls) -> SendLimits:
        """No waiting at all (unit tests of the logic around sending)."""
        return cls(10**9, 1e9, 10**9, 10**9, 60.0, 0.0)


class Superseded(Exception):
    """A newer edit of the same message took this one's place in the queue."""


@dataclass
class _Job:
    priority: Priority
    seq: int
    call: Callable[[], Awaitable[Any]]
    future: asyncio.Future[Any]
    key: str | None = None


@dataclass
class _Chat:
    tokens: float
    updated: float
    window: collections.deque[float] = field(default_factory=collections.deque)  # group sends
    jobs: list[_Job] = field(default_factory=list)
    paused_until: float = 0.0
    worker: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 deprecates the float form of `retry_after`
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class SendScheduler:
    def __init__(
        self, limits: SendLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or SendLimits()
        self.clock = clock
        self._chats: dict[int, _Chat] = {}
        self._bot_window: collections.deque[float] = collections.deque()
        self._seq = itertools.count()
        self.floods = 0  # 429s received despite the budget
        self.sent = 0

    # Budget ----------------------------------------------------------------------------------

    def _chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(float(self.limits.chat_burst), self.clock())
        return chat

    def wait_for(self, chat_id: int) -> float:
        """Seconds until one more message to `chat_id` stays within every limit."""
        limits, now = self.limits, self.clock()
        chat = self._chat(chat_id)
        tokens = min(
            float(limits.chat_burst),
            chat.tokens + (now - chat.updated) * limits.per_chat_per_second,
        )
        waits = [max(0.0, chat.paused_until - now)]
        if tokens < 1.0:
            waits.append((1.0 - tokens) / limits.per_chat_per_second + limits.margin)
        if chat_id < 0:  # groups, supergroups and channels have negative ids
            _expire(chat.window, now, limits.group_window)
            if len(chat.window) >= limits.per_group_per_minute:
                waits.append(chat.window[0] + limits.group_window - now + limits.margin)
        _expire(self._bot_window, now, 1.0)
        if len(self._bot_window) >= limits.per_bot_per_second:
            waits.append(self._bot_window[0] + 1.0 - now + limits.margin)
        return max(waits)

    def _spend(self, chat_id: int) -> None:
        limits, now = self.limits, self.clock()
        chat = self._chat(chat_id)
        chat.tokens = (
            min(
                float(limits.chat_burst),
                chat.tokens + (now - chat.updated) * limits.per_chat_per_second,
            )
            - 1.0
        )
        chat.updated = now
        if chat_id < 0:
            chat.window.append(now)
        self._bot_window.append(now)
        self.sent += 1

    # Queue -----------------------------------------------------------------------------------

    async def submit(
        self,
        chat_id: int,
        call: Callable[[], Awaitable[T]],
        *,
        priority: Priority = Priority.REPLY,
        key: str | None = None,
    ) -> T:
        """Run `call` (one Telegram message or edit to `chat_id`) when the budget allows, in
        priority order. With `key`, a job still queued under the same key is replaced (it
        raises Superseded): only the newest edit of a message is sent."""
        chat = self._chat(chat_id)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if key is not None:
            for job in list(chat.jobs):
                if job.key == key:
                    chat.jobs.remove(job)
                    if not job.future.done():
                        job.future.set_exception(Superseded(key))
                        job.future.exception()  # retrieved: the caller may be gone
        chat.jobs.append(_Job(priority, next(self._seq), call, future, key))
        chat.wake.set()
        if chat.worker is None or chat.worker.done():
            chat.worker = asyncio.create_task(self._work(chat_id), name=f"send-{chat_id}")
        return await future

    async def _work(self, chat_id: int) -> None:
        chat = self._chats[chat_id]
        while chat.jobs:
            wait = self.wait_for(chat_id)
            if wait > 0:
                chat.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(chat.wake.wait(), timeout=wait)
                continue  # a more urgent job may have come meanwhile
            job = min(chat.jobs, key=lambda j: (j.priority, j.seq))
            chat.jobs.remove(job)
            if job.future.done():  # the caller gave up (cancelled)
                continue
            self._spend(chat_id)
            try:
                result = await job.call()
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                self.floods += 1
                chat.paused_until = self.clock() + seconds
                log.warning("Telegram flood limit in chat %s: waiting %.0fs", chat_id, seconds)
                chat.jobs.append(job)  # same priority and sequence: it goes first again
                continue
            except Exception as exc:
                if not job.future.done():
                    job.future.set_exception(exc)
                continue
            if not job.future.done():
                job.future.set_result(result)

    async def close(self) -> None:
        for chat in self._chats.values():
            if chat.worker is not None:
                chat.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chat.worker
            for job in chat.jobs:
                if not job.future.done():
                    job.future.cancel()


def _expire(window: collections.deque[float], now: float, span: float) -> None:
    while window and window[0] <= now - span:
        window.popleft()
