"""The update inbox's hand-over at start (bot/telegram/inbox.py): an update stored before
`resume()` ran (a Telegram webhook can deliver while the bot starts) is handled exactly once, as
is everything a previous process left."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bot.telegram.inbox import UpdateInbox
from sandbox.server import SandboxThread
from storage import Database, Inbox, NewUpdate
from tests.harness import TOKEN


class App:
    """What UpdateInbox needs of a PTB Application: a bot and process_update."""

    bot = None
    persistence = None

    def __init__(self) -> None:
        self.handled: list[int] = []
        self._chat_ids_to_be_updated_in_persistence: set[int] = set()
        self._user_ids_to_be_updated_in_persistence: set[int] = set()

    async def process_update(self, update: Update) -> None:
        self.handled.append(update.update_id)


def update(update_id: int, chat: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": chat, "type": "private"},
            "text": f"hello {update_id}",
        },
    }


@pytest.mark.timeout(20)
async def test_updates_stored_before_resume_are_handled_once(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "inbox.sqlite3")
    try:
        left = update(1, 10)  # left by a previous process, never handled
        await Inbox(db).add([NewUpdate(1, 10, json.dumps(left))], 0.0)
        app = App()
        inbox = UpdateInbox(app, Inbox(db), poll_timeout=1)  # type: ignore[arg-type]
        await inbox.store([update(2, 10), update(3, 11)])  # a webhook, before resume()
        await asyncio.sleep(0)
        assert app.handled == [], "nothing is handled before the hand-over"
        assert await inbox.resume() == 3
        await inbox.store([update(4, 10)])  # after it: handled as it comes
        await inbox.stop()
        assert sorted(app.handled) == [1, 2, 3, 4]
        assert app.handled.index(1) < app.handled.index(2) < app.handled.index(4), "per chat"
    finally:
        await db.close()


class SlowApp(App):
    """Handlers that take a while (each waits for `gate`), counting how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0
        self.all_done = asyncio.Event()

    async def process_update(self, update: Update) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.gate.wait()
        self.running -= 1
        self.handled.append(update.update_id)
        if len(self.handled) >= 300:
            self.all_done.set()


@pytest.mark.timeout(60)
async def test_a_flood_of_updates_is_dispatched_with_back_pressure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More updates than may be in flight: the rest wait in SQLite, none is lost or handled
    twice, and each chat's updates stay in order."""
    import bot.telegram.inbox as inbox_module

    monkeypatch.setattr(inbox_module, "MAX_DISPATCHED", 20)
    db = await Database.open(tmp_path / "inbox.sqlite3")
    try:
        app = SlowApp()
        inbox = UpdateInbox(app, Inbox(db), poll_timeout=1)  # type: ignore[arg-type]
        await inbox.resume()
        for start in range(1, 301, 50):  # 300 updates from 120 chats, in six answers
            await inbox.store([update(i, 1000 + i % 120) for i in range(start, start + 50)])
        await asyncio.sleep(0)
        assert app.running <= 20 and len(inbox._workers) <= 20, "no task per waiting update"
        app.gate.set()
        await asyncio.wait_for(app.all_done.wait(), timeout=30)
        await inbox.stop()
        assert sorted(app.handled) == list(range(1, 301)), "each update handled once"
        assert app.most <= 20
        for chat in range(120):
            mine = [u for u in app.handled if u % 120 == chat]
            assert mine == sorted(mine), f"chat {chat} out of order"
        assert await Inbox(db).pending() == []
    finally:
        await db.close()


@pytest.mark.timeout(20)
async def test_ptb_keeps_no_mark_per_chat_or_user_it_has_seen(
    tmp_path: Path, sandbox: SandboxThread
) -> None:
    """The real PTB Application marks each update's chat and user for a persistence this bot
    does not have; the inbox empties the marks, so 300 strangers leave nothing behind."""
    from telegram.ext import ApplicationBuilder, TypeHandler

    application = (
        ApplicationBuilder().token(TOKEN).base_url(f"{sandbox.url}/bot").updater(None).build()
    )
    handled: list[int] = []

    async def handler(update: Update, context: object) -> None:
        handled.append(update.update_id)

    application.add_handler(TypeHandler(Update, handler))
    db = await Database.open(tmp_path / "inbox.sqlite3")
    await application.initialize()  # getMe, from the emulator
    try:
        inbox = UpdateInbox(application, Inbox(db), poll_timeout=1)
        await inbox.resume()
        updates = [update(i, 5000 + i) for i in range(1, 301)]
        for payload in updates:
            payload["message"]["from"] = {
                "id": 5000 + payload["update_id"],
                "is_bot": False,
                "first_name": "Stranger",
            }
        await inbox.store(updates)
        await inbox.stop()
        assert len(handled) == 300 and await Inbox(db).pending() == [], "every update handled"
        assert application._chat_ids_to_be_updated_in_persistence == set()
        assert application._user_ids_to_be_updated_in_persistence == set()
    finally:
        await application.shutdown()
        await db.close()
