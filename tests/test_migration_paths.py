"""Where Telegram moves a chat, the bot follows, end to end through the emulator: a group
upgraded to a supergroup (results owed then are delivered once under the new id, settings and
history move, the old id on the allowlist admits the new one), and a forum topic deleted or
closed (its results land in the general topic, naming the sender and the topic)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from bot.app import BotRuntime
from bot.outbox import GONE_RETRY_SECONDS, MAX_DIGEST_TRIES
from bot.telegram.inbox import MAX_HANDLER_ATTEMPTS
from sandbox.data import fake_jpeg
from storage import CaptionInfo, Database, State, Store
from storage.history import NewHistoryRow
from storage.outbox import Kind, Owed, Priority
from tests.conftest import eventually, new_photo
from tests.harness import ANNA, Harness, bot_running, results_replies

ANNA_ID = cast(int, ANNA["id"])
# A member of the team group who is not on ALLOWED_USER_IDS: the group's id admits her.
DORA = {"id": 104, "first_name": "Dora", "language_code": "en"}
OLD_ID = -4001
OLD_GROUP: dict[str, Any] = {"id": OLD_ID, "type": "group", "title": "Flea market"}
FORUM: dict[str, Any] = {
    "id": -1001234500077,
    "type": "supergroup",
    "title": "Market team",
    "is_forum": True,
}


def photo_titled(title: str) -> bytes:
    """A photo the sandbox analyses as `title` (sandbox/data.py)."""
    return fake_jpeg(title) + f"TITLE:{title}\n".encode()


def store_of(runtime: BotRuntime) -> Any:
    assert runtime.store is not None
    return runtime.store


async def upgrade(harness: Harness, chat_id: int, *, updates: bool) -> dict[str, Any]:
    return await harness.rs(
        "/sandbox/telegram/upgrade", {"chat_id": chat_id, "from": DORA, "updates": updates}
    )


def results_for(actions: list[dict[str, Any]], title: str) -> list[dict[str, Any]]:
    return [a for a in results_replies(actions) if title in (a.get("text") or "")]


async def calls(harness: Harness) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await harness.http.get("/sandbox/telegram/calls")).json()[
        "calls"
    ]
    return found


async def _found(store: Any, chat_id: int, text: str) -> bool:
    _, total = await store.history.find(chat_id, text)
    return int(total) > 0


# A group upgraded to a supergroup ------------------------------------------------------------


async def test_migrate_chat_moves_what_the_chat_owns(store: Store) -> None:
    """Storage alone: settings, submissions, history, a pending /scan, owed messages and
    topic names move in one transaction; what points at the old chat's messages is dropped;
    photos keep their address; the pair is remembered; a second call is harmless."""
    old, new, now = -4001, -1004001, 1_000.0
    await store.update_chat(old, now, default_collection_name="Books", digest_time="20:00")
    added = await store.add_photo(
        new_photo(chat_id=old),
        caption=None,
        problem=None,
        language="en",
        remove_background=False,
        album_window=0.0,
        album_max_wait=0.0,
        now=now,
    )
    await store.set_pending_scan(old, 10, CaptionInfo("Books", {}), now + 300)
    await store.set_board(old, 0, 77, "board", now)
    await store.remember_topic(old, 5, "Shoes")
    await store.history.add(
        [
            NewHistoryRow(
                chat_id=old,
                submission_id=added.submission_id,
                product_index=0,
                sender_id=10,
                sender_name="Dora",
                analysed_at=now,
                title="Brass Lamp",
                message_id=12,
                message_link=None,
            )
        ]
    )
    await store.owe(
        Owed(old, Kind.TEXT, Priority.REPLY, reply_to=3, payload={"text": "hi"}),
        Owed(old, Kind.EDIT, Priority.REPLY, key=f"edit:{old}:4", payload={"message_id": 4}),
        now=now,
    )

    moved = await store.migrate_chat(old, new, now + 1)
    assert moved["chats"] == 1 and moved["submissions"] == 1 and moved["history"] == 1
    assert (await store.chat(new)).default_collection_name == "Books"
    assert (await store.chat(old)).default_collection_name is None
    sub = await store.get(added.submission_id)
    assert sub is not None and sub.chat_id == new
    assert await store.made_elsewhere(sub.id, new), "its photos are the old chat's messages"
    assert await store.by_photo(old, sub.message_id) is not None, "photos keep their address"
    [hit], _ = await store.history.find(new, "brass")
    assert hit.message_id is None, "the old chat's message id means nothing in the new one"
    rows = await store.outbox_rows(new, now + 2, 10)
    assert [(r.kind, r.reply_to) for r in rows if r.kind is not Kind.BOARD] == [(Kind.TEXT, None)]
    assert [r for r in rows if r.kind is Kind.BOARD], "a board is owed in the new chat"
    assert await store.outbox_count(old) == 0
    assert await store.board(new, 0) == (None, None) and await store.board(old, 0) == (None, None)
    assert await store.topic_name(new, 5) == "Shoes"
    assert await store.predecessors(new) == [old]
    assert await store.successor(old) == new
    assert await store.migrate_chat(old, new, now + 5) == {
        "questions": 0,
        "submissions": 0,
        "history": 0,
        "pending_scans": 0,
        "outbox": 0,
    }


async def test_emulator_upgrades_a_group_like_telegram(harness: Harness) -> None:
    """The old id answers 400 with parameters.migrate_to_chat_id; each chat gets its service
    message as an update."""
    await harness.chat(**OLD_GROUP)
    answer = await upgrade(harness, OLD_GROUP["id"], updates=True)
    new = answer["chat"]["id"]
    assert new == -1004001 and answer["chat"]["type"] == "supergroup"
    token = "123456:TEST-token-abcdefghijklmnop"
    response = await harness.http.post(
        f"/bot{token}/sendMessage", json={"chat_id": OLD_GROUP["id"], "text": "hello"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": new},
    }
    updates = (await harness.http.post(f"/bot{token}/getUpdates", json={"timeout": 0})).json()
    messages = [u["message"] for u in updates["result"]]
    assert (messages[0]["chat"]["id"], messages[0]["migrate_to_chat_id"]) == (
        OLD_GROUP["id"],
        new,
    )
    assert (messages[1]["chat"]["id"], messages[1]["migrate_from_chat_id"]) == (
        new,
        OLD_GROUP["id"],
    )
    again = await harness.http.post("/sandbox/telegram/upgrade", json={"chat_id": OLD_GROUP["id"]})
    assert again.status_code == 400, "a group is upgraded once"


async def test_results_owed_when_the_group_is_upgraded_go_to_the_supergroup_once(
    harness: Harness, settings_for: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The group is upgraded while an analysis runs, and the bot misses the service messages:
    Telegram's 400 (with the new id) on the first send tells it. The results go to the new
    id once; the default collection and /find's history follow; a member who is admitted
    only by the group's id is still admitted; the log says to update ALLOWED_CHAT_IDS."""
    caplog.set_level(logging.INFO)
    old = await harness.chat(**OLD_GROUP)
    settings = settings_for(allowed_user_ids=[], allowed_chat_ids=[OLD_GROUP["id"]])
    async with bot_running(settings) as runtime:
        store = store_of(runtime)
        await harness.text(DORA, "/use Books", old)
        await harness.wait_text(old["id"], "Default collection")
        await harness.photo(DORA, old, caption="/scan Electronics", data=photo_titled("Brass Lamp"))
        await eventually(
            lambda: _found(store, old["id"], "brass"),
            what="the first analysis kept in the old group",
        )
        await harness.rs("/sandbox/config", {"analysis_seconds": 2.0})
        await harness.photo(DORA, old, data=photo_titled("Velvet Chair"))  # default: Books

        async def submitted() -> bool:
            counts: dict[str, int] = await store.count_by_state()
            return counts.get(State.SUBMITTED.value, 0) == 1

        await eventually(submitted, what="the second photo being analysed")
        answer = await upgrade(harness, old["id"], updates=False)
        new = answer["chat"]
        result = await harness.wait_sent(
            new["id"],
            lambda a: a in results_for([a], "Velvet Chair"),
            what="the results in the supergroup",
        )
        assert "Books" in (result["text"] or ""), "the default collection applied"
        assert result["reply_to"] is None, "the photo is in the old chat: no reply across"

        # Settings and history are the supergroup's now.
        assert (await store.chat(new["id"])).default_collection_name == "Books"
        assert await store.successor(old["id"]) == new["id"]
        await harness.text(DORA, "/find brass", new)
        await harness.wait_text(new["id"], "Brass Lamp")
        # A member admitted by the group's id only is admitted in the supergroup.
        await harness.photo(DORA, new, data=photo_titled("Copper Kettle"))
        kettle = await harness.wait_sent(
            new["id"],
            lambda a: a in results_for([a], "Copper Kettle"),
            what="the results of a photo sent in the supergroup",
        )
        assert kettle["reply_to"] is not None, "a photo in the supergroup is replied to"

        async def all_notified() -> bool:
            counts: dict[str, int] = await store.count_by_state()
            return counts == {State.NOTIFIED.value: 3}

        await eventually(all_notified, what="every analysis answered")
    actions = await harness.sent(new["id"])
    assert len(results_for(actions, "Velvet Chair")) == 1, "delivered once"
    assert not results_for(await harness.sent(old["id"]), "Velvet Chair")
    texts = " ".join(a.get("text") or "" for a in actions)
    assert "private" not in texts.lower(), "nobody refused"
    logged = caplog.text
    assert "ALLOWED_CHAT_IDS" in logged and str(new["id"]) in logged


