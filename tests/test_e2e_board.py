"""The live board of a team group under real use: it stays one message with 50 albums from
people with long names. The emulator enforces Telegram's limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.telegram import render
from storage import State
from tests.harness import ANNA, BEN, CARLA, Harness, bot_running
from tests.test_presentation import make_sub

pytestmark = pytest.mark.timeout(120)

GROUP = {"id": -1001234500077, "type": "supergroup", "title": "Market team"}


def is_board(action: dict[str, Any]) -> bool:
    text = action.get("text") or ""
    return action["kind"] in ("send", "edit") and (
        text.startswith("📋 Being analysed") or text.startswith("📋 Wird analysiert")
    )


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
