"""End to end through the Telegram emulator, the Resell Scan sandbox and a real SQLite file,
with the real PTB Application: photos, albums, captions, commands, groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import eventually
from tests.harness import ANNA, Harness, bot_running, results_replies


async def test_single_photo_with_caption(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        message_id = await harness.photo(ANNA, caption="/scan Sneakers purchasePrice=12,5")
        analysing = await harness.wait_text(ANNA["id"], "Analysing")
        assert analysing["reply_to"] == message_id
        assert "Sneakers" in analysing["text"] and "Anna Berg" in analysing["text"]
        creates = await harness.creates()
        assert len(creates) == 1
        body = creates[0]["body"]
        assert len(body["products"]) == 1 and len(body["products"][0]["images"]) == 1
        assert body["products"][0]["manual_fields"] == {"purchasePrice": 12.5}
        results = await harness.wait_text(ANNA["id"], "Results")
        assert results["reply_to"] == message_id
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


import hashlib  # noqa: E402

from sandbox.data import collection_id, fake_jpeg  # noqa: E402
from tests.harness import BEN, CARLA, MALLORY  # noqa: E402


async def products_in(harness: Harness, name: str) -> list[dict[str, Any]]:
    response = await harness.http.get(
        f"/api/v1/collections/{collection_id(name)}/products",
        params={"include_images": "true", "limit": 100},
        headers={"Authorization": "Bearer rs_test_full"},
    )
    items: list[dict[str, Any]] = response.json()["data"]
    return items


async def test_album_of_four_out_of_order_is_one_product_in_order(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    photos = [fake_jpeg(f"album-{i}") for i in range(4)]
    async with bot_running(settings_for(image_delivery="base64")):
        ids = []
        for index in (2, 0, 3, 1):  # delivered out of order; message ids say the real order
            file_id = await harness.upload(photos[index])
            ids.append(
                await harness.message(
                    ANNA,
                    photo_file_id=file_id,
                    media_group_id="grp-4",
                    message_id=500 + index,
                    caption="/scan Electronics" if index == 3 else None,
                )
            )
        results = await harness.wait_text(ANNA["id"], "Results")
        assert results["reply_to"] == 500
    creates = await harness.creates()
    assert len(creates) == 1
    assert len(creates[0]["body"]["products"]) == 1
    assert len(creates[0]["body"]["products"][0]["images"]) == 4
    [product] = await products_in(harness, "Electronics")
    assert [i["sha256"] for i in product["images"]] == [
        hashlib.sha256(p).hexdigest() for p in photos
    ]


async def test_two_users_albums_at_once_in_a_forum_group(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = {"id": -1001, "type": "supergroup", "title": "Team", "is_forum": True}
    async with bot_running(settings_for()):
        # Interleave the members of two albums from two people in two topics.
        anna_files = [await harness.upload() for _ in range(3)]
        ben_files = [await harness.upload() for _ in range(2)]
        anna_ids, ben_ids = [], []
        for i in range(3):
            anna_ids.append(
                await harness.message(
                    ANNA,
                    group,
                    photo_file_id=anna_files[i],
                    media_group_id="a-1",
                    message_thread_id=7,
                    caption="/scan Sneakers purchasePrice=10" if i == 0 else None,
                )
            )
            if i < 2:
                ben_ids.append(
                    await harness.message(
                        BEN,
                        group,
                        photo_file_id=ben_files[i],
                        media_group_id="b-1",
                        message_thread_id=9,
                        caption="/scan@ResellScanSandboxBot Books" if i == 1 else None,
                    )
                )
        anna_reply = await harness.wait_sent(
            -1001,
            lambda a: "Results" in (a["text"] or "") and "Anna" in a["text"],
            what="Anna's results",
        )
        ben_reply = await harness.wait_sent(
            -1001,
            lambda a: "Results" in (a["text"] or "") and "Ben" in a["text"],
            what="Ben's results",
        )
    assert (anna_reply["thread_id"], anna_reply["reply_to"]) == (7, anna_ids[0])
    assert (ben_reply["thread_id"], ben_reply["reply_to"]) == (9, ben_ids[0])
    creates = await harness.creates()
    assert len(creates) == 2
    by_count = sorted(len(c["body"]["products"][0]["images"]) for c in creates)
    assert by_count == [2, 3]


@pytest.mark.parametrize("caption_on", [0, 1])
async def test_an_album_captioned_for_another_bot_is_not_ours_at_all(
    harness: Harness, settings_for: Callable[..., Any], caption_on: int
) -> None:
    """`/scan@OtherBot Toys` on one photo of a 3-photo album (the first, or the second after
    one was stored already): no photo of it is analysed, nobody is asked anything (before:
    the others went up caption-less into the default collection, paid, or got a collection
    question for "1 photo"). The next album, for us, goes up as usual."""
    group = {"id": -1002, "type": "supergroup", "title": "Team"}
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/use Sneakers", group)
        await harness.wait_text(-1002, "Sneakers")
        await harness.album(
            ANNA, group, count=3, caption="/scan@OtherBot Toys", caption_on=caption_on
        )
        await harness.album(ANNA, group, count=2, caption="/scan Electronics")
        await harness.wait_sent(-1002, lambda a: "Results" in (a["text"] or ""))
    creates = await harness.creates()
    assert len(creates) == 1 and len(creates[0]["body"]["products"][0]["images"]) == 2
    texts = [a["text"] or "" for a in await harness.sent(-1002)]
    assert not [t for t in texts if "Which collection" in t or "Toys" in t], texts


async def test_image_as_file_works_pdf_and_huge_file_refused(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.document(
            ANNA,
            name="item.png",
            mime="image/png",
            data=b"\x89PNG\r\n\x1a\n" + b"x" * 100,
            caption="/scan Electronics",
        )
        await harness.wait_text(ANNA["id"], "Results")
        await harness.document(
            ANNA, name="invoice.pdf", mime="application/pdf", caption="/scan Electronics"
        )
        await harness.wait_text(ANNA["id"], "not an image")
        await harness.document(
            ANNA,
            name="huge.jpg",
            mime="image/jpeg",
            file_size=25 * 1024 * 1024,
            caption="/scan Electronics",
        )
        await harness.wait_text(ANNA["id"], "larger than 20 MB")
    assert len(await harness.creates()) == 1
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    assert sum(1 for c in calls if c["method"] == "getFile") <= 1, "no download for refused files"


async def test_unknown_collection_is_refused_and_nothing_sent(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Spaceships")
        reply = await harness.wait_text(ANNA["id"], "No collection matches")
        assert "Spaceships" in reply["text"]
    assert await harness.rs_requests("/products/createAndAnalyze") == []


async def test_ambiguous_collection_gets_buttons_then_submits(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Trading")
        question = await harness.wait_text(ANNA["id"], "matches several collections")
        buttons = [row[0] for row in question["reply_markup"]["inline_keyboard"]]
        assert [b["text"] for b in buttons] == ["Trading Cards", "Trading Cards Japan"]
        assert await harness.rs_requests("/products/createAndAnalyze") == []
        await harness.press(ANNA, ANNA["id"], question["message_id"], buttons[1]["callback_data"])
        await harness.wait_text(ANNA["id"], "Results")
    [create] = await harness.creates()
    assert create["body"]["collectionId"] == collection_id("Trading Cards Japan")


async def test_missing_and_wrongly_typed_fields_are_refused_with_a_working_example(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Sneakers size=42")
        missing = await harness.wait_text(ANNA["id"], "is required")
        assert "purchasePrice" in missing["text"]
        assert "/scan Sneakers purchasePrice=12.5 size=42" in missing["text"]
        await harness.photo(ANNA, caption="/scan Sneakers purchasePrice=cheap quantity=2.5")
        typed = await harness.wait_text(ANNA["id"], "must be a number")
        assert "whole number" in typed["text"]
        await harness.photo(ANNA, caption='/scan Sneakers purchasePrice=5 "unclosed')
        await harness.wait_text(ANNA["id"], "could not read the caption")
    assert await harness.rs_requests("/products/createAndAnalyze") == []


async def test_unauthorised_user_is_refused_with_ids_and_nothing_sent(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(MALLORY, caption="/scan Sneakers purchasePrice=1")
        reply = await harness.wait_text(MALLORY["id"], "This bot is private")
        assert str(MALLORY["id"]) in reply["text"]
        await harness.text(MALLORY, "/start")
        await harness.wait_sent(
            MALLORY["id"],
            lambda a: (
                a["kind"] == "send" and len([x for x in [a] if "private" in (x["text"] or "")]) == 1
            ),
        )
    assert await harness.rs_requests() == []


async def test_collections_pages_through_all(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/collections")
        first = await harness.wait_text(ANNA["id"], "Collections")
        seen: list[str] = []
        message = first
        for _ in range(10):  # bounded: 30 collections at 8 per page is 4 pages
            rows = message["reply_markup"]["inline_keyboard"]
            seen += [row[0]["text"] for row in rows if row[0]["callback_data"].startswith("use:")]
            nav = [b for b in rows[-1] if b["text"] == "▶"]
            if not nav:
                break
            await harness.press(ANNA, ANNA["id"], message["message_id"], nav[0]["callback_data"])
            page_no = len(seen) // 8 + 1
            message = await harness.wait_sent(
                ANNA["id"],
                lambda a, p=page_no: a["kind"] == "edit" and f"page {p}/" in a["text"],
                what=f"page {page_no}",
            )
        assert len(seen) == 30 and len(set(seen)) == 30


async def test_use_then_plain_photo_uses_the_default(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/use electronics")
        reply = await harness.wait_text(ANNA["id"], "Default collection")
        assert "Electronics" in reply["text"] and "purchasePrice" in reply["text"]
        await harness.photo(ANNA)
        await harness.wait_text(ANNA["id"], "Results")
    [create] = await harness.creates()
    assert create["body"]["collectionId"] == collection_id("Electronics")


async def test_german_chat_gets_german_texts(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(CARLA, "/help")
        await harness.wait_text(CARLA["id"], "So scannst du")
        await harness.photo(CARLA, caption="/scan Sneakers purchasePrice=9,99")
        await harness.wait_text(CARLA["id"], "Analysiere")
        await harness.wait_text(CARLA["id"], "Ergebnisse")
    [create] = await harness.creates()
    assert create["body"]["products"][0]["manual_fields"] == {"purchasePrice": 9.99}


async def test_photo_without_collection_gets_a_picker(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(BEN)
        picker = await harness.wait_text(BEN["id"], "Which collection")
        assert await harness.rs_requests("/products/createAndAnalyze") == []
        rows = picker["reply_markup"]["inline_keyboard"]
        choice = next(r[0] for r in rows if r[0]["text"] == "Vintage Clothing")
        await harness.press(BEN, BEN["id"], picker["message_id"], choice["callback_data"])
        await harness.wait_text(BEN["id"], "Results")
    [create] = await harness.creates()
    assert create["body"]["collectionId"] == collection_id("Vintage Clothing")


async def test_a_picked_collection_that_needs_fields_does_not_promise_sending(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Sneakers requires purchasePrice: the picker's message says the collection was chosen,
    and the question for the price follows (before: "sending 1 photo", then the question)."""
    async with bot_running(settings_for()):
        await harness.photo(BEN)
        picker = await harness.wait_text(BEN["id"], "Which collection")
        rows = picker["reply_markup"]["inline_keyboard"]
        choice = next(r[0] for r in rows if r[0]["text"] == "Sneakers")
        await harness.press(BEN, BEN["id"], picker["message_id"], choice["callback_data"])
        await harness.wait_text(BEN["id"], "needs more details")
        edits = [a["text"] or "" for a in await harness.sent(BEN["id"]) if a["kind"] == "edit"]
        assert any("Sneakers chosen for 1 photo from Ben" in e for e in edits), edits
        assert not [e for e in edits if "sending" in e], edits
    assert await harness.creates() == []


