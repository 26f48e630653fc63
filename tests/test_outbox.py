"""The outbox and its delivery loop (storage/outbox.py, bot/outbox.py, bot/telegram/delivery.py).

Unit level, over a real SQLite file, the real deliverer and the real loop, with the chat port
as a stand-in that records sends and answers 429 for chosen chats: results go before optional
output, a paused chat delays only itself, idle chats leave memory. End to end (the emulator,
the sandbox, the real bot): an "analysing" message whose results are owed is never sent, a
burst of albums in a private chat gets one status message, strangers are refused once, and a
kill between a state change and its delivery delivers exactly once after the restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.chat import BoardShown, Outgoing, RetryLater
from bot.metrics import Metrics
from bot.outbox import Deliverer
from bot.telegram.delivery import YIELD_AT_MOST, Budget, DeliveryLoop, SendLimits
from storage import Database, Store, Submission
from storage.outbox import Kind, OutboxRow, Owed, Priority
from tests.conftest import eventually
from tests.harness import ANNA, BEN, Harness, bot_running, results_replies
from tests.proc import BotProcess, db_rows

pytestmark = pytest.mark.timeout(60)


class RecordingChat:
    """The chat port: TEXT rows are recorded as sent; chats in `paused` answer 429."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.paused: dict[int, float] = {}
        self.counter = 0
        self.changed = asyncio.Event()

    async def post(self, row: OutboxRow) -> int | None:
        if row.chat_id in self.paused:
            raise RetryLater(self.paused[row.chat_id])
        self.counter += 1
        self.sent.append((row.chat_id, str(row.payload["text"])))
        self.changed.set()
        return self.counter

    async def download(self, file_id: str) -> bytes:
        raise AssertionError("not used")

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        raise AssertionError("not used")

    async def messages_for(self, sub: Submission) -> list[Outgoing]:
        raise AssertionError("not used")

    async def question(self, sub: Submission, payload: dict[str, Any]) -> Outgoing:
        raise AssertionError("not used")

    def analysing(self, sub: Submission, products: int) -> Outgoing:
        raise AssertionError("not used")

    async def send(self, sub: Submission, out: Outgoing) -> int:
        raise AssertionError("not used")

    async def send_combined(self, subs: list[Submission]) -> tuple[int, int]:
        raise AssertionError("not used")

    async def edit_progress(self, sub: Submission) -> None:
        raise AssertionError("not used")

    async def refresh_board(self, chat_id: int, thread: int) -> BoardShown:
        raise AssertionError("not used")

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(10):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def text(chat_id: int, body: str, priority: Priority = Priority.REPLY) -> Owed:
    return Owed(chat_id, Kind.TEXT, priority, payload={"text": body})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Store, RecordingChat, DeliveryLoop]]:
    db = await Database.open(tmp_path / "outbox.sqlite3")
    store = Store(db)
    chat = RecordingChat()
    deliverer = Deliverer(store=store, chat=chat, metrics=Metrics())
    loop = DeliveryLoop(store=store, deliverer=deliverer, limits=SendLimits.unlimited())
    db.on_owed = loop.wake
    try:
        yield store, chat, loop
    finally:
        await loop.stop()
        await db.close()


async def test_results_go_before_optional_output_written_earlier(
    rig: tuple[Store, RecordingChat, DeliveryLoop],
) -> None:
    store, chat, loop = rig
    now = time.time()
    await store.owe(*(text(7, f"progress {i}", Priority.OPTIONAL) for i in range(3)), now=now)
    await store.owe(text(7, "reply"), now=now)
    await store.owe(text(7, "results", Priority.RESULT), now=now)
    loop.start()
    await chat.wait_for(lambda: len(chat.sent) == 5, "every row")
    assert [body for _, body in chat.sent] == [
        "results",
        "reply",
        "progress 0",
        "progress 1",
        "progress 2",
    ]
    assert await store.outbox_size() == 0


async def test_a_paused_chat_delays_only_itself(
    rig: tuple[Store, RecordingChat, DeliveryLoop],
) -> None:
    """A group answering 429 (retry after 30 s) with 30 results owed: the other chats' rows
    go at once; the group's wait in SQLite, not in a task, and go once after the pause."""
    store, chat, loop = rig
    group = -100
    chat.paused[group] = 30.0
    now = time.time()
    await store.owe(*(text(group, f"group {i}", Priority.RESULT) for i in range(30)), now=now)
    loop.start()
    await eventually(lambda: _true(group not in loop._active), what="the group held")
    for private in range(1, 21):
        await store.owe(text(private, f"private {private}", Priority.RESULT), now=time.time())
    await chat.wait_for(lambda: len(chat.sent) == 20, "every private chat's row")
    assert {c for c, _ in chat.sent} == set(range(1, 21))
    rows = await store.outbox_rows(group, time.time() + 60, 100)
    assert len(rows) == 30 and all(r.not_before >= now + 29 for r in rows), "held 30 s"
    del chat.paused[group]
    loop.budget.pause(group, 0)
    async with store.db.transaction() as tx:  # the pause is over (the clock moved on)
        await tx.execute("UPDATE outbox SET not_before = 0")
    loop.wake()
    await chat.wait_for(lambda: len(chat.sent) == 50, "the group's rows after the pause")
    bodies = [body for c, body in chat.sent if c == group]
    assert sorted(bodies) == sorted(f"group {i}" for i in range(30)), "each once"


