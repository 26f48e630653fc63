"""Chat features end to end: groups and admins, commands, settings, status and results,
Telegram webhook mode, and the uncertain-submission button."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from sandbox.data import collection_id
from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, Harness, bot_running, results_replies

GROUP = {"id": -2002, "type": "supergroup", "title": "Resellers"}


async def test_start_in_a_group_warns_about_privacy_mode(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.chat(**GROUP, admins=[])
        await harness.text(ANNA, "/start", GROUP)
        await harness.wait_text(GROUP["id"], "privacy mode is on")
        await harness.chat(**GROUP, admins=[123456])  # the bot itself becomes an admin
        before = len(await harness.sent(GROUP["id"]))
        await harness.text(ANNA, "/start@ResellScanSandboxBot", GROUP)
        await harness.wait_sent(
            GROUP["id"],
            lambda a: "Resell Scan bot" in (a["text"] or "") and a["message_id"] > before + 1,
        )
    warnings = [a for a in await harness.sent(GROUP["id"]) if "privacy mode" in (a["text"] or "")]
    assert len(warnings) == 1


async def test_admin_only_settings(harness: Harness, settings_for: Callable[..., Any]) -> None:
    async with bot_running(settings_for()):
        await harness.chat(**GROUP, admins=[ANNA["id"]])
        await harness.text(ANNA, "/settings", GROUP)
        view = await harness.wait_text(GROUP["id"], "Settings of this chat")
        admin_button = view["reply_markup"]["inline_keyboard"][2][0]
        await harness.press(BEN, GROUP["id"], view["message_id"], admin_button["callback_data"])
        await harness.press(ANNA, GROUP["id"], view["message_id"], admin_button["callback_data"])
        await harness.wait_sent(
            GROUP["id"], lambda a: a["kind"] == "edit" and "admins only" in a["text"]
        )
        await harness.text(BEN, "/use Books", GROUP)
        await harness.wait_text(GROUP["id"], "Only the chat's admins")
        await harness.text(ANNA, "/use Books", GROUP)
        await harness.wait_text(
            GROUP["id"], "Default collection: <b>Books</b>".replace("<b>", "").replace("</b>", "")
        )
        answers = [a for a in await harness.sent(GROUP["id"]) if a["kind"] == "edit"]
        assert len(answers) == 1, "Ben's press changed nothing"


async def test_settings_language_and_background_removal(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/settings")
        view = await harness.wait_text(ANNA["id"], "Settings of this chat")
        rows = view["reply_markup"]["inline_keyboard"]
        await harness.press(ANNA, ANNA["id"], view["message_id"], rows[0][0]["callback_data"])
        await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "edit" and "Background removal: on" in a["text"]
        )
        await harness.press(ANNA, ANNA["id"], view["message_id"], rows[1][0]["callback_data"])
        await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "edit" and "Einstellungen" in a["text"]
        )
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Ergebnisse")
    [create] = await harness.creates()
    assert create["body"]["products"][0]["images"][0]["removeBackground"] is True


async def test_scan_as_text_then_photos(harness: Harness, settings_for: Callable[..., Any]) -> None:
    async with bot_running(settings_for()):
        await harness.text(BEN, "/scan Watches purchasePrice=100 boxIncluded=yes")
        await harness.wait_text(
            BEN["id"], "your photos in this chat go to Watches with purchasePrice=100"
        )
        await harness.photo(BEN)
        await harness.wait_text(BEN["id"], "Results")
        await harness.text(BEN, "/scan@SomeOtherBot Books")
        await harness.text(BEN, "/scan")
        await harness.wait_text(BEN["id"], "Usage: <code>/scan".replace("<code>", ""))
    [create] = await harness.creates()
    assert create["body"]["collectionId"] == collection_id("Watches")
    assert create["body"]["products"][0]["manual_fields"] == {
        "purchasePrice": 100.0,
        "boxIncluded": True,
    }
    assert not [a for a in await harness.sent(BEN["id"]) if "Books" in (a["text"] or "")]


async def test_cancel_drops_photos_waiting_for_a_collection(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()) as bot:
        await harness.photo(ANNA)
        picker = await harness.wait_text(ANNA["id"], "Which collection")
        await harness.text(ANNA, "/cancel")
        await harness.wait_text(ANNA["id"], "Dropped 1 waiting")
        choice = picker["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        await harness.press(ANNA, ANNA["id"], picker["message_id"], choice)
        await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "edit" and "already handled" in a["text"]
        )
        assert bot.store is not None
    assert await harness.rs_requests("/products/createAndAnalyze") == []


async def test_status_and_results_commands(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs("/sandbox/config", {"analysis_seconds": 2.0})
    async with bot_running(settings_for(poll_initial_seconds=0.1, poll_max_seconds=0.2)):
        await harness.photo(ANNA, caption="/scan Electronics")
        analysing = await harness.wait_text(ANNA["id"], "Analysing")
        batch = analysing["text"].rsplit(" ", 1)[1]
        await harness.text(ANNA, "/status")
        status = await harness.wait_text(ANNA["id"], "Open analyses")
        assert (
            batch in status["text"] and "Anna Berg" in status["text"] and "s ago" in status["text"]
        )
        await harness.wait_text(ANNA["id"], "Results")
        await harness.text(ANNA, "/status")
        await harness.wait_text(ANNA["id"], "Recently finished")
        await harness.text(ANNA, f"/status {batch}")
        detail = await harness.wait_text(ANNA["id"], "State: finished")
        assert "Photos: 1" in detail["text"]
        await harness.text(ANNA, f"/results {batch}")
        again = await harness.wait_sent(
            ANNA["id"], lambda a: "Results" in (a["text"] or "") and a["reply_markup"]
        )
        csv_button = again["reply_markup"]["inline_keyboard"][-1][0]
        assert csv_button["text"] == "📄 CSV"
        await harness.press(ANNA, ANNA["id"], again["message_id"], csv_button["callback_data"])
        await harness.wait_sent(ANNA["id"], lambda a: a["kind"] == "document")
        await harness.text(ANNA, "/results nope")
        await harness.wait_text(ANNA["id"], "No batch “nope”")
        await harness.text(BEN, f"/results {batch}")
        await harness.wait_text(BEN["id"], "No batch")  # another chat's batch stays private


async def test_commands_are_registered_in_english_and_german(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        commands = (await harness.http.get("/sandbox/telegram/commands")).json()["commands"]
    by_lang: dict[str, list[str]] = {}
    for key, value in commands.items():
        scope = json.loads(key)
        by_lang.setdefault(scope["language_code"], []).append(json.dumps(value))
    assert set(by_lang) == {"", "de"}
    english = json.loads(by_lang[""][0])
    german = json.loads(by_lang["de"][0])
    assert [c["command"] for c in english] == [c["command"] for c in german]
    assert "scan" in [c["command"] for c in english]
    assert english[0]["description"] != german[0]["description"]


async def test_progress_edits_are_throttled(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs("/sandbox/config", {"analysis_seconds": 1.5})
    settings = settings_for(
        poll_initial_seconds=0.1, poll_max_seconds=0.1, progress_edit_interval_seconds=1000
    )
    async with bot_running(settings):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results")
        await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "edit" and "finished" in a["text"]
        )
    edits = [a for a in await harness.sent(ANNA["id"]) if a["kind"] == "edit"]
    progress = [e for e in edits if "%" in e["text"]]
    assert len(progress) <= 1, "one progress edit at most within the interval"
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    assert sum(1 for c in calls if c["method"] == "editMessageText") == len(edits), (
        "no edit was refused as 'not modified'"
    )


async def test_telegram_webhook_mode(harness: Harness, settings_for: Callable[..., Any]) -> None:
    from tests.harness import free_port

    port = free_port()
    settings = settings_for(
        http_port=port,
        telegram_webhook_url=f"http://127.0.0.1:{port}",
        telegram_webhook_secret="tg-secret-123",
    )
    async with bot_running(settings):
        info = await harness.http.post("/bot123456:x/getWebhookInfo")
        assert info.json()["result"]["url"] == f"http://127.0.0.1:{port}/telegram/updates"
        await harness.photo(CARLA, caption="/scan Electronics")
        await harness.wait_text(CARLA["id"], "Ergebnisse")
        async with httpx.AsyncClient() as http:
            bad = await http.post(
                f"http://127.0.0.1:{port}/telegram/updates",
                json={"update_id": 1},
                headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
            )
            assert bad.status_code == 403
        await harness.http.post("/bot123456:x/deleteWebhook")


async def test_uncertain_submission_offers_resubmit(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.lose_next_upload_answer()
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], "do not know whether the analysis started")
        button = question["reply_markup"]["inline_keyboard"][0][0]
        assert results_replies(await harness.sent(ANNA["id"])) == []
        await harness.press(ANNA, ANNA["id"], question["message_id"], button["callback_data"])
        await harness.wait_text(ANNA["id"], "Results")
        await harness.press(ANNA, ANNA["id"], question["message_id"], button["callback_data"])
        await asyncio.sleep(0)  # the second press is a no-op; nothing to wait for
    requests = await harness.rs_requests("/products/createAndAnalyze")
    keys = {r["idempotency_key"] for r in requests}
    assert len(requests) == 2 and len(keys) == 1, "the resend reuses the idempotency key"
    assert requests[0]["body"] == requests[1]["body"], "and sends the very same body"
    batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
    assert len(batches) == 1, "the sandbox honoured the key: no duplicate product"


async def test_redelivered_command_update_is_handled_once(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/help", update_id=5000)
        await harness.wait_text(ANNA["id"], "How to scan")
        await harness.text(ANNA, "/help", update_id=5000)
        await harness.text(ANNA, "/start", update_id=5001)
        await harness.wait_text(ANNA["id"], "Resell Scan bot")

        async def helps() -> int:
            return sum(
                1 for a in await harness.sent(ANNA["id"]) if "How to scan" in (a["text"] or "")
            )

        assert await eventually(helps) == 1


async def test_a_group_speaks_one_language_and_status_shows_collecting_batches(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(id=-100888, type="supergroup", title="Team", admins=[CARLA["id"]])
    async with bot_running(settings_for()):
        await harness.text(CARLA, "/start", group)  # a German-speaking admin adds the bot
        await harness.wait_text(group["id"], "Resell Scan")
        await harness.text(ANNA, "/help", group)  # an English-speaking member
        help_text = await harness.wait_text(group["id"], "So scannst du")
        assert help_text["reply_to"] is not None
        await harness.text(ANNA, "/batch Electronics", group)
        await harness.wait_text(group["id"], "Sammle")
        await harness.photo(ANNA, group)
        await harness.photo(ANNA, group)
        await harness.text(BEN, "/status", group)
        status = await harness.wait_text(group["id"], "sammelt 2 Fotos – sende /done")
        assert "Anna" in status["text"]


async def test_nonsense_prices_are_refused_with_a_clear_message(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """`purchasePrice=-5` and a price above MAX_PRICE: refused, saying why, nothing sent to
    Resell Scan (before: both uploaded, and /report showed a margin of −99.999.998.846,00 €)."""
    async with bot_running(settings_for(max_price=5000)):
        await harness.photo(ANNA, caption="/scan Sneakers purchasePrice=-5")
        negative = await harness.wait_text(ANNA["id"], "were not sent")
        assert "purchasePrice is a price, so 0 or more: “-5”" in negative["text"]
        await harness.photo(BEN, caption="/scan Sneakers purchasePrice=99999999999")
        ceiling = await harness.wait_text(BEN["id"], "were not sent")
        assert "above the highest price allowed (5,000.00 EUR)" in ceiling["text"], ceiling
    assert await harness.rs_requests("/products/createAndAnalyze") == []


async def test_batch_checks_its_fields_when_it_opens(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """`/batch Sneakers purchasePrice=cheap`: refused at once with a working example (before:
    the photos were collected, and refused only at /done). Without fields it opens (the
    required ones are asked for at /done, as for a plain photo)."""
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/batch Sneakers purchasePrice=cheap")
        refused = await harness.wait_text(ANNA["id"], "The /batch into Sneakers was not started")
        assert "must be a number" in refused["text"] and "purchasePrice=12.5" in refused["text"]
        await harness.text(ANNA, "/done")
        await harness.wait_text(ANNA["id"], "No batch is being collected")
        await harness.text(ANNA, "/batch Sneakers")
        await harness.wait_text(ANNA["id"], "Collecting for Sneakers")
