"""The delivery loop: the outbox's rows go to Telegram within its flood limits by design.

Telegram allows a bot about 30 messages a second overall, about one a second in one chat
(short bursts tolerated) and about 20 a minute in one group; edits count, reactions do not
(RELIABILITY.md, the Bot API FAQ). Each chat with rows due gets a short-lived task that sends
them in priority order (results and questions, then replies, then optional output) while the
chat's budget allows; the bot-wide budget goes to the most urgent row of any chat first.

A chat whose budget is spent for longer than a moment, or that Telegram paused with a 429, is
*held* in SQLite (its rows wait, `not_before`) and its task ends: it delays only itself, and
nothing in memory stays per idle chat (budgets of chats that could send a full burst again are
forgotten). Rows written meanwhile wake the loop through the database's commit hook.

Before any of that, each round keeps the results history of analyses whose results are known
(bot/outbox.py `keep_owed_history`): /find, /report and the digest never wait for Telegram's
budget, and never miss results Telegram refused.

In groups, results that wait for the budget are combined into one reply when they fit
(bot/outbox.py `Deliverer.deliver_combined`).

Optional output yields to work: while submissions wait for a free tracker slot (a burst of
albums), optional rows (reactions, "analysing" messages, progress and board edits) wait too,
at most YIELD_AT_MOST seconds, so their sends take no time from the uploads; by then many are
coalesced (👀 replaced by 👌) or dropped (an "analysing" message whose results are owed).
Results, questions and replies never wait for this.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bot.outbox import HISTORY_PER_ROUND, Delivered, Deliverer, keep_owed_history
from storage import Store
from storage.outbox import Kind, OutboxRow, Priority

log = logging.getLogger(__name__)

ROWS_PER_READ = 16  # rows of one chat in memory at a time; the rest wait in SQLite
HOLD_AFTER = 1.0  # seconds: a longer wait for a chat's budget holds it in SQLite instead
DROP_GONE_AFTER = 86400.0  # rows owed to a chat that blocked the bot are dropped after this
DROP_OPTIONAL_AFTER = 600.0  # an optional message (a refusal) this late is dropped
SWEEP_EVERY = 30.0  # seconds between forgetting idle budgets and dropping stale rows
WAKE_COALESCE = 0.002  # seconds
YIELD_AT_MOST = 30.0  # seconds optional output waits for work that waits for a slot


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
        """No waiting at all (tests of the logic around sending)."""
        return cls(10**9, 1e9, 10**9, 10**9, 60.0, 0.0)


@dataclass
class _ChatBudget:
    tokens: float
    updated: float
    window: collections.deque[float] = field(default_factory=collections.deque)  # group sends
    paused_until: float = 0.0


class Budget:
    """Telegram's limits as the bot spends them: a token bucket per chat, a sliding window per
    group and one for the bot. It mirrors the emulator's model (sandbox/telegram.py
    `FloodLimiter`) with a small safety margin."""

    def __init__(self, limits: SendLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._chats: dict[int, _ChatBudget] = {}
        self._bot: collections.deque[float] = collections.deque()

    def _chat(self, chat_id: int) -> _ChatBudget:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _ChatBudget(float(self.limits.chat_burst), self.clock())
        return chat

    def _tokens(self, chat: _ChatBudget, now: float) -> float:
        limits = self.limits
        return min(
            float(limits.chat_burst),
            chat.tokens + (now - chat.updated) * limits.per_chat_per_second,
        )

    def wait_for(self, chat_id: int) -> float:
        """Seconds until one more message to `chat_id` stays within the chat's limits."""
        limits, now = self.limits, self.clock()
        chat = self._chats.get(chat_id)
        if chat is None:
            return 0.0
        waits = [max(0.0, chat.paused_until - now)]
        tokens = self._tokens(chat, now)
        if tokens < 1.0:
            waits.append((1.0 - tokens) / limits.per_chat_per_second + limits.margin)
        if chat_id < 0:  # groups, supergroups and channels have negative ids
            _expire(chat.window, now, limits.group_window)
            if len(chat.window) >= limits.per_group_per_minute:
                waits.append(chat.window[0] + limits.group_window - now + limits.margin)
        return max(waits)

    def bot_wait(self) -> float:
        now = self.clock()
        _expire(self._bot, now, 1.0)
        if len(self._bot) >= self.limits.per_bot_per_second:
            return self._bot[0] + 1.0 - now + self.limits.margin
        return 0.0

    def reserve_bot(self) -> float:
        """Take one of the bot's messages this second (see `settle`); returns its time."""
        now = self.clock()
        self._bot.append(now)
        return now

    def settle(self, chat_id: int, reserved: float, sent: int) -> None:
        """A row was delivered with `sent` counted messages: charge the chat, and correct the
        bot's reservation (a row may have sent nothing, or more)."""
        if sent <= 0:
            with contextlib.suppress(ValueError):
                self._bot.remove(reserved)
            return
        now = self.clock()
        for _ in range(sent - 1):
            self._bot.append(now)
        chat = self._chat(chat_id)
        chat.tokens = self._tokens(chat, now) - sent
        chat.updated = now
        if chat_id < 0:
            chat.window.extend([now] * sent)

    def pause(self, chat_id: int, seconds: float) -> None:
        self._chat(chat_id).paused_until = self.clock() + seconds

    def forget_idle(self) -> int:
        """Drop the budgets that are back to a full burst (nothing to remember)."""
        now, limits = self.clock(), self.limits
        idle = [
            chat_id
            for chat_id, chat in self._chats.items()
            if chat.paused_until <= now
            and self._tokens(chat, now) >= limits.chat_burst
            and not (chat.window and chat.window[-1] > now - limits.group_window)
        ]
        for chat_id in idle:
            del self._chats[chat_id]
        return len(idle)

    def __len__(self) -> int:
        return len(self._chats)