async def test_idle_chats_leave_memory(rig: tuple[Store, RecordingChat, DeliveryLoop]) -> None:
    store, chat, loop = rig
    loop.start()
    await store.owe(*(text(1000 + i, "hi") for i in range(300)), now=time.time())
    await chat.wait_for(lambda: len(chat.sent) == 300, "every row")
    await eventually(lambda: _true(not loop._active), what="no task per idle chat")
    assert len(loop.budget) == 300
    loop.budget.clock = lambda: time.monotonic() + 3600  # an hour later: all idle
    assert loop.budget.forget_idle() == 300
    assert loop.chats_in_memory == 0


async def test_late_optional_messages_are_dropped_and_the_rest_kept(
    rig: tuple[Store, RecordingChat, DeliveryLoop],
) -> None:
    store, _, _ = rig
    await store.owe(text(5, "refusal", Priority.OPTIONAL), text(6, "reply"), now=1000.0)
    await store.owe(text(7, "refusal, fresh", Priority.OPTIONAL), now=1700.0)
    assert await store.drop_late_optional(1100.0) == 1
    assert await store.outbox_count(5) == 0
    assert await store.outbox_count(6) == 1 and await store.outbox_count(7) == 1


async def test_the_due_chats_are_found_in_priority_order_behind_a_backlog(
    rig: tuple[Store, RecordingChat, DeliveryLoop],
) -> None:
    """Thousands of optional rows waiting do not hide a chat with results due."""
    store, _, _ = rig
    await store.owe(*(text(10_000 + i, "refusal", Priority.OPTIONAL) for i in range(3000)), now=1.0)
    await store.owe(text(42, "results", Priority.RESULT), now=2.0)
    assert (await store.outbox_due_chats(10.0, 5))[0] == 42
    assert len(await store.outbox_due_chats(10.0, 5)) == 5


async def test_optional_output_yields_while_work_waits_for_a_slot(
    rig: tuple[Store, RecordingChat, DeliveryLoop],
) -> None:
    """While submissions wait for a tracker slot, optional rows wait too (their sends would
    take the time of the uploads); results and replies go at once; the end of the backlog
    wakes the loop and the optional rows follow."""
    store, chat, loop = rig
    waiting = [True]
    loop.work_waiting = lambda: waiting[0]
    now = time.time()
    await store.owe(*(text(7, f"progress {i}", Priority.OPTIONAL) for i in range(3)), now=now)
    await store.owe(text(8, "results", Priority.RESULT), text(7, "reply"), now=now)
    loop.start()
    await chat.wait_for(lambda: len(chat.sent) == 2, "the results and the reply")
    await eventually(lambda: _true(not loop._active), what="every drain ended")
    assert sorted(body for _, body in chat.sent) == ["reply", "results"]
    assert await store.outbox_count(7) == 3, "the optional rows wait"
    waiting[0] = False
    loop.wake()  # what the tracker does when its backlog clears
    await chat.wait_for(lambda: len(chat.sent) == 5, "the optional rows")
    assert [body for _, body in chat.sent[2:]] == [f"progress {i}" for i in range(3)]


async def test_optional_output_waits_for_work_only_so_long(
    rig: tuple[Store, RecordingChat, DeliveryLoop],
) -> None:
    """A backlog that never ends (sustained overload) does not starve optional output: a
    row owed longer than YIELD_AT_MOST goes anyway, a fresh one still waits."""
    store, chat, loop = rig
    loop.work_waiting = lambda: True
    now = time.time()
    await store.owe(text(7, "old", Priority.OPTIONAL), now=now - YIELD_AT_MOST - 1)
    await store.owe(text(9, "fresh", Priority.OPTIONAL), now=now)
    loop.start()
    await chat.wait_for(lambda: len(chat.sent) == 1, "the row owed too long")
    await eventually(lambda: _true(not loop._active), what="every drain ended")
    assert chat.sent == [(7, "old")]
    assert await store.outbox_count(9) == 1


def test_the_budget_keeps_telegrams_limits() -> None:
    now = [0.0]
    budget = Budget(SendLimits(margin=0.0), clock=lambda: now[0])
    for _ in range(3):  # a burst of 3 in one chat
        assert budget.wait_for(1) == 0
        budget.settle(1, budget.reserve_bot(), 1)
    assert budget.wait_for(1) == pytest.approx(1.0)
    for _ in range(20):  # a group: 20 a minute
        now[0] += 1.5
        assert budget.wait_for(-5) == 0
        budget.settle(-5, budget.reserve_bot(), 1)
    assert budget.wait_for(-5) == pytest.approx(1.5 + 60 - 30)  # the first of 20 leaves
    reserved = budget.reserve_bot()
    budget.settle(2, reserved, 0)  # nothing sent: the reservation is given back
    assert budget.bot_wait() == 0


