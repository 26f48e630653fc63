"""Acting on results: reactions, Retry failed, listing text, the duplicate guard, and fixing a
caption by editing it or by replying, through the real bot, the emulator and the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox.data import fake_jpeg
from tests.conftest import eventually
from tests.harness import ANNA, BEN, Harness, bot_running, results_replies

GROUP = {"id": -100555, "type": "supergroup", "title": "Market team"}


async def reactions(harness: Harness, chat_id: int, message_id: int) -> list[list[str]]:
    return [
        a["emoji"]
        for a in await harness.sent(chat_id)
        if a["kind"] == "reaction" and a["message_id"] == message_id
    ]


async def edit_caption(harness: Harness, chat_id: int, message_id: int, caption: str) -> None:
    await harness.rs(
        "/sandbox/telegram/edit", {"chat_id": chat_id, "message_id": message_id, "caption": caption}
    )


def buttons(action: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for row in (action["reply_markup"] or {}).get("inline_keyboard", []) for b in row]


# Reactions -------------------------------------------------------------------------------------


async def test_reactions_replace_the_analysing_message_in_groups(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP)
    async with bot_running(settings_for()):
        ids = await harness.album(ANNA, group, count=2, caption="/scan Electronics")
        await harness.wait_text(group["id"], "Results")

        async def done() -> list[list[str]]:
            seen = await reactions(harness, group["id"], ids[0])
            return seen if ["👌"] in seen else []

        assert await eventually(done) == [["👀"], ["👌"]], "👀 when stored, 👌 with results"
        await harness.photo(BEN, group, caption="/scan Nonexistent Thing")
        refused = await harness.wait_text(group["id"], "Nonexistent Thing")

        async def thumbs_down() -> bool:
            return ["👎"] in await reactions(harness, group["id"], refused["reply_to"])

        await eventually(thumbs_down, what="👎 on the refused photo")
    texts = [a["text"] or "" for a in await harness.sent(group["id"])]
    assert not [t for t in texts if "Analysing" in t], "reactions say it in groups"


async def test_where_reactions_are_refused_the_messages_carry_on(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP, reactions_allowed=False)
    async with bot_running(settings_for()):
        await harness.photo(ANNA, group, caption="/scan Electronics")
        await harness.wait_text(group["id"], "Results")
        await harness.photo(BEN, group, caption="/scan Nonexistent Thing")
        await harness.wait_text(group["id"], "Nonexistent Thing")
    assert not [a for a in await harness.sent(group["id"]) if a["kind"] == "reaction"]
    # In a private chat the per-album message stays when reactions are refused there.
    await harness.chat(id=ANNA["id"], type="private", reactions_allowed=False)
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/settings")
        view = await harness.wait_text(ANNA["id"], "“Analysing” message: on")
        [toggle] = [b for b in buttons(view) if "Analysing" in b["text"]]
        await harness.press(ANNA, ANNA["id"], view["message_id"], toggle["callback_data"])
        await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "edit" and "message: off" in (a["text"] or "")
        )
        await harness.photo(ANNA, caption="/scan Electronics")
        await harness.wait_text(ANNA["id"], "Analysing")
        await harness.wait_text(ANNA["id"], "Results")


async def test_refused_reactions_are_tried_again_after_a_while(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Telegram refuses reactions in a group: /settings says so (before: it kept promising
    "reactions show progress"), and 6 hours later (the bot's clock) one is tried again; an
    admin has allowed them meanwhile, so 👀 comes back (before: never again in that chat)."""
    from tests.test_outage import SteppedClock

    clock = SteppedClock()
    group = await harness.chat(**GROUP, reactions_allowed=False)
    async with bot_running(settings_for(), clock=clock):
        await harness.photo(ANNA, group, caption="/scan Electronics")
        await harness.wait_text(group["id"], "Results")
        await harness.text(ANNA, "/settings", group)
        await harness.wait_text(group["id"], "Telegram refuses the bot's reactions here")
        await harness.chat(id=GROUP["id"], reactions_allowed=True)
        await harness.photo(ANNA, group, caption="/scan Electronics")
        await eventually(lambda: _count_results(harness, group["id"], 2), what="2nd results")
        assert not [a for a in await harness.sent(group["id"]) if a["kind"] == "reaction"]
        clock.advance(6 * 3600 + 1)
        third = await harness.photo(ANNA, group, caption="/scan Electronics")

        async def seen() -> bool:
            return any(
                a["kind"] == "reaction" and a["message_id"] == third
                for a in await harness.sent(group["id"])
            )

        await eventually(seen, what="a reaction on the third photo")
        await harness.text(ANNA, "/settings", group)
        await harness.wait_text(group["id"], "reactions 👀 → 👌 show progress either way")