async def test_a_group_upgrade_seen_as_service_messages_is_followed_at_once(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """With the service messages, the bot follows before it sends anything: nothing is sent
    to the old id after the upgrade, and the new chat keeps the group's settings."""
    old = await harness.chat(**OLD_GROUP)
    settings = settings_for(allowed_user_ids=[], allowed_chat_ids=[OLD_GROUP["id"]])
    async with bot_running(settings) as runtime:
        store = store_of(runtime)
        await harness.text(DORA, "/use Books", old)
        await harness.wait_text(old["id"], "Default collection")
        answer = await upgrade(harness, old["id"], updates=True)
        new = answer["chat"]
        await eventually(
            lambda: store.successor(old["id"]), what="the upgrade followed from its message"
        )
        assert (await store.chat(new["id"])).default_collection_name == "Books"
        await harness.photo(DORA, new, data=photo_titled("Tin Box"))
        await harness.wait_sent(
            new["id"], lambda a: a in results_for([a], "Tin Box"), what="results in the new chat"
        )
    refused = [c for c in await calls(harness) if c.get("migrate_to_chat_id") is not None]
    assert refused == [], "no send to the old id after the service messages"


# A forum topic deleted or closed -------------------------------------------------------------


@pytest.mark.parametrize("state", ["deleted", "closed"])
async def test_results_for_a_topic_gone_land_in_the_general_topic(
    harness: Harness, settings_for: Callable[..., Any], state: str
) -> None:
    """A photo sent in a topic that is deleted (or closed) before its results are ready: the
    results go to the group's general topic, naming the sender and the topic; nothing is
    marked refused."""
    forum = await harness.chat(**FORUM)
    topic = await harness.rs(
        "/sandbox/telegram/topics", {"chat_id": forum["id"], "name": "Sneakers & Co", "from": ANNA}
    )
    thread = topic["thread_id"]
    await harness.rs("/sandbox/config", {"analysis_seconds": 1.5})
    async with bot_running(settings_for()) as runtime:
        store = store_of(runtime)
        await harness.photo(
            ANNA,
            forum,
            caption="/scan Electronics",
            data=photo_titled("Retro Runner"),
            message_thread_id=thread,
        )
        await eventually(
            lambda: store.topic_name(forum["id"], thread), what="the topic's name remembered"
        )

        async def submitted() -> bool:
            counts: dict[str, int] = await store.count_by_state()
            return counts.get(State.SUBMITTED.value, 0) == 1

        await eventually(submitted, what="the photo being analysed")
        await harness.rs(
            "/sandbox/telegram/topics",
            {"chat_id": forum["id"], "thread_id": thread, "state": state},
        )
        result = await harness.wait_sent(
            forum["id"],
            lambda a: a in results_for([a], "Retro Runner"),
            what="the results in the general topic",
        )

        async def notified() -> bool:
            counts: dict[str, int] = await store.count_by_state()
            return counts == {State.NOTIFIED.value: 1}

        await eventually(notified, what="the submission notified")
    assert result["thread_id"] is None, "the general topic"
    text = result["text"] or ""
    assert "Anna Berg" in text and "“Sneakers & Co”" in text and "deleted or closed" in text
    assert len(results_for(await harness.sent(forum["id"]), "Retro Runner")) == 1


# A digest to a chat that is gone -------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
GONE_GROUP: dict[str, Any] = {"id": -1001234500088, "type": "supergroup", "title": "Old team"}


class Clock:
    """Wall time moved to a chosen instant; it runs on from there, and `advance` jumps (the
    monotonic clock of the delivery loop's budget too)."""

    def __init__(self, at: datetime) -> None:
        self.offset = at.timestamp() - time.time()
        self.advanced = 0.0

    def set(self, at: datetime) -> None:
        self.offset = at.timestamp() - time.time()

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.advanced += seconds

    def __call__(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.advanced


def digest_sends(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in actions if a["kind"] == "send" and (a["text"] or "").startswith("🗓")]


async def failed_sends(harness: Harness, chat_id: int) -> int:
    return len(
        [
            c
            for c in await calls(harness)
            if c["method"] == "sendMessage"
            and str(c["params"].get("chat_id")) == str(chat_id)
            and c.get("ok") is False
        ]
    )


async def test_a_digest_to_a_gone_chat_stops_and_resumes_when_the_chat_speaks(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The group blocked the bot: its digest is tried MAX_DIGEST_TRIES times (each try a
    send Telegram refuses), then dropped, and no digest is owed on the following days. When
    the chat speaks again (any update), the next digest goes out."""
    group = await harness.chat(**GONE_GROUP, blocked=True)
    gid = group["id"]
    clock = Clock(datetime(2026, 11, 28, 20, 5, tzinfo=BERLIN))
    # The digest is on before the bot starts: its round at start owes it (later rounds are
    # the test's own, one an hour would not come).
    settings = settings_for(digest_check_seconds=3600)
    db = await Database.open(settings.database_path)
    try:
        await Store(db).update_chat(gid, clock(), digest_time="20:00")
    finally:
        await db.close()
    async with bot_running(settings, clock=clock) as runtime:
        store = store_of(runtime)
        assert runtime.team is not None and runtime.delivery is not None
        runtime.delivery.budget.clock = clock.monotonic  # a chat's pause ends with `advance`
        await eventually(
            lambda: _digest_owed_on(store, gid, "2026-11-28"), what="the digest owed at start"
        )
        for tries in range(1, MAX_DIGEST_TRIES + 1):
            await eventually(
                lambda: _refused_and_held(harness, store, clock, gid, tries),  # noqa: B023
                what=f"try {tries} refused and the chat held",
            )
            clock.advance(GONE_RETRY_SECONDS + 1)  # the chat's pause is over
            runtime.delivery.wake()
        await eventually(
            lambda: _none_owed(store, gid), what="the digest dropped after the last try"
        )
        for day in (29, 30, 1):
            month = 11 if day > 1 else 12
            clock.set(datetime(2026, month, day, 20, 5, tzinfo=BERLIN))
            assert await runtime.team.send_due_digests() == 0, "no digest while gone"
        assert await failed_sends(harness, gid) == MAX_DIGEST_TRIES, "bounded tries"

        # The chat speaks: its digest is owed again, and goes out.
        await harness.chat(id=gid, blocked=False)
        await harness.text(ANNA, "back again", group)
        await eventually(
            lambda: _digest_resumed(store, gid), what="the chat marked as speaking again"
        )
        clock.set(datetime(2026, 12, 2, 20, 5, tzinfo=BERLIN))
        assert await runtime.team.send_due_digests() == 1
        await harness.wait_sent(gid, lambda a: a in digest_sends([a]), what="the digest")


async def _refused_and_held(
    harness: Harness, store: Any, clock: Clock, chat_id: int, tries: int
) -> bool:
    """The try was refused and the bot has held the chat (nothing of it due now): only then
    may the clock move past the pause."""
    if await failed_sends(harness, chat_id) < tries:
        return False
    return not await store.outbox_rows(chat_id, clock(), 1)


async def _digest_owed_on(store: Any, chat_id: int, day: str) -> bool:
    return bool((await store.chat(chat_id)).digest_last_day == day)


async def _none_owed(store: Any, chat_id: int) -> bool:
    return int(await store.outbox_count(chat_id)) == 0


async def _digest_resumed(store: Any, chat_id: int) -> bool:
    return int(await store.digest_failures(chat_id)) == 0


# The inbox on a transient error ----------------------------------------------------------------


def locked() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("database is locked")


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


async def test_a_handler_failing_on_a_busy_database_is_retried(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storing the photo fails twice with SQLite's "database is locked" (another connection
    held the write lock past the busy timeout): the update is handled again, the photo is
    analysed, and the user is not told that something went wrong."""
    async with bot_running(settings_for()) as runtime:
        store = store_of(runtime)
        assert runtime.inbox is not None
        runtime.inbox.sleep = no_wait
        real = store.add_photo
        failures = {"left": 2}

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if failures["left"]:
                failures["left"] -= 1
                raise locked()
            return await real(*args, **kwargs)

        monkeypatch.setattr(store, "add_photo", flaky)
        await harness.photo(ANNA, caption="/scan Electronics", data=photo_titled("Steel Flask"))
        await harness.wait_sent(
            ANNA_ID, lambda a: a in results_for([a], "Steel Flask"), what="the results"
        )
        assert failures["left"] == 0
    texts = [a.get("text") or "" for a in await harness.sent(ANNA_ID)]
    assert not [t for t in texts if "Something went wrong" in t], texts


async def test_a_handler_that_keeps_failing_says_so_once(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with bot_running(settings_for()) as runtime:
        store = store_of(runtime)
        assert runtime.inbox is not None
        runtime.inbox.sleep = no_wait
        attempts = {"count": 0}

        async def busy(*args: Any, **kwargs: Any) -> Any:
            attempts["count"] += 1
            raise locked()

        monkeypatch.setattr(store, "add_photo", busy)
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA_ID, "Something went wrong")
        await eventually(lambda: _all_done(runtime), what="the update marked done")
    assert attempts["count"] == MAX_HANDLER_ATTEMPTS
    texts = [a.get("text") or "" for a in await harness.sent(ANNA_ID)]
    assert len([t for t in texts if "Something went wrong" in t]) == 1


async def _all_done(runtime: BotRuntime) -> bool:
    assert runtime.inbox is not None
    counts = await runtime.inbox.inbox.counts()
    return counts["total"] > 0 and counts["pending"] == 0


async def test_a_failed_done_mark_is_written_later_not_lost(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the done marks fails twice: the marks are kept and written on a later try, so
    the command is not handed over (and answered) again at the next start."""
    settings = settings_for()
    async with bot_running(settings) as runtime:
        assert runtime.inbox is not None
        runtime.inbox.sleep = no_wait
        inbox = runtime.inbox.inbox
        real = inbox.mark_done
        failures = {"left": 2}

        async def flaky(ids: Any, now: float) -> int:
            if failures["left"]:
                failures["left"] -= 1
                raise locked()
            return await real(ids, now)

        monkeypatch.setattr(inbox, "mark_done", flaky)
        await harness.text(ANNA, "/help")
        await harness.wait_text(ANNA_ID, "How to scan")
        await eventually(lambda: _all_done(runtime), what="the done mark written")
        assert failures["left"] == 0
    async with bot_running(settings) as runtime:
        assert runtime.inbox is not None
        assert (await runtime.inbox.inbox.counts())["pending"] == 0, "nothing handed over again"
    helps = [a for a in await harness.sent(ANNA_ID) if "How to scan" in (a.get("text") or "")]
    assert len(helps) == 1
