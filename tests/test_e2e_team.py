"""A team group at full speed: the live board instead of a message per album, results combined
when one-by-one would pass the group's limit, and no 429 from the emulator, which enforces
Telegram's flood limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import eventually
from tests.harness import ANNA, BEN, CARLA, Harness, bot_running, results_replies

pytestmark = pytest.mark.telegram_limits

USERS = [ANNA, BEN, CARLA]
GROUP = {"id": -1001234500001, "type": "supergroup", "title": "Market team"}


async def limits(harness: Harness) -> dict[str, Any]:
    answer: dict[str, Any] = (await harness.http.get("/sandbox/telegram/limits")).json()
    return answer


async def test_the_board_appears_updates_and_goes(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/config", {"analysis_seconds": 2.5})
    settings = settings_for(board_interval_seconds=0.3, poll_initial_seconds=0.3)
    async with bot_running(settings):
        await harness.album(ANNA, group, count=2, caption="/scan Electronics")
        await harness.photo(BEN, group, caption="/scan Books")
        board = await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "send" and "Being analysed (2)" in (a["text"] or ""),
            what="the board listing both",
        )
        assert "Anna Berg" in board["text"] and "Ben" in board["text"]
        assert "Electronics" in board["text"] and "Books" in board["text"]
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "edit" and a["message_id"] == board["message_id"]
            and "%" in (a["text"] or ""),
            what="a progress edit of the board",
        )  # fmt: skip
        await eventually(lambda: _replies(harness, group["id"], 2), within=20, what="both results")
        await harness.wait_sent(
            group["id"],
            lambda a: a["kind"] == "delete" and a["message_id"] == board["message_id"],
            what="the board removed when nothing is open",
        )
    texts = [a["text"] or "" for a in await harness.sent(group["id"])]
    assert not [t for t in texts if "Analysing" in t], "no message per album in a group"
    assert (await limits(harness))["floods"] == 0


async def _replies(harness: Harness, chat_id: int, wanted: int) -> bool:
    actions = await harness.sent(chat_id)
    combined = [a for a in actions if "Results</b> of" in (a.get("html") or "")]
    singles = results_replies(actions)
    counted = sum(int((a["text"] or "").split(" of ", 1)[1].split()[0]) for a in combined)
    return len(singles) - len(combined) + counted >= wanted


async def test_results_that_finish_together_are_combined_within_the_group_limit(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """A group limited to 4 messages per 8 s (tightened, in the emulator and the bot): 6
    single photos finishing together cannot get 6 replies plus a board. The first results
    reply to their photos; the rest come combined, each naming its sender with a link to
    the first photo; nothing is refused with 429."""
    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/telegram/limits", {"per_group_per_minute": 4, "group_window": 8})
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.5})
    settings = settings_for(
        telegram_group_messages_per_minute=4,
        telegram_group_window_seconds=8,
        board_interval_seconds=60,
    )
    async with bot_running(settings) as bot:
        sent = [
            await harness.photo(USERS[i % 3], group, caption="/scan Electronics") for i in range(6)
        ]

        async def all_notified() -> bool:
            counts = await bot.store.count_by_state()  # type: ignore[union-attr]
            return counts == {"notified": 6}

        await eventually(all_notified, within=90, interval=0.2, what="every result delivered")
    actions = await harness.sent(group["id"])
    messages = [a for a in actions if a["kind"] in ("send", "edit", "document")]
    combined = [a for a in messages if "Results</b> of" in (a.get("html") or "")]
    assert combined, "some results were combined"
    for message in combined:
        assert "https://t.me/c/1234500001/" in message["html"], "links to the photos"
    linked = {int(part.split('"')[0]) for m in combined for part in m["html"].split("/")[1:]
              if part.split('"')[0].isdigit()}  # fmt: skip
    single = {a["reply_to"] for a in results_replies(messages) if a not in combined}
    assert set(sent) <= single | linked, "every photo answered, singly or combined"
    assert (await limits(harness))["floods"] == 0, "within the limit by design, no 429"


async def test_retry_on_a_combined_reply_changes_only_that_members_row(
    harness: Harness, settings_for: Callable[..., Any]
) -> None:
    """Failed analyses combined into one reply, one row of buttons each: Anna's 🔁 removes
    her retry button and leaves every other button, Ben's included (before: the whole
    keyboard became Anna's single unlabelled 📄)."""
    from sandbox.data import fake_jpeg

    group = await harness.chat(**GROUP)
    await harness.rs("/sandbox/telegram/limits", {"per_group_per_minute": 2, "group_window": 8})
    await harness.rs("/sandbox/config", {"analysis_seconds": 0.5})
    settings = settings_for(
        telegram_group_messages_per_minute=2,
        telegram_group_window_seconds=8,
        board_interval_seconds=60,
    )
    async with bot_running(settings):
        for n, user in enumerate([ANNA, BEN, ANNA, BEN, CARLA]):
            data = fake_jpeg(f"combined-retry-{n}") + b"FAIL"
            await harness.photo(user, group, caption="/scan Electronics", data=data)

        async def combined_with_retries() -> dict[str, Any] | None:
            for a in await harness.sent(group["id"]):
                rows = (a.get("reply_markup") or {}).get("inline_keyboard") or []
                retries = [b for row in rows for b in row if "🔁" in b["text"]]
                if "Results</b> of" in (a.get("html") or "") and len(retries) >= 2:
                    return a
            return None

        message = await eventually(combined_with_retries, within=60, what="a combined reply")
        rows = message["reply_markup"]["inline_keyboard"]
        buttons = [b for row in rows for b in row]
        pressed = next(b for b in rows[0] if "🔁" in b["text"])  # the first block's retry
        text = message["text"]
        named = [(text.find(u["first_name"]), u) for u in USERS if u["first_name"] in text]
        presser = min(named, key=lambda pair: pair[0])[1]  # its sender
        await harness.press(presser, group["id"], message["message_id"], pressed["callback_data"])

        async def edited() -> dict[str, Any] | None:
            for a in await harness.sent(group["id"]):
                if a["kind"] == "edit_markup" and a["message_id"] == message["message_id"]:
                    return a
            return None

        edit = await eventually(edited, within=20, what="the keyboard edited")
    kept = [b for row in edit["reply_markup"]["inline_keyboard"] for b in row]
    assert kept == [b for b in buttons if b != pressed], (buttons, kept)