async def _true(value: bool) -> bool:
    return value


# End to end --------------------------------------------------------------------------------


async def test_an_analysing_message_whose_results_are_owed_is_never_sent(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Anna's chat is paused (429, retry after 2 s) when the bot would say "analysing"; the
    analysis finishes meanwhile: she gets the results, never the stale "analysing"."""
    await harness.rs(
        "/sandbox/telegram/faults",
        {"method": "setMessageReaction", "kind": "429", "retry_after": 2, "count": 1},
    )
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.3})
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results", within=20)
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"])]
    assert not any("Analysing" in t for t in texts), texts
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


async def test_a_burst_of_albums_in_a_private_chat_gets_one_status_message(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs("/sandbox/config", {"analysis_seconds": 3})
    async with bot_running(settings_for()):
        for _ in range(5):
            await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_sent(
            ANNA["id"], lambda a: "Results" in (a["text"] or ""), what="the first results"
        )
        await eventually(
            lambda: _replies(harness, ANNA["id"], 5), what="every results reply", within=30
        )
    sent = [a for a in await harness.sent(ANNA["id"]) if a["kind"] == "send"]
    status = [a for a in sent if "Results" not in (a["text"] or "")]
    assert len(status) <= 2, [a["text"] for a in status]  # one status message, not five


async def test_uploads_waiting_for_a_slot_go_before_optional_output(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Four photos wait for one tracker slot (WORKER_CONCURRENCY=1, each upload takes 0.3 s):
    no reaction, "analysing" message or board goes to Anna while photos still wait for the
    slot; they follow once the last upload has its slot."""
    await harness.rs("/sandbox/faults", {"latency": 0.3, "match": "createAndAnalyze"})
    await harness.rs("/sandbox/config", {"analysis_seconds": 3600})
    for _ in range(4):  # waiting at Telegram: the bot takes them in at once
        await harness.photo(ANNA, caption="/scan Electronics")
    async with bot_running(settings_for(worker_concurrency=1)):
        await eventually(lambda: _creates(harness, 4), what="four uploads", within=20)
        await harness.wait_sent(ANNA["id"], lambda a: a["kind"] == "reaction", what="👀")
    creates = sorted(r["at"] for r in await harness.creates())
    optional = [
        a
        for a in await harness.sent(ANNA["id"])
        if a["kind"] != "send" or "Results" not in (a.get("text") or "")
    ]
    assert optional, "the optional output followed"
    first = min(a["at"] for a in optional)
    assert first > creates[2], (first, creates)  # the fourth's slot was free by then


async def _creates(harness: Harness, wanted: int) -> bool:
    return len(await harness.creates()) >= wanted


async def _replies(harness: Harness, chat_id: int, wanted: int) -> bool:
    return len(results_replies(await harness.sent(chat_id))) >= wanted


async def test_strangers_are_refused_once_an_hour(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    stranger = {"id": 777001, "first_name": "Eve", "language_code": "en"}
    async with bot_running(settings_for()):
        for _ in range(3):
            await harness.text(stranger, "/start")
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results")  # everything before it was handled
        await harness.wait_text(stranger["id"], "This bot is private")
    refusals = [a for a in await harness.sent(stranger["id"]) if a["kind"] == "send"]
    assert len(refusals) == 1


async def test_killed_between_the_state_change_and_its_delivery_delivers_once(
    harness: Harness, settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    """Ben's chat refuses sends (429) while his analysis completes: the results are owed in
    the outbox, not sent. Killed there and started again, the bot sends them exactly once
    (after what is left of Telegram's wait: the hold is kept in SQLite)."""
    settings = settings_for()
    with BotProcess(settings, tmp_path / "bot.log") as bot:
        await harness.rs(
            "/sandbox/telegram/faults",
            {"chat_id": BEN["id"], "kind": "429", "retry_after": 3, "count": 1000},
        )
        await harness.photo(BEN, caption="/scan Electronics")

        async def owed() -> bool:
            subs = db_rows(settings.database_path, "SELECT state FROM submissions")
            rows = db_rows(settings.database_path, "SELECT kind FROM outbox WHERE kind = 'notify'")
            return [r["state"] for r in subs] == ["completed"] and len(rows) == 1

        await eventually(owed, what="completed, its results owed", within=30)
        bot.kill()
    await harness.rs("/sandbox/telegram/faults", {"clear": True})
    assert results_replies(await harness.sent(BEN["id"])) == []
    with BotProcess(settings, tmp_path / "bot.log"):
        await harness.wait_text(BEN["id"], "Results", within=20)
        await eventually(
            lambda: _notified(settings.database_path), what="recorded as notified", within=10
        )
    assert len(results_replies(await harness.sent(BEN["id"]))) == 1


async def _notified(path: Path) -> bool:
    return [r["state"] for r in db_rows(path, "SELECT state FROM submissions")] == ["notified"]
