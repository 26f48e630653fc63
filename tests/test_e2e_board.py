"""The live board of a team group under real use: it goes when its work is done although
Telegram refused the delete for a moment, it is replaced when Telegram will not edit it any
more, it stays one message with 50 albums from people with long names, and a short burst of
albums is seen to move on it. The emulator enforces Telegram's limits and answers the faults."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from bot.telegram import render
from storage import State
from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, Harness, bot_running
from tests.test_presentation import make_sub

pytestmark = pytest.mark.timeout(120)

GROUP = {"id": -1001234500077, "type": "supergroup", "title": "Market team"}


def is_board(action: dict[str, Any]) -> bool:
    text = action.get("text") or ""
    return action["kind"] in ("send", "edit") and (
        text.startswith("📋 Being analysed") or text.startswith("📋 Wird analysiert")
    )


async def fault(harness: Harness, **body: Any) -> None:
    await harness.rs("/sandbox/telegram/faults", body)


async def floods(harness: Harness) -> int:
    answer = (await harness.http.get("/sandbox/telegram/limits")).json()
    return int(answer["floods"])


async def all_notified(runtime: Any, count: int) -> bool:
    counts: dict[str, int] = await runtime.store.count_by_state()
    return counts == {State.NOTIFIED.value: count}


@pytest.mark.parametrize(
    "refusal",
    [
        {"kind": "429", "retry_after": 1},
        {"kind": "error", "error_code": 502},
    ],
    ids=["429", "502"],
)
async def test_a_board_whose_delete_fails_once_is_deleted_later(
    harness: Harness, settings_for: Callable[..., Any], refusal: dict[str, Any]
) -> None:
    """The analysis is done, and Telegram answers the board's delete with a 429 (or a 502)
    once: the board is not forgotten but deleted after the pause (the backoff), not left
    saying "being analysed" for good."""
    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/config", {"analysis_seconds": 1.0})
    async with bot_running(settings_for(board_interval_seconds=0.3)) as runtime:
        await harness.album(ANNA, group, count=2, caption="/scan Electronics")
        board = await harness.wait_sent(group["id"], is_board, what="the board")
        await fault(harness, method="deleteMessage", chat_id=group["id"], count=1, **refusal)
        await eventually(lambda: all_notified(runtime, 1), what="the results sent")
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "delete" and a["message_id"] == board["message_id"],
            within=20,
            what="the board deleted after Telegram's refusal",
        )
        assert await runtime.store.board(group["id"], 0) == (None, None)
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    deletes = [c for c in calls if c["method"] == "deleteMessage"]
    assert [c.get("ok") for c in deletes] == [False, True], "refused once, then deleted"


async def test_a_board_telegram_will_not_edit_is_replaced_by_a_fresh_one(
    harness: Harness, settings_for: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Telegram answers every edit of the board with "message can't be edited": the bot
    forgets that message (deletes it where it can) and sends a fresh board, which goes on
    showing the analyses and goes when they are done. No error and no traceback is logged."""
    caplog.set_level(logging.INFO)
    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/config", {"analysis_seconds": 3.0})
    async with bot_running(settings_for(board_interval_seconds=0.3)) as runtime:
        await harness.album(ANNA, group, count=2, caption="/scan Electronics")
        old = await harness.wait_sent(group["id"], is_board, what="the board")
        await fault(
            harness,
            method="editMessageText",
            kind="error",
            error_code=400,
            description="Bad Request: message can't be edited",
            message_id=old["message_id"],
            count=1000,
        )
        await harness.photo(BEN, group, caption="/scan Books")
        fresh = await harness.wait_sent(
            group["id"],
            lambda a: is_board(a) and a["kind"] == "send" and "Ben" in (a["text"] or ""),
            what="a fresh board listing Ben's photo",
        )
        assert fresh["message_id"] != old["message_id"]
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "delete" and a["message_id"] == old["message_id"],
            what="the old board deleted",
        )
        await eventually(lambda: all_notified(runtime, 2), within=30, what="both results")
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "delete" and a["message_id"] == fresh["message_id"],
            what="the fresh board deleted when nothing is open",
        )
    boards = [a for a in await harness.sent(group["id"]) if is_board(a) and a["kind"] == "send"]
    assert len(boards) == 2, "one fresh board, not one per refresh"
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