async def test_private_chat_can_turn_the_analysing_message_off(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/settings")
        view = await harness.wait_text(ANNA["id"], "“Analysing” message: on")
        [toggle] = [b for b in buttons(view) if "Analysing" in b["text"]]
        await harness.press(ANNA, ANNA["id"], view["message_id"], toggle["callback_data"])
        await harness.wait_sent(
            ANNA["id"], lambda a: a["kind"] == "edit" and "message: off" in (a["text"] or "")
        )
        await harness.photo(ANNA, caption="/scan Electronics")  # the first one learns reactions
        await harness.wait_text(ANNA["id"], "Results")
        before = len(
            [a for a in await harness.sent(ANNA["id"]) if "Analysing" in (a["text"] or "")]
        )
        await harness.photo(ANNA, caption="/scan Books")
        await eventually(lambda: _count_results(harness, ANNA["id"], 2), what="the second results")
    after = len([a for a in await harness.sent(ANNA["id"]) if "Analysing" in (a["text"] or "")])
    assert after == before, "reactions worked, so no analysing message"


async def _count_results(harness: Harness, chat_id: int, wanted: int) -> bool:
    return len(results_replies(await harness.sent(chat_id))) >= wanted


# Buttons under the results ---------------------------------------------------------------------


async def test_retry_failed_analyses_exactly_the_failed_products_once(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        await harness.photo(ANNA)
        await harness.photo(ANNA, data=fake_jpeg("this one fails") + b"FAIL")
        await harness.text(ANNA, "/done")
        results = await harness.wait_sent(
            ANNA["id"], lambda a: bool(results_replies([a])) and bool(a["reply_markup"])
        )
        [retry] = [b for b in buttons(results) if b["text"].startswith("🔁")]
        assert retry["text"] == "🔁 Retry failed (1)"
        listing = [b for b in buttons(results) if b["text"].startswith("📋")]
        assert len(listing) == 1 and 0 < len(listing[0]["copy_text"]["text"]) <= 256
        await harness.press(ANNA, ANNA["id"], results["message_id"], retry["callback_data"])
        await eventually(lambda: _count_results(harness, ANNA["id"], 2), what="the retry reply")
        await harness.press(ANNA, ANNA["id"], results["message_id"], retry["callback_data"])
        await harness.wait_text(ANNA["id"], "Analysing the 1 failed")
    [analyze] = await harness.rs_requests("/products/analyze", method="POST")
    batches = (await harness.http.get("/sandbox/batches")).json()["batches"]
    first = next(b for b in batches if len(b["product_ids"]) == 2)
    results_api = await harness.http.get(
        f"/api/v1/products/analyze/{first['batch_id']}/results",
        headers={"Authorization": "Bearer rs_test_full"},
    )
    failed = [
        p["product_id"] for p in results_api.json()["data"]["products"] if p["status"] == "failed"
    ]
    assert analyze["body"]["productIds"] == failed, "exactly the failed product ids"
    replies = results_replies(await harness.sent(ANNA["id"]))
    assert len(replies) == 2 and replies[1]["reply_to"] == replies[0]["reply_to"]
    edited = [a for a in await harness.sent(ANNA["id"]) if a["kind"] == "edit_markup"]
    assert edited and not [b for b in buttons(edited[-1]) if b["text"].startswith("🔁")]


async def test_a_retry_keeps_the_albums_numbers_photos_language_and_reaction(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Products 2 and 3 of a 3-photo /batch fail, and fail again when retried, and again
    when that retry is retried: each retry reply numbers them 2 and 3 (before: 1 and 2),
    counts the album's 3 photos (before: "0 photos" for a retry of a retry), speaks the
    album's language after the chat switched to German (before: a German notice over
    English results), and the album keeps 👌 for its product 1 (before: 👎)."""
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        await harness.photo(ANNA)
        await harness.photo(ANNA, data=fake_jpeg("fails-2") + b"FAIL")
        await harness.photo(ANNA, data=fake_jpeg("fails-3") + b"FAIL")
        await harness.text(ANNA, "/done")
        results = await harness.wait_sent(
            ANNA["id"], lambda a: bool(results_replies([a])) and bool(a["reply_markup"])
        )
        await harness.text(ANNA, "/settings")
        view = await harness.wait_text(ANNA["id"], "Settings of this chat")
        rows = view["reply_markup"]["inline_keyboard"]
        await harness.press(ANNA, ANNA["id"], view["message_id"], rows[1][0]["callback_data"])
        await harness.wait_sent(ANNA["id"], lambda a: "Einstellungen" in (a["text"] or ""))
        reply = results
        for round_ in (2, 3):  # the retry, then the retry of the retry
            [retry] = [b for b in buttons(reply) if b["text"].startswith("🔁")]
            await harness.press(ANNA, ANNA["id"], reply["message_id"], retry["callback_data"])
            await harness.wait_text(ANNA["id"], "Analysing the 2 failed")
            await eventually(
                lambda n=round_: _count_results(harness, ANNA["id"], n), what=f"reply {round_}"
            )
            reply = results_replies(await harness.sent(ANNA["id"]))[-1]
            assert "(3 photos)" in reply["text"], reply["text"]
            assert "Product 2 failed" in reply["text"] and "Product 3 failed" in reply["text"]
            assert "Product 1 failed" not in reply["text"]
        # on the photo the results answer (the submission's first)
        seen = await reactions(harness, ANNA["id"], results["reply_to"])
    assert seen and seen[-1] == ["👌"], seen


async def test_listing_text_for_every_product(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        for _ in range(3):
            await harness.photo(ANNA)
        await harness.text(ANNA, "/done")
        results = await harness.wait_sent(
            ANNA["id"], lambda a: bool(results_replies([a])) and bool(a["reply_markup"])
        )
    listing = [b for b in buttons(results) if b["text"].startswith("📋")]
    assert [b["text"] for b in listing] == ["📋 1", "📋 2", "📋 3"]
    for button in listing:
        text = button["copy_text"]["text"]
        assert 0 < len(text) <= 256 and "purchasePrice" not in text
        assert "Price:" in text or "Condition" in text


# Duplicate guard -------------------------------------------------------------------------------


async def test_duplicate_guard_single_album_partial_and_analyse_again(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    one, two, three = fake_jpeg("dup-1"), fake_jpeg("dup-2"), fake_jpeg("dup-3")
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics", data=one)
        await eventually(lambda: _count_results(harness, ANNA["id"], 1))
        # the same photo again: held, with a question
        again = await harness.photo(ANNA, caption="/scan Electronics", data=one)
        question = await harness.wait_text(ANNA["id"], "already analysed")
        assert question["reply_to"] == again and "Electronics" in question["text"]
        assert len(await harness.creates()) == 1, "nothing uploaded until a button is pressed"
        [show, analyse] = buttons(question)
        assert (show["text"], analyse["text"]) == ("Show results", "Analyse again")
        await harness.press(ANNA, ANNA["id"], question["message_id"], analyse["callback_data"])
        await eventually(lambda: _count_results(harness, ANNA["id"], 2), what="analysed again")
        # an album whose photos were all analysed (both earlier): held; "Show results"
        file_a, file_b = await harness.upload(two), await harness.upload(three)
        for file_id in (file_a, file_b):
            await harness.message(
                ANNA, photo_file_id=file_id, media_group_id="first", caption="/scan Electronics"
            )
        await eventually(lambda: _count_results(harness, ANNA["id"], 3))
        for file_id in (file_a, file_b):
            await harness.message(
                ANNA, photo_file_id=file_id, media_group_id="second", caption="/scan Electronics"
            )
        held = await harness.wait_sent(
            ANNA["id"],
            lambda a: "already analysed" in (a["text"] or "") and a["message_id"] != question[
                "message_id"
            ],
        )  # fmt: skip
        await harness.press(ANNA, ANNA["id"], held["message_id"], buttons(held)[0]["callback_data"])
        await eventually(lambda: _count_results(harness, ANNA["id"], 4), what="shown again")
        # a partial album (one new photo): not a duplicate, analysed at once
        new = await harness.upload(fake_jpeg("dup-new"))
        for file_id in (file_a, new):
            await harness.message(
                ANNA, photo_file_id=file_id, media_group_id="third", caption="/scan Electronics"
            )
        await eventually(lambda: _count_results(harness, ANNA["id"], 5), what="partial album")
    assert len(await harness.creates()) == 4  # first, again, first album, partial album
    questions = [
        a for a in await harness.sent(ANNA["id"]) if "already analysed" in (a["text"] or "")
    ]
    assert len(questions) == 2
    # Each question, once answered, says what was chosen and keeps no buttons (before: they
    # stayed, and then said "no longer valid").
    edits = {
        a["message_id"]: a
        for a in await harness.sent(ANNA["id"])
        if a["kind"] == "edit" and a["message_id"] in (question["message_id"], held["message_id"])
    }
    assert "being analysed again" in edits[question["message_id"]]["text"]
    assert "earlier results are shown below" in edits[held["message_id"]]["text"]
    assert all(not e.get("reply_markup") for e in edits.values()), edits


async def test_duplicate_guard_holds_a_photo_still_being_analysed(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """The same photo twice in a row, the first still at Resell Scan: the second is held
    (before: analysed twice, and counted twice in /report); "Show results" points to the
    first one's reply, which comes once."""
    await harness.rs("/sandbox/config", {"analysis_seconds": 3})
    photo = fake_jpeg("twice-quickly")
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics", data=photo)
        await harness.photo(ANNA, caption="/scan Electronics", data=photo)
        question = await harness.wait_text(ANNA["id"], "are being analysed already")
        [show, _] = buttons(question)
        await harness.press(ANNA, ANNA["id"], question["message_id"], show["callback_data"])
        await harness.wait_sent(
            ANNA["id"],
            lambda a: (
                a["kind"] == "edit" and "come in the reply to the earlier" in (a["text"] or "")
            ),
        )
        await eventually(lambda: _count_results(harness, ANNA["id"], 1), what="the one reply")
    assert len(await harness.creates()) == 1


async def test_cancel_takes_the_buttons_off_a_duplicate_question(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """/cancel drops photos held by the duplicate guard, and their question says so and keeps
    no buttons (before: they stayed, and then said "no longer valid")."""
    photo = fake_jpeg("cancel-held")
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics", data=photo)
        await eventually(lambda: _count_results(harness, ANNA["id"], 1), what="the first")
        await harness.photo(ANNA, caption="/scan Electronics", data=photo)
        question = await harness.wait_text(ANNA["id"], "already analysed")
        await harness.text(ANNA, "/cancel")
        edit = await harness.wait_sent(
            ANNA["id"],
            lambda a: a["kind"] == "edit" and a["message_id"] == question["message_id"],
        )
    assert "were not sent (/cancel)" in edit["text"] and not edit.get("reply_markup")
    assert len(await harness.creates()) == 1


async def test_a_photo_whose_analysis_failed_is_not_held_as_analysed(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Its earlier analysis failed as a whole: sending it again analyses it, no question
    (before: held as "already analysed")."""
    photo = fake_jpeg("failed-before") + b"FAIL"
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Electronics", data=photo)
        await eventually(lambda: _count_results(harness, ANNA["id"], 1), what="the failure")
        await harness.photo(ANNA, caption="/scan Electronics", data=photo)
        await eventually(lambda: _count_results(harness, ANNA["id"], 2), what="sent again")
    texts = [a["text"] or "" for a in await harness.sent(ANNA["id"])]
    assert not [t for t in texts if "already" in t], texts
    assert len(await harness.creates()) == 2


# Fixing instead of resending --------------------------------------------------------------------


async def test_editing_the_caption_fixes_a_missing_field_and_an_unknown_collection(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        first = await harness.photo(ANNA, caption="/scan Sneakers")
        await harness.wait_text(ANNA["id"], "purchasePrice")
        await edit_caption(harness, ANNA["id"], first, "/scan Sneakers purchasePrice=12,5")
        await harness.wait_text(ANNA["id"], "Caption updated")
        await eventually(lambda: _count_results(harness, ANNA["id"], 1), what="fixed by edit")
        second = await harness.photo(ANNA, caption="/scan Sneekerz purchasePrice=3")
        await harness.wait_text(ANNA["id"], "Sneekerz")
        await edit_caption(harness, ANNA["id"], second, "/scan Sneakers purchasePrice=3")
        await eventually(lambda: _count_results(harness, ANNA["id"], 2), what="fixed collection")
        # after sending, an edit is too late (and says how to retry)
        await edit_caption(harness, ANNA["id"], second, "/scan Books")
        await harness.wait_text(ANNA["id"], "already sent to Resell Scan")
    creates = await harness.creates()
    assert [c["body"]["products"][0]["manual_fields"] for c in creates] == [
        {"purchasePrice": 12.5},
        {"purchasePrice": 3.0},
    ]


async def test_replying_with_fields_fixes_a_rejection_and_answers_a_question(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        await harness.photo(ANNA, caption="/scan Sneakers purchasePrice=cheap")
        refusal = await harness.wait_text(ANNA["id"], "must be a number")
        await harness.text(ANNA, "purchasePrice=20", reply_to_message_id=refusal["message_id"])
        await eventually(lambda: _count_results(harness, ANNA["id"], 1), what="fixed by reply")
        # a plain photo into a collection with required fields: asked, kept, then answered
        await harness.text(ANNA, "/use Sneakers")
        await harness.wait_text(ANNA["id"], "Default collection")
        await harness.photo(ANNA)
        question = await harness.wait_text(ANNA["id"], "needs more details")
        assert "purchasePrice=…" in question["text"]
        await harness.text(ANNA, "purchasePrice=7", reply_to_message_id=question["message_id"])
        await eventually(lambda: _count_results(harness, ANNA["id"], 2), what="answered", within=30)
    creates = await harness.creates()
    assert [c["body"]["products"][0]["manual_fields"] for c in creates] == [
        {"purchasePrice": 20.0},
        {"purchasePrice": 7.0},
    ]


async def test_only_the_sender_or_an_admin_answers_a_question(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """In a group, Ben replies `purchasePrice=1` to the question about Anna's photos: he is
    told only Anna or an admin can answer, and nothing goes out under her name (before: the
    upload went out with Ben's value). Anna's own answer sends them."""
    group = {"id": -1003, "type": "supergroup", "title": "Team"}
    async with bot_running(settings_for()):
        await harness.photo(ANNA, group, caption="/scan Sneakers purchasePrice=cheap")
        refusal = await harness.wait_text(-1003, "must be a number")
        await harness.text(BEN, "purchasePrice=1", group, reply_to_message_id=refusal["message_id"])
        await harness.wait_text(-1003, "Only Anna Berg (or an admin of this chat) can answer")
        assert await harness.creates() == []
        await harness.text(
            ANNA, "purchasePrice=20", group, reply_to_message_id=refusal["message_id"]
        )
        await eventually(lambda: _count_results(harness, -1003, 1), what="Anna's answer")
    creates = await harness.creates()
    assert [c["body"]["products"][0]["manual_fields"] for c in creates] == [{"purchasePrice": 20.0}]


async def test_small_things_say_what_happened(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    async with bot_running(settings_for()):
        # an album with two different captions: the first applies, the second sender is told
        await harness.album(ANNA, count=2, caption="/scan Electronics", caption_on=0)
        group = "album-two-captions"
        first = await harness.upload()
        second = await harness.upload()
        await harness.message(
            ANNA, photo_file_id=first, media_group_id=group, caption="/scan Books"
        )
        late = await harness.message(
            ANNA, photo_file_id=second, media_group_id=group, caption="/scan Comics"
        )
        note = await harness.wait_text(ANNA["id"], "yours was ignored")
        assert note["reply_to"] == late and "Books" in note["text"]
        # a new /batch while one is collecting: the open one is sent first, and said so
        await harness.text(ANNA, "/batch Electronics")
        await harness.wait_text(ANNA["id"], "Collecting")
        await harness.photo(ANNA)
        await harness.text(ANNA, "/batch Books")
        await harness.wait_text(ANNA["id"], "Your open batch in Electronics (1 photo) was sent")
        await harness.text(ANNA, "/cancel")  # drops the new, empty batch (and anything waiting)
        await harness.wait_text(ANNA["id"], "Dropped")
        # a pending /scan is cancelled in words that say so
        await harness.text(ANNA, "/scan Books")
        await harness.wait_text(ANNA["id"], "your photos in this chat go to Books")
        await harness.text(ANNA, "/cancel")
        await harness.wait_text(ANNA["id"], "no longer go to a chosen collection")
        # a batch where everything failed says so, with advice and Retry
        await harness.photo(ANNA, caption="/scan Electronics", data=fake_jpeg("bad") + b"FAIL")
        failed = await harness.wait_text(ANNA["id"], "A clearer photo usually helps")
        assert "✔️" not in failed["text"]
        assert next(b["text"] for b in buttons(failed)) == "🔁 Retry failed (1)"