async def test_killed_between_album_members_and_submit_submits_once(
    harness: Harness, settings_for: Callable[..., Any], tmp_path: Any
) -> None:
    from tests.conftest import eventually
    from tests.proc import BotProcess, db_rows

    settings = settings_for(album_window_seconds=3.0, album_max_wait_seconds=6.0)
    db = settings.database_path
    with BotProcess(settings, tmp_path / "bot.log") as bot:
        await harness.album(ANNA, count=3, caption="/scan Electronics")

        async def stored() -> bool:
            rows = db_rows(db, "SELECT COUNT(*) AS n FROM photos")
            return bool(rows) and rows[0]["n"] == 3

        await eventually(stored, what="three album members in SQLite")
        assert await harness.rs_requests("/products/createAndAnalyze") == []
        bot.kill()
    with BotProcess(settings, tmp_path / "bot.log"):
        await harness.wait_text(ANNA["id"], "Results", within=20)
    creates = await harness.creates()
    assert len(creates) == 1 and len(creates[0]["body"]["products"][0]["images"]) == 3
    assert len(results_replies(await harness.sent(ANNA["id"]))) == 1


@pytest.mark.parametrize("count", [100, 230])
async def test_a_burst_is_stored_whole_then_every_update_is_handled(
    harness: Harness, settings_for: Callable[..., Any], count: int
) -> None:
    """Updates waiting before the bot starts come in full getUpdates answers (100): they are
    stored before any is processed, and every one is processed once the burst ends, also when
    it ends exactly at a full answer (the next answer is empty)."""
    file_id = await harness.upload(None)
    senders = [{"id": 7000 + i, "first_name": f"Seller {i}"} for i in range(count)]
    for sender in senders:  # one private chat each: nothing waits for an album
        await harness.message(sender, photo_file_id=file_id, caption="/scan Electronics")
    # A long poll of 20 s: a burst that ends at a full answer must not wait for it.
    settings = settings_for(
        album_window_seconds=0.1, allow_all_users=True, telegram_poll_timeout=20
    )
    async with bot_running(settings) as bot:
        assert bot.store is not None

        async def all_handled() -> bool:
            assert bot.db is not None
            async with bot.db.reading() as tx:
                row = await tx.one("SELECT COUNT(*) FROM photos")
            return bool(row) and int(row[0]) == count

        await eventually(all_handled, within=10, what=f"all {count} photos handled")
        assert bot.inbox is not None
        inbox = bot.inbox.inbox

        async def all_done() -> bool:
            return await inbox.pending() == []

        await eventually(all_done, what="every update marked done")
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    sizes = [len(c["result"]) for c in calls if c["method"] == "getUpdates" and c.get("ok")]
    assert sizes[: (count // 100) + 1][:-1] == [100] * (count // 100), sizes[:5]
