"""The results history is kept when the results are known, not when Telegram takes them: an
analysis whose results message Telegram refuses (no right to send, a closed topic) is still in
/find, /report and the digest; results waiting for Telegram's budget are found meanwhile and
point at their message once it is sent; analyses a refusal lost before migration 14 are kept
after it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from bot.app import BotRuntime
from bot.outbox import keep_owed_history
from sandbox.data import fake_jpeg
from storage import Database, State, Store
from storage.migrations import MIGRATIONS
from tests.conftest import eventually
from tests.harness import ANNA, Harness, bot_running, results_replies

pytestmark = pytest.mark.timeout(60)

ANNA_ID = cast(int, ANNA["id"])
REFUSED = "Bad Request: not enough rights to send text messages to the chat"


def photo_titled(title: str) -> bytes:
    """A photo the sandbox analyses as `title` (sandbox/data.py)."""
    return fake_jpeg(title) + f"TITLE:{title}\n".encode()


def store_of(runtime: BotRuntime) -> Store:
    assert runtime.store is not None
    return runtime.store


async def found(store: Store, chat_id: int, text: str) -> int:
    _, total = await store.history.find(chat_id, text)
    return total


async def test_results_telegram_refuses_are_still_kept(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs("/sandbox/config", {"analysis_seconds": 1.0})
    async with bot_running(settings_for()) as runtime:
        store = store_of(runtime)
        await harness.photo(ANNA, caption="/scan Electronics", data=photo_titled("Kofferradio"))
        await harness.wait_text(ANNA_ID, "Analysing")
        # The results message is the next send: Telegram refuses it for good.
        await harness.rs(
            "/sandbox/telegram/faults",
            {
                "kind": "error",
                "error_code": 400,
                "description": REFUSED,
                "methods": ["sendMessage"],
                "chat_id": ANNA_ID,
                "count": 1,
            },
        )

        async def refused() -> bool:
            return await store.count_by_state() == {State.NOTIFIED.value: 1}

        await eventually(refused, what="the results refused and recorded")
        assert results_replies(await harness.sent(ANNA_ID)) == []
        [row], _ = await store.history.find(ANNA_ID, "kofferradio")
        assert row.message_id is None and row.message_link is None, "no message to point at"

        await harness.text(ANNA, "/find koffer")
        answer = await harness.wait_text(ANNA_ID, "🔎")
        assert "Kofferradio" in answer["text"]
        assert not (answer.get("reply_markup") or {}).get("inline_keyboard"), "no ↩: no message"
        await harness.text(ANNA, "/report")
        summary = await harness.wait_text(ANNA_ID, "Products: 1")
        assert "Estimated value" in summary["text"]


async def test_results_waiting_for_telegram_are_found_and_then_linked(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs("/sandbox/config", {"analysis_seconds": 1.0})
    async with bot_running(settings_for()) as runtime:
        store = store_of(runtime)
        await harness.photo(ANNA, caption="/scan Electronics", data=photo_titled("Plattenspieler"))
        await harness.wait_text(ANNA_ID, "Analysing")
        # The results message is answered 429: the chat waits 4 s.
        await harness.rs(
            "/sandbox/telegram/faults",
            {"kind": "429", "retry_after": 4, "methods": ["sendMessage"], "chat_id": ANNA_ID},
        )
        await eventually(lambda: found(store, ANNA_ID, "plattenspieler"), what="kept")
        assert results_replies(await harness.sent(ANNA_ID)) == [], "kept before it was sent"
        [waiting], _ = await store.history.find(ANNA_ID, "plattenspieler")
        assert waiting.message_id is None

        [results] = await eventually(
            lambda: _results(harness), within=15, what="the results, after the wait"
        )

        async def linked() -> bool:
            [row], _ = await store.history.find(ANNA_ID, "plattenspieler")
            return row.message_id == results["message_id"]

        await eventually(linked, what="the row pointing at the results message")
        assert await found(store, ANNA_ID, "") == 1, "kept once"


async def _results(harness: Harness) -> list[dict[str, Any]]:
    return results_replies(await harness.sent(ANNA_ID))


# Migration 14 on a database written before it ------------------------------------------------

_SUBMISSION_V13 = (
    "INSERT INTO submissions (id, chat_id, message_id, user_id, user_name, manual_fields,"
    " collection_name, idempotency_key, state, batch_id, created_at, updated_at, results,"
    " total_products, successful_products, failed_products, completed_at, completed_by,"
    " notified_at, last_error, results_message_id, parts_sent)"
    " VALUES (?, 101, ?, 101, 'Anna Berg', ?, 'Electronics', ?, ?, ?, ?, ?, ?, 1, 1, 0, ?,"
    " 'poll', ?, ?, ?, ?)"
)


def _results_json(title: str) -> str:
    return json.dumps(
        {
            "status": "completed",
            "products": [
                {
                    "status": "completed",
                    "result": {"title": title, "price": {"min": 10, "max": 30}},
                }
            ],
        }
    )


async def test_migration_14_keeps_what_refusals_lost(tmp_path: Path) -> None:
    """Version 13 as the bot wrote it: a refused analysis (notified with the refusal, no
    results message, no history), a delivered one (kept with its link) and one still waiting
    for Telegram. After migration 14 the refused one and the waiting one are kept."""
    path = tmp_path / "bot.sqlite3"
    t0 = 1_790_000_000.0
    old = await Database.open(path, MIGRATIONS[:13])
    try:
        async with old.transaction() as tx:
            for sub_id, title, state, notified, error, message in (
                (1, "Refused Radio", "notified", t0 + 5, "refused: " + REFUSED, None),
                (2, "Sent Lamp", "notified", t0 + 5, None, 77),
                (3, "Waiting Clock", "completed", None, None, None),
            ):
                await tx.execute(
                    _SUBMISSION_V13,
                    (
                        sub_id,
                        10 * sub_id,
                        json.dumps({"purchasePrice": "4,5"}),
                        f"key-{sub_id}",
                        state,
                        f"batch-{sub_id}",
                        t0,
                        t0 + 5,
                        _results_json(title),
                        t0 + sub_id,
                        notified,
                        error,
                        message,
                        1 if notified else 0,
                    ),
                )
            await tx.execute(
                "INSERT INTO results_history (chat_id, submission_id, product_index,"
                " sender_id, sender_name, collection_name, analysed_at, title, manual_fields,"
                " message_id) VALUES (101, 2, 0, 101, 'Anna Berg', 'Electronics', ?,"
                " 'Sent Lamp', '{}', 77)",
                (t0 + 2,),
            )
            await tx.execute(
                "INSERT INTO results_history_fts (rowid, title) VALUES (last_insert_rowid(),"
                " 'Sent Lamp')"
            )
    finally:
        await old.close()

    db = await Database.open(path)
    try:
        store = Store(db)
        assert sorted(await store.history.owed(10)) == [1, 3]
        assert await keep_owed_history(store, t0 + 100) == 2
        assert await store.history.owed(10) == []
        rows = await store.history.between(101, 0, t0 + 100)
        assert [(r.submission_id, r.title, r.analysed_at, r.message_id) for r in rows] == [
            (1, "Refused Radio", t0 + 1, None),
            (2, "Sent Lamp", t0 + 2, 77),
            (3, "Waiting Clock", t0 + 3, None),
        ]
        assert rows[0].purchase_price == 4.5 and rows[0].price_min == 10
        assert await keep_owed_history(store, t0 + 200) == 0
        assert len(await store.history.between(101, 0, t0 + 100)) == 3, "kept once"
    finally:
        await db.close()
