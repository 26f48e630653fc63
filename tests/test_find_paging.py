"""/find pages through the query as it was typed: the query stays server-side behind a short
token, which the ◀ ▶ buttons carry (64 bytes of callback data used to cut a long query, so
page 2 searched for less and showed other products)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from bot.telegram import callbacks
from storage import Database
from storage.history import QUERY_RETENTION, History, NewHistoryRow
from tests.harness import ANNA, BEN, Harness, bot_running

pytestmark = pytest.mark.timeout(60)

ANNA_ID = cast(int, ANNA["id"])
# 59 bytes: what the old button kept of a query after "fp:8:"; the last word was dropped.
BASE = "wintermantel dunkelblau kapuze reissverschluss xxxxxxxxxxxx"
QUERY = f"{BASE} damen"


@pytest.fixture
async def history(tmp_path: Path) -> AsyncIterator[History]:
    db = await Database.open(tmp_path / "bot.sqlite3")
    try:
        yield History(db)
    finally:
        await db.close()


async def test_a_query_keeps_its_token_per_chat(history: History) -> None:
    now = time.time()
    token = await history.remember_query(-100, QUERY, now)
    assert await history.remember_query(-100, QUERY, now + 1) == token
    other = await history.remember_query(-200, QUERY, now)
    assert other != token
    assert await history.recall_query(-100, token, now) == QUERY
    assert await history.recall_query(-200, token, now) is None, "another chat's token"
    assert await history.recall_query(-100, 10**30, now) is None, "forged"
    assert await history.recall_query(-100, 0, now) is None


async def test_a_token_unused_for_a_month_is_forgotten(history: History) -> None:
    now = time.time()
    old = await history.remember_query(-100, "alt", now)
    used = await history.remember_query(-100, "benutzt", now)
    assert await history.recall_query(-100, used, now + QUERY_RETENTION - 10) == "benutzt"
    await history.remember_query(-100, "neu", now + QUERY_RETENTION + 1)
    assert await history.recall_query(-100, old, now + QUERY_RETENTION + 2) is None
    assert await history.recall_query(-100, used, now + QUERY_RETENTION + 2) == "benutzt"


def test_the_button_carries_a_token_not_the_text() -> None:
    token = 10**18 - 1  # as long as a token gets
    data = callbacks.FindPage(8, token).data()
    assert data == f"fq:8:{token}" and len(data.encode()) <= callbacks.MAX_BYTES
    codec = callbacks.CallbackCodec(b"k" * 32)
    assert codec.decode(data, 1) == callbacks.FindPage(8, token)
    assert codec.decode("fp:8:nike air", 1) is None, "the earlier format is stale"


async def test_page_two_searches_for_the_whole_query(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    assert len(f"fp:8:{BASE}".encode()) == callbacks.MAX_BYTES
    async with bot_running(settings_for()) as runtime:
        assert runtime.store is not None
        now = time.time()
        rows = [
            NewHistoryRow(
                chat_id=ANNA_ID,
                submission_id=5000 + i,
                product_index=0,
                sender_id=ANNA_ID,
                sender_name="Anna Berg",
                analysed_at=now - 60 * (i + 1),
                title=f"{BASE} {'damen' if i < 10 else 'herren'} {i}",
            )
            for i in range(15)
        ]
        await runtime.store.history.add(rows)
        await harness.text(ANNA, f"/find {QUERY}")
        first = await harness.wait_text(ANNA_ID, "10 found, 1–8")
        [ahead] = [b for b in _buttons(first) if b["text"] == "▶"]
        assert ahead["callback_data"].startswith("fq:8:")
        await harness.press(ANNA, ANNA_ID, first["message_id"], ahead["callback_data"])
        second = await harness.wait_sent(
            ANNA_ID,
            lambda a: a["kind"] == "edit" and a["message_id"] == first["message_id"],
            what="the second page",
        )
        assert f"“{QUERY}”: 10 found, 9–10" in second["text"], second["text"]
        assert "herren" not in second["text"]
        [back] = [b for b in _buttons(second) if b["text"] == "◀"]
        await harness.press(ANNA, ANNA_ID, first["message_id"], back["callback_data"])
        await harness.wait_sent(
            ANNA_ID,
            lambda a: a["kind"] == "edit" and "10 found, 1–8" in (a["text"] or ""),
            what="the first page again",
        )

        # The same data pressed in another chat names no query of that chat.
        await harness.text(BEN, "/find")
        await harness.wait_text(cast(int, BEN["id"]), "🔎")
        mine = await harness.sent(cast(int, BEN["id"]))
        await harness.press(
            BEN, cast(int, BEN["id"]), mine[-1]["message_id"], ahead["callback_data"]
        )
        await harness.wait_sent(
            cast(int, BEN["id"]),
            lambda a: a["kind"] == "edit" and "too old to page through" in (a["text"] or ""),
            what="the search unknown here",
        )


def _buttons(action: dict[str, Any]) -> list[dict[str, Any]]:
    markup = action.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]
