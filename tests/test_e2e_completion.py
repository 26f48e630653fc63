"""Completion end to end: webhook relay, polling, both at once, bad deliveries, crashes, Telegram
429, failed products, CSV, expiry, and signed image URLs. Exactly one results reply per batch."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.media import MediaSigner, derive_key
from bot.resellscan.webhooks import sign
from sandbox.data import fake_jpeg
from storage import State
from storage.outbox import Kind
from tests.conftest import eventually
from tests.harness import ANNA, BEN, TOKEN, WEBHOOK_SECRET, Harness, bot_running, results_replies
from tests.proc import BotProcess, db_rows


def webhook_settings(settings_for: Callable[..., Any], **kw: Any) -> Any:
    values = {
        "resell_scan_webhook_secrets": WEBHOOK_SECRET,
        "poll_initial_seconds": 30,
        "poll_max_seconds": 60,
    }
    values.update(kw)
    return settings_for(**values)


def racing_settings(settings_for: Callable[..., Any]) -> Any:
    """Webhooks on, and polling fast enough to race them."""
    return webhook_settings(
        settings_for, poll_initial_seconds=0.1, poll_max_seconds=0.2, webhook_poll_factor=1
    )


async def point_webhooks(harness: Harness, port: int) -> None:
    await harness.rs(
        "/sandbox/webhooks",
        {"url": f"http://127.0.0.1:{port}/webhooks/resell-scan", "secret": WEBHOOK_SECRET},
    )


async def one_reply(harness: Harness, chat_id: int, *, settle: float = 0.6) -> dict[str, Any]:
    """Wait for the results reply, then keep checking for `settle` seconds that no second one
    follows (a duplicate would come from a racing path within that time)."""
    first = await harness.wait_text(chat_id, "Results")
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        assert len(results_replies(await harness.sent(chat_id))) == 1
        await asyncio.sleep(0.05)
    return first


async def test_webhook_path(harness: Harness, settings_for: Callable[..., Any]) -> None:
    settings = webhook_settings(settings_for)
    async with bot_running(settings) as bot:
        await point_webhooks(harness, bot.port)
        await harness.photo(ANNA, caption="/scan Electronics")
        await one_reply(harness, ANNA["id"])
        assert bot.store is not None
        [create] = await harness.creates()
        del create
        deliveries = await harness.deliveries()
        assert [d["status"] for d in deliveries] == [200]
        sub = await bot.store.by_batch(deliveries[0]["batch_id"])
        assert sub is not None and sub.completed_by == "webhook" and sub.state is State.NOTIFIED
        assert sub.poll_count == 0, "the slow safety-net poll never had to run"


async def test_polling_path(harness: Harness, settings_for: Callable[..., Any]) -> None:
    async with bot_running(settings_for()) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        await one_reply(harness, ANNA["id"])
        assert bot.store is not None
        [sub] = (await bot.store.for_chat(ANNA["id"]))[1]
        assert sub.completed_by == "poll"


async def test_webhook_and_polling_together_with_duplicates(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = racing_settings(settings_for)
    async with bot_running(settings) as bot:
        await point_webhooks(harness, bot.port)
        await harness.rs("/sandbox/faults", {"webhook_duplicates": 3})
        for user in (ANNA, BEN):
            await harness.photo(user, caption="/scan Electronics")
        for user in (ANNA, BEN):
            await one_reply(harness, user["id"])

        async def all_delivered() -> bool:
            return len(await harness.deliveries()) >= 8

        await eventually(all_delivered, what="every duplicate delivery")
    for user in (ANNA, BEN):
        assert len(results_replies(await harness.sent(user["id"]))) == 1


async def test_webhook_after_polling_answered(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = racing_settings(settings_for)
    async with bot_running(settings) as bot:
        await point_webhooks(harness, bot.port)
        await harness.rs("/sandbox/faults", {"webhook_delay": 1.0})
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results")

        async def late_delivery() -> list[Any]:
            return await harness.deliveries()

        deliveries = await eventually(late_delivery, what="the late webhook")
        assert deliveries[0]["status"] == 200, "a late webhook is acknowledged"
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


async def test_bad_deliveries_are_refused_and_change_nothing(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = webhook_settings(settings_for, webhook_max_body_bytes=4096)
    async with bot_running(settings) as bot:
        url = f"http://127.0.0.1:{bot.port}/webhooks/resell-scan"
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        assert bot.store is not None
        [sub] = (await bot.store.for_chat(ANNA["id"]))[0]
        body = json.dumps(
            {
                "id": "evt_x",
                "event": "analysis.completed",
                "data": {"batch_id": sub.batch_id, "status": "completed", "products": []},
            }
        ).encode()
        good = sign(body, WEBHOOK_SECRET)
        cases = [
            ({"x-webhook-signature": sign(body, "whsec_wrong")}, body, 401),
            ({"x-webhook-signature": good}, body + b" ", 401),
            ({}, body, 401),
            ({"x-webhook-signature": "ä".encode("latin-1") * 64}, body, 401),
            ({"x-webhook-signature": b"sha256=\xff\xfe"}, body, 401),
            ({"x-webhook-signature": "x" * 5000}, body, 401),
            ({"x-webhook-signature": sign(b"{nope", WEBHOOK_SECRET)}, b"{nope", 400),
            # Signed valid JSON of any shape is kept and acknowledged (never a 5xx, nor a
            # refusal that makes Resell Scan retry forever); it changes no submission.
            ({"x-webhook-signature": sign(b"[]", WEBHOOK_SECRET)}, b"[]", 200),
            ({"x-webhook-signature": good}, b"x" * 5000, 413),
        ]
        async with httpx.AsyncClient() as http:
            for headers, content, expected in cases:
                response = await http.post(
                    url, content=content, headers={"content-type": "application/json", **headers}
                )
                assert response.status_code == expected, (headers, content[:20])

            async def chunks() -> Any:
                for _ in range(10):
                    yield b"y" * 1000

            chunked = await http.post(url, content=chunks(), headers={"x-webhook-signature": good})
            assert chunked.status_code == 413
        after = await bot.store.get(sub.id)
        assert after is not None and after.state is State.SUBMITTED and after.completed_at is None
        kept = db_rows(
            settings.database_path, "SELECT event, batch_id, payload FROM webhook_events"
        )
        assert [tuple(row) for row in kept] == [("unreadable", None, "[]")]


async def test_unknown_batch_and_unknown_event_are_acknowledged(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(webhook_settings(settings_for)) as bot:
        url = f"http://127.0.0.1:{bot.port}/webhooks/resell-scan"
        async with httpx.AsyncClient() as http:
            for event in (
                {"id": "evt_u1", "event": "analysis.completed", "data": {"batch_id": "not-ours"}},
                {"id": "evt_u2", "event": "product.deleted", "data": {}},
            ):
                body = json.dumps(event).encode()
                response = await http.post(
                    url, content=body, headers={"x-webhook-signature": sign(body, WEBHOOK_SECRET)}
                )
                assert response.status_code == 200
            assert response.json()["result"] == "ignored"


async def test_killed_after_completion_before_reply(
    harness: Harness, settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    settings = settings_for()
    with BotProcess(settings, tmp_path / "bot.log") as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        await harness.rs(
            "/sandbox/telegram/faults",
            {"method": "sendMessage", "kind": "hang", "seconds": 30, "count": 1000},
        )

        async def in_flight() -> bool:
            # The worst instant: completed, its reply owed in the outbox, and that reply
            # already handed to Telegram (which hangs on it).
            rows = db_rows(settings.database_path, "SELECT state FROM submissions")
            owed = db_rows(settings.database_path, "SELECT kind FROM outbox")
            calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
            sending = any(
                c["method"] == "sendMessage" and "Results" in str(c["params"].get("text"))
                for c in calls
            )
            return (
                bool(rows)
                and rows[0]["state"] == "completed"
                and {"kind": "notify"} in [dict(r) for r in owed]
                and sending
            )

        await eventually(in_flight, what="completion stored and the reply in flight")
        bot.kill()
    await harness.rs("/sandbox/telegram/faults", {"clear": True})
    assert results_replies(await harness.sent(ANNA["id"])) == []
    with BotProcess(settings, tmp_path / "bot.log"):
        await one_reply(harness, ANNA["id"])
    rows = db_rows(settings.database_path, "SELECT state FROM submissions")
    assert [r["state"] for r in rows] == ["notified"]


async def test_telegram_429_during_reply_waits_and_sends_once(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        await harness.rs(
            "/sandbox/telegram/faults",
            {
                "method": "sendMessage",
                "kind": "429",
                "retry_after": 1,
                "count": 1,
                "chat_id": ANNA["id"],
            },
        )
        started = time.monotonic()
        await one_reply(harness, ANNA["id"])
        assert time.monotonic() - started >= 0.9, "the bot waited as Telegram asked"
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    assert sum(1 for c in calls if c["method"] == "sendMessage") >= 3  # analysing, 429, results


async def test_blocked_chat_does_not_stall_others(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        await harness.chat(id=ANNA["id"], type="private", blocked=True)
        await harness.photo(BEN, caption="/scan Electronics")
        await harness.wait_text(BEN["id"], "Results")
        assert bot.store is not None

        async def anna_gone() -> bool:
            return not (await bot.store.chat(ANNA["id"])).reachable

        await eventually(anna_gone, what="Anna's chat marked unreachable")
        # Her results stay owed, held for a while (she may unblock the bot) ...
        rows = await bot.store.outbox_rows(ANNA["id"], time.time() + 3600, 10)
        [row] = [r for r in rows if r.kind is Kind.NOTIFY]
        assert row.not_before > time.time() + 60
        # ... and are dropped after a bounded time, recorded as never delivered.
        assert await bot.store.drop_stale(time.time() + 1, time.time()) >= 1
        [sub] = (await bot.store.for_chat(ANNA["id"]))[1]
        assert sub.state is State.NOTIFIED and "unreachable" in (sub.last_error or "")
        assert await bot.store.outbox_count(ANNA["id"]) == 0


async def test_failed_product_is_shown(harness: Harness, settings_for: Callable[..., Any]) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        await harness.photo(ANNA)
        await harness.photo(ANNA, data=fake_jpeg("FAIL") + b"FAIL")
        await harness.photo(ANNA)
        await harness.text(ANNA, "/done")
        await harness.wait_text(ANNA["id"], "Sending 3 products")
        reply = await harness.wait_text(ANNA["id"], "Results")
    assert "Product 2 failed: The item could not be recognised" in reply["text"]
    assert "2 of 3 analysed, 1 failed" in reply["text"]
    [create] = await harness.creates()
    assert len(create["body"]["products"]) == 3


async def test_thirty_product_batch_gets_a_csv_matching_the_results(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for(image_delivery="base64")):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        for _ in range(30):
            await harness.photo(ANNA)
        await harness.text(ANNA, "/done")
        document = await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "document", what="the CSV", within=30
        )
        replies = results_replies(await harness.sent(ANNA["id"]))
    assert replies and all(len(r["text"]) < 4096 for r in replies)
    rows = list(
        csv.DictReader(
            io.StringIO(base64.b64decode(document["content_b64"]).decode("utf-8-sig")),
            delimiter=";",
        )
    )
    assert len(rows) == 30
    [batch] = (await harness.http.get("/sandbox/batches")).json()["batches"]
    results = (
        await harness.http.get(
            f"/api/v1/products/analyze/{batch['batch_id']}/results",
            headers={"Authorization": "Bearer rs_test_full"},
        )
    ).json()["data"]["products"]
    for row, product in zip(rows, results, strict=True):
        assert row["product_id"] == product["product_id"]
        assert row["title"] == product["result"]["title"]
        assert float(row["price_min"]) == product["result"]["estimatedPrice"]["min"]
        assert row["currency"] == "EUR"


async def test_batch_that_never_completes_expires(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs("/sandbox/config", {"analysis_seconds": 1000})
    async with bot_running(settings_for(poll_deadline_seconds=1.0)):
        await harness.photo(ANNA, caption="/scan Electronics")
        reply = await harness.wait_text(ANNA["id"], "did not finish")
    assert results_replies(await harness.sent(ANNA["id"])) == []
    assert "/results" in reply["text"]


async def test_images_are_fetched_through_signed_urls(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = settings_for()
    await harness.rs("/sandbox/config", {"analysis_seconds": 1000})
    async with bot_running(settings) as bot:
        await harness.album(ANNA, count=2, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        [create] = await harness.creates()
        urls = [i["url"] for i in create["body"]["products"][0]["images"]]
        assert all(u.startswith(f"{settings.public_base_url}/media/") for u in urls)
        assert TOKEN not in json.dumps(create["body"]), "the bot token never leaves the bot"
        async with httpx.AsyncClient() as http:
            ok = await http.get(urls[0])
            assert ok.status_code == 200 and ok.content.startswith(b"\xff\xd8")
            key, expires, mac = urls[0].rsplit("/", 1)[1].split(".")
            base = urls[0].rsplit("/", 1)[0]
            tampered = [
                f"{base}/{key}.{int(expires) + 60}.{mac}",
                f"{base}/{key}x.{expires}.{mac}",
                f"{base}/{key}.{expires}.{mac[:-2]}AA",
                f"{base}/garbage",
                f"{base}/a.b.c",
            ]
            for url in tampered:
                assert (await http.get(url)).status_code == 404, url
            signer = MediaSigner(derive_key(TOKEN), settings.public_base_url, -10)
            expired = signer.url(key, time.time())
            assert (await http.get(expired)).status_code == 404
        assert bot.store is not None


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_health_and_metrics(
    harness: Harness, settings_for: Callable[..., Any], path: str
) -> None:
    async with bot_running(settings_for()) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Results")

        async def recorded() -> bool:  # the reply is out a moment before it is recorded
            samples = bot.metrics.completion_to_reply.collect()[0].samples
            return [x.value for x in samples if x.name.endswith("_count")] == [1.0]

        await eventually(recorded)
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{bot.port}{path}")
    assert response.status_code == 200
    if path == "/healthz":
        checks = response.json()["checks"]
        assert all(c["ok"] for c in checks.values()) and set(checks) == {
            "database",
            "telegram",
            "resell_scan",
        }
    else:
        text = response.text
        assert 'resellscan_bot_submissions{state="notified"} 1.0' in text
        create_ok = 'endpoint="POST /products/createAndAnalyze",outcome="ok"} 1.0'
        assert f"resellscan_bot_api_calls_total{{{create_ok}" in text
        assert 'resellscan_bot_telegram_sends_total{outcome="ok"} 1.0' in text
        assert "resellscan_bot_completion_to_reply_seconds_count 1.0" in text
        assert "resellscan_bot_webhooks_total" in text


async def test_health_is_503_when_resell_scan_is_unreachable(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = settings_for(
        resell_scan_base_url="http://127.0.0.1:9/api/v1", resell_scan_max_attempts=1
    )
    async with bot_running(settings) as bot:
        await harness.photo(ANNA, caption="/scan Electronics")  # the lookup cannot connect
        url = f"http://127.0.0.1:{bot.port}/healthz"
        async with httpx.AsyncClient() as http:

            async def degraded() -> httpx.Response | None:
                response = await http.get(url)
                return response if response.status_code == 503 else None

            response = await eventually(degraded, what="/healthz reporting Resell Scan down")
        checks = response.json()["checks"]
        assert (
            checks["resell_scan"]["ok"] is False
            and "ConnectionFailed" in checks["resell_scan"]["detail"]
        )
        assert checks["database"]["ok"] and checks["telegram"]["ok"]
    assert await harness.rs_requests() == []


async def test_a_progress_edit_refused_with_429_is_sent_after_the_wait(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A flood wait on an edit pauses the chat and the edit goes out afterwards, showing what
    is true by then; it is not dropped (the "finished" edit of the analysing message, here)."""
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics")
        analysing = await harness.wait_text(ANNA["id"], "Analysing")
        await harness.rs(
            "/sandbox/telegram/faults",
            {
                "method": "editMessageText",
                "kind": "429",
                "retry_after": 1,
                "count": 1,
                "chat_id": ANNA["id"],
            },
        )
        await one_reply(harness, ANNA["id"])
        await harness.wait_sent(
            ANNA["id"],
            lambda a: (
                a["kind"] == "edit"
                and a["message_id"] == analysing["message_id"]
                and "finished" in (a["text"] or "")
            ),
            what="the finished edit after the flood wait",
        )
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    edits = [c for c in calls if c["method"] == "editMessageText"]
    [refused] = [i for i, c in enumerate(edits) if c.get("ok") is False]
    message_id = edits[refused]["params"]["message_id"]
    assert any(
        c.get("ok") and c["params"]["message_id"] == message_id for c in edits[refused + 1 :]
    ), "the refused edit was sent again (rendered as things stand then), not dropped"


async def test_a_failing_delete_webhook_at_start_is_retried_and_polling_begins(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    await harness.rs(
        "/sandbox/telegram/faults", {"method": "deleteWebhook", "kind": "error", "count": 1}
    )
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics")
        await one_reply(harness, ANNA["id"])
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    deletes = [c for c in calls if c["method"] == "deleteWebhook"]
    assert [c.get("ok") for c in deletes][:2] == [False, True], deletes