async def test_a_board_of_50_albums_with_long_names_stays_one_message_and_updates(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """50 single photos from three members whose names are 64 + 64 characters long, in a
    German group: the board lists the oldest 12 (names cut), counts the rest ("… und 38
    weitere"), fits one message, and is edited as the analyses progress."""
    group = await harness.chat(**GROUP)
    members = [
        {"id": user["id"], "first_name": f"{user['first_name']:x<64}", "last_name": "y" * 64}
        for user in (ANNA, BEN, CARLA)
    ]
    await harness.rs("/sandbox/config", {"analysis_seconds": 8.0})
    settings = settings_for(board_interval_seconds=0.5, default_language="de")
    async with bot_running(settings):
        for i in range(50):
            await harness.photo(members[i % 3], group, caption="/scan Electronics")

        def full(action: dict[str, Any]) -> bool:
            return is_board(action) and "(50)" in (action["text"] or "")

        board = await harness.wait_sent(group["id"], full, within=30, what="the board of 50")
        text = board["text"] or ""
        assert "… und 38 weitere" in text
        assert len(text.splitlines()) == 1 + 12 + 1
        assert "x" * 40 not in text and "y" * 40 not in text, "names are cut"
        await harness.wait_sent(
            group["id"],
            lambda a: (
                a["kind"] == "edit"
                and a["message_id"] == board["message_id"]
                and "%" in (a["text"] or "")
            ),
            within=30,
            what="the board edited with progress",
        )
    calls = (await harness.http.get("/sandbox/telegram/calls")).json()["calls"]
    refused = [c for c in calls if "too long" in c.get("description", "")]
    assert not refused, "never longer than Telegram allows"


@pytest.mark.telegram_limits
async def test_a_short_burst_of_albums_is_seen_to_move_on_the_board(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """15 albums from three members, analysed in 4 s each, at Telegram's own limits and the
    default board interval (10 s): the board is edited as the oldest albums change state
    (sent, analysed) before their results come, instead of showing "waiting" until it is
    deleted; nothing is answered 429."""
    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/config", {"analysis_seconds": 4.0})
    async with bot_running(settings_for()) as runtime:
        for i in range(15):
            user = (ANNA, BEN, CARLA)[i % 3]
            await harness.album(user, group, count=2, caption="/scan Electronics")
        await eventually(lambda: all_notified(runtime, 15), within=90, what="every result")
        board = await harness.wait_sent(group["id"], is_board, what="the board")
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "delete" and a["message_id"] == board["message_id"],
            within=30,
            what="the board deleted",
        )
    actions = await harness.sent(group["id"])
    shown = [a for a in actions if is_board(a) and a["message_id"] == board["message_id"]]
    first_results = min(
        i for i, a in enumerate(actions) if a["kind"] == "send" and "Results" in (a["text"] or "")
    )
    edits = [a for a in actions[:first_results] if a in shown and a["kind"] == "edit"]
    oldest = [(a["text"] or "").splitlines()[1] for a in edits]
    assert any(line.startswith(("⏳", "📤")) for line in oldest), (
        "the board edited to show the oldest album on its way, before its results",
        [a["text"] for a in shown],
    )
    assert await floods(harness) == 0


def test_the_board_text_caps_its_lines_in_both_languages() -> None:
    """Pure rendering: 50 open analyses with long names fit one message in English and
    German, 12 listed and the rest counted; a few are all listed with no count."""
    subs = [
        make_sub(id=i, user_name="N" * 129, collection_name="C" * 300, state=State.SUBMITTED)
        for i in range(1, 51)
    ]
    for lang, more in (("en", "… and 38 more"), ("de", "… und 38 weitere")):
        text = render.board_text(lang, subs[:12], {}, 0.0, total=50)
        assert len(text) <= render.SAFE_LIMIT
        assert text.splitlines()[-1] == more
        assert "(50)" in text.splitlines()[0]
        assert "N" * 33 not in text and "C" * 33 not in text
    few = render.board_text("en", subs[:3], {}, 0.0, total=3)
    assert len(few.splitlines()) == 4 and "more" not in few


async def test_a_retry_on_the_board_counts_its_albums_photos(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """🔁 Retry failed on a 2-photo album: while the retry is analysed, the board lists it
    with the album's 2 photos (before: "0 photos", a retry has no photos of its own)."""
    from sandbox.data import fake_jpeg

    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.3})
    settings = settings_for(board_interval_seconds=0.3, poll_initial_seconds=0.3)
    async with bot_running(settings):
        await harness.text(ANNA, "/batch Electronics", group)
        await harness.wait_text(group["id"], "Collecting")
        await harness.photo(ANNA, group)
        await harness.photo(ANNA, group, data=fake_jpeg("board-retry") + b"FAIL")
        await harness.text(ANNA, "/done", group)
        results = await harness.wait_sent(
            group["id"],
            lambda a: "Results" in (a.get("text") or "") and bool(a.get("reply_markup")),
            what="the results with a retry button",
        )
        await harness.rs("/sandbox/config", {"analysis_seconds": 3})
        [retry] = [
            b
            for row in results["reply_markup"]["inline_keyboard"]
            for b in row
            if b["text"].startswith("🔁")
        ]
        await harness.press(ANNA, group["id"], results["message_id"], retry["callback_data"])
        await harness.wait_text(group["id"], "Analysing the 1 failed")

        async def retry_board() -> dict[str, Any] | None:
            actions = await harness.sent(group["id"])
            notice = next(
                i for i, a in enumerate(actions) if "Analysing the 1 failed" in (a["text"] or "")
            )
            boards = [a for a in actions[notice:] if is_board(a)]
            return boards[0] if boards else None

        board = await eventually(retry_board, what="the board of the retry")
    assert "· 2 photos ·" in board["text"] and "0 photos" not in board["text"], board["text"]
