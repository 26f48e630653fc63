"""Bad, forged and faulty input, found by trying the bot as a new user would: each gets a
clear answer and changes nothing, and no fault leaves a submission stuck or spinning."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from bot.images import to_jpeg
from sandbox.data import collection_id, fake_jpeg
from storage import State
from storage.outbox import Kind
from tests.conftest import eventually
from tests.harness import ANNA, BEN, Harness, bot_running, results_replies

GROUP = {"id": -100777, "type": "supergroup", "title": "Team"}


async def _answers(harness: Harness) -> list[str | None]:
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    return [
        c["params"].get("text")
        for c in calls
        if c["method"] == "answerCallbackQuery" and "answered_at" in c
    ]


def heic_bytes() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    image = Image.new("RGB", (96, 64), (30, 120, 200))
    out = io.BytesIO()
    image.save(out, format="HEIF", quality=80)
    return out.getvalue()


async def test_forged_and_garbage_buttons_are_answered_and_change_nothing(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()) as bot:
        await harness.lose_next_upload_answer()
        await harness.photo(ANNA, caption="/scan Electronics")
        question = await harness.wait_text(ANNA["id"], "do not know whether the analysis started")
        resend = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        assert bot.store is not None
        sub = await bot.store.get(1)
        assert sub is not None and sub.state is State.UNCERTAIN
        # Ben replays Anna's button in his own chat; then guessable and garbage data.
        ben_message = await harness.text(BEN, "/help")
        await harness.wait_text(BEN["id"], "How to scan")
        forged = [
            *(resend, f"resub:{sub.id}", "resub:abc", "pick:abc:x", "pp::x:y", "zzz", "cp:x:"),
            "fgo:99999999999999999999",  # an id too big for SQLite (was an OverflowError)
        ]
        for data in forged:
            await harness.press(BEN, BEN["id"], ben_message, data)
        # Ben in Anna's chat (a group member would be another user on the same message).
        await harness.press(BEN, ANNA["id"], question["message_id"], resend)

        async def answered() -> list[str | None]:
            found = await _answers(harness)
            return found if len(found) >= len(forged) + 1 else []

        answers = await eventually(answered, what="every press answered")
        # Answered in any order: every forged one as no longer valid; in Anna's chat the
        # button is valid, but not Ben's: he is told whose it is.
        whose = "Only Anna Berg (who sent the photos) or an admin of this chat can use this button."
        assert sorted(answers, key=lambda text: text == whose) == [
            *["This button is no longer valid."] * len(forged),
            whose,
        ], answers
    assert len(await harness.rs_requests("/products/createAndAnalyze")) == 1, "nothing resent"
    for chat in (ANNA["id"], BEN["id"]):
        texts = [a["text"] or "" for a in await harness.sent(chat)]
        assert not [t for t in texts if "Something went wrong" in t], texts


async def test_a_huge_number_is_refused_once_and_nothing_is_sent(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    settings = settings_for()
    async with bot_running(settings) as bot:
        await harness.photo(ANNA, caption="/scan Sneakers purchasePrice=" + "9" * 290)
        refusal = await harness.wait_text(ANNA["id"], "out of range")
        assert "purchasePrice" in refusal["text"]
        assert bot.store is not None

        async def settled() -> bool:
            sub = await bot.store.get(1)  # type: ignore[union-attr]
            return sub is not None and sub.state is State.REJECTED and sub.notified_at is not None

        await eventually(settled, what="the rejection recorded as told")
    async with bot_running(settings):  # a restart sends nothing more
        await harness.text(ANNA, "/status")
        await harness.wait_text(ANNA["id"], "Open analyses")
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"])]
    assert sum("out of range" in t for t in texts) == 1
    assert not [t for t in texts if "interrupted" in t]
    assert await harness.rs_requests("/products/createAndAnalyze") == []


async def test_a_photo_for_another_bot_is_left_alone(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP, admins=[ANNA["id"]])
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/use Electronics", group)
        await harness.wait_text(group["id"], "Default collection")
        await harness.photo(ANNA, group, caption="/scan@OtherBot Books")
        await harness.photo(BEN, group, caption="/scan Books")
        await harness.wait_text(group["id"], "Results")
        replies = results_replies(await harness.sent(group["id"]))
        assert len(replies) == 1 and "Ben" in replies[0]["text"]
    creates = await harness.creates()
    assert len(creates) == 1


@pytest.mark.parametrize("delivery", ["url", "base64"])
async def test_heic_file_is_converted_to_jpeg(
    harness: Harness, settings_for: Callable[..., Any], delivery: str
) -> None:
    settings = settings_for(**({"public_base_url": ""} if delivery == "base64" else {}))
    heic = heic_bytes()
    async with bot_running(settings):
        await harness.document(
            ANNA, name="IMG_0042.HEIC", mime="image/heic", data=heic, caption="/scan Electronics"
        )
        reply = await harness.wait_text(ANNA["id"], "Results")
        assert "products[" not in reply["text"]
    [create] = await harness.creates()
    [image] = create["body"]["products"][0]["images"]
    assert image["fileName"].endswith(".jpg")
    assert to_jpeg(heic)[:3] == b"\xff\xd8\xff"


async def test_media_url_serves_the_photo_unchanged(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Resell Scan fetches a 3 MB photo from /media (streamed from Telegram) byte for byte."""
    data = fake_jpeg("big", size=3 * 1024 * 1024)
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics", data=data)
        await harness.wait_text(ANNA["id"], "Results")
    listing = await harness.http.get(
        f"/api/v1/collections/{collection_id('Electronics')}/products",
        params={"include_images": "true"},
        headers={"Authorization": "Bearer rs_test_full"},
    )
    [product] = listing.json()["data"]
    [image] = product["images"]
    assert (image["size"], image["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())


async def test_a_rendering_fault_keeps_the_message_owed_and_backs_off(
    harness: Harness, settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while building the reply (here: rendering raises) must neither lose the message
    owed nor retry in a tight loop; once the fault is gone the reply goes out, once."""
    async with bot_running(settings_for()) as bot:
        assert bot.chat is not None
        real = bot.chat.messages_for
        calls: list[float] = []
        broken = True

        async def flaky(sub: Any) -> Any:
            calls.append(time.monotonic())
            if broken:
                raise KeyError("results_header")
            return await real(sub)

        monkeypatch.setattr(bot.chat, "messages_for", flaky)
        await harness.photo(ANNA, caption="/scan Electronics")
        await eventually(lambda: _true(calls), what="the first failed render")
        first = calls[0]
        await eventually(lambda: _true(time.monotonic() - first > 0.6), what="time to pass")
        assert len(calls) == 1, "backing off, not spinning"
        assert bot.store is not None
        [sub] = (await bot.store.for_chat(ANNA["id"]))[1]  # completed: finished for /status
        assert sub.state is State.COMPLETED
        [row] = await bot.store.outbox_rows(ANNA["id"], time.time() + 3600, 10)
        assert row.kind is Kind.NOTIFY and row.attempts == 1 and row.not_before > time.time()
        broken = False
        await harness.wait_text(ANNA["id"], "Results", within=10)
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


async def test_unknown_batch_events_are_counted(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    import httpx

    from bot.resellscan.webhooks import sign
    from tests.harness import WEBHOOK_SECRET

    settings = settings_for(resell_scan_webhook_secrets=WEBHOOK_SECRET)
    async with bot_running(settings) as bot, httpx.AsyncClient() as http:
        body = b'{"id": "evt_dash", "event": "analysis.completed", "data": {"batch_id": 1}}'
        url = f"http://127.0.0.1:{bot.port}"
        answer = await http.post(
            f"{url}/webhooks/resell-scan",
            content=body,
            headers={"x-webhook-signature": sign(body, WEBHOOK_SECRET)},
        )
        assert answer.json()["result"] == "unknown_batch"
        metrics = (await http.get(f"{url}/metrics")).text
        assert "resellscan_bot_webhook_events_unknown 1.0" in metrics


async def _true(value: Any) -> bool:
    return bool(value)


async def test_a_huge_scan_command_gets_a_clear_message(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """`/scan ` and 4,080 characters: told the name is too long, in a message Telegram takes
    (before: "something went wrong", the echo was longer than a message may be)."""
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/scan " + "x" * 4080)
        await harness.wait_text(ANNA["id"], "the collection name is longer than 100 characters")
        await harness.text(ANNA, "/scan Sneakers a=1 " + "z" * 4000)
        problem = await harness.wait_text(ANNA["id"], "comes after the field=value pairs")
        assert len(problem["text"]) < 400
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"])]
    assert not [t for t in texts if "Something went wrong" in t], texts
