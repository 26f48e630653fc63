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
from storage import Database, Inbox, NewUpdate


class App:
    """What UpdateInbox needs of a PTB Application: a bot and process_update."""

    bot = None

    def __init__(self) -> None:
        self.handled: list[int] = []

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