class DeliveryLoop:
    def __init__(
        self,
        *,
        store: Store,
        deliverer: Deliverer,
        limits: SendLimits | None = None,
        combine: Callable[[int], bool] = lambda chat_id: False,
        work_waiting: Callable[[], bool] = lambda: False,
        max_chats: int = 32,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.budget = Budget(limits or SendLimits(), clock)
        self.combine = combine  # chats whose waiting results may share one reply
        self.work_waiting = work_waiting  # optional output yields while this is true
        self.max_chats = max_chats
        self.wall = wall
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._active: dict[int, asyncio.Task[None]] = {}
        self._turns: list[tuple[int, int]] = []  # (priority, seq) waiting for the bot's budget
        self._seq = itertools.count()
        self._idle = asyncio.Event()
        self.delivered = 0

    # Lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery")

    async def stop(self, grace: float = 3.0) -> None:
        """Stop delivering; rows not sent stay in SQLite for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = list(self._active.values())
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    def wake(self, chats: Iterable[int] | None = None) -> None:
        """Rows were written for `chats` (the database's commit hook). A chat being drained
        reads its new rows itself; only another chat needs the loop."""
        if chats is None or any(chat_id not in self._active for chat_id in chats):
            self._wake.set()

    @property
    def chats_in_memory(self) -> int:
        """Chats the loop keeps anything for: budgets and tasks (bounded memory)."""
        return len(self.budget) + len(self._active)

    # The loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        swept = self.budget.clock()
        while True:
            self._wake.clear()
            timeout = 5.0
            try:
                # Results known are kept in the history first, delivered or not (and before
                # the chat's budget lets their message go).
                more = await keep_owed_history(self.store, self.wall()) >= HISTORY_PER_ROUND
                now = self.wall()
                yielding = self.work_waiting()
                owed_by = now - YIELD_AT_MOST if yielding else math.inf
                room = self.max_chats - len(self._active)
                if room > 0:
                    wanted = room + len(self._active)
                    due = await self.store.outbox_due_chats(now, wanted, optional_owed_by=owed_by)
                    for chat_id in due:
                        if chat_id not in self._active and len(self._active) < self.max_chats:
                            self._active[chat_id] = asyncio.create_task(
                                self._drain(chat_id), name=f"deliver-{chat_id}"
                            )
                below = Priority.OPTIONAL if yielding else len(Priority)
                next_at = await self.store.outbox_next_at(below=below)
                if next_at is not None:
                    timeout = min(timeout, max(0.0, next_at - self.wall()))
                    if timeout <= 0:
                        timeout = 1.0  # what is due is being sent: a finishing task wakes us
                if yielding:
                    timeout = min(timeout, 1.0)  # the work's end wakes us; optional rows age
                if self.budget.clock() - swept > SWEEP_EVERY:
                    swept = self.budget.clock()
                    await self._sweep()
                if more:
                    timeout = 0.0  # more history is owed: another round at once
            except Exception:
                log.exception("delivery loop failed; retrying")
                timeout = 1.0
            with contextlib.suppress(TimeoutError):  # not wait_for: see bot/tracker.py
                async with asyncio.timeout(max(0.001, timeout)):
                    await self._wake.wait()
            # Rows come in bursts (a commit per photo, per refusal): one look per burst.
            await asyncio.sleep(WAKE_COALESCE)

    async def _sweep(self) -> None:
        forgotten = self.budget.forget_idle()
        dropped = await self.store.drop_stale(self.wall() - DROP_GONE_AFTER, self.wall())
        if dropped:
            log.warning("dropped %d messages owed to chats that blocked the bot", dropped)
        late = await self.store.drop_late_optional(self.wall() - DROP_OPTIONAL_AFTER)
        if late:
            log.warning("dropped %d optional messages that waited too long", late)
        log.debug("delivery sweep: %d idle budgets forgotten", forgotten)

    async def _drain(self, chat_id: int) -> None:
        """Send this chat's due rows while its budget allows; hold it when it does not."""
        try:
            while True:
                rows = await self.store.outbox_rows(chat_id, self.wall(), ROWS_PER_READ)
                if not rows:
                    return
                row = rows[0]
                if self._yields(row):
                    return  # only optional rows are left: they wait for the work (see above)
                counts = row.kind is not Kind.REACT  # reactions are not messages
                wait = self.budget.wait_for(chat_id) if counts else 0.0
                if wait > HOLD_AFTER:
                    await self.store.hold_chat(chat_id, self.wall() + wait)
                    return
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # a more urgent row may have come meanwhile
                reserved = await self._bot_turn(row.priority) if counts else None
                try:
                    done = await self._deliver(chat_id, row, rows)
                except BaseException:
                    if reserved is not None:
                        self.budget.settle(chat_id, reserved, 0)
                    raise
                if reserved is not None:
                    self.budget.settle(chat_id, reserved, done.sent)
                self.delivered += done.sent
                if done.pause is not None:
                    self.budget.pause(chat_id, done.pause)
                    log.warning("chat %s paused by Telegram for %.0fs", chat_id, done.pause)
                    await self.store.hold_chat(chat_id, self.wall() + done.pause)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery to chat %s failed; holding it for a moment", chat_id)
            with contextlib.suppress(Exception):
                await self.store.hold_chat(chat_id, self.wall() + 5.0)
        finally:
            self._active.pop(chat_id, None)
            self._wake.set()

    def _yields(self, row: OutboxRow) -> bool:
        """An optional row waits while work waits for a slot (not longer than YIELD_AT_MOST)."""
        return (
            row.priority >= Priority.OPTIONAL
            and row.created_at > self.wall() - YIELD_AT_MOST
            and self.work_waiting()
        )

    async def _deliver(self, chat_id: int, row: OutboxRow, rows: list[OutboxRow]) -> Delivered:
        if row.kind is Kind.NOTIFY and self.combine(chat_id):
            same = [r for r in rows if r.kind is Kind.NOTIFY and r.thread_id == row.thread_id]
            if len(same) > 1 and await self.deliverer.combinable(row):
                together = [row] + [r for r in same[1:] if await self.deliverer.combinable(r)]
                if len(together) > 1:
                    return await self.deliverer.deliver_combined(together)
        return await self.deliverer.deliver(row)

    async def _bot_turn(self, priority: Priority) -> float:
        """Wait for a message of the bot's budget; the most urgent waiting row goes first."""
        ticket = (int(priority), next(self._seq))
        bisect.insort(self._turns, ticket)
        try:
            while True:
                wait = self.budget.bot_wait()
                if wait <= 0 and self._turns[0] == ticket:
                    return self.budget.reserve_bot()
                await asyncio.sleep(max(wait, 0.005))
        finally:
            self._turns.remove(ticket)


def _expire(window: collections.deque[float], now: float, span: float) -> None:
    while window and window[0] <= now - span:
        window.popleft()
